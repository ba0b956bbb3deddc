package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/erpupdate/smartsync/appserver"
	"github.com/erpupdate/smartsync/appserver/internal/clientdb"
	"github.com/erpupdate/smartsync/internal/termtext"
	"github.com/spf13/cobra"
)

// clientsCommand lists the clients the server has heard from.
func (e *env) clientsCommand() *cobra.Command {
	var (
		config, state, stale, search, sortBy, osName, build string
		failed, asJSON, desc                                bool
		limit                                               int
	)
	c := &cobra.Command{
		Use:   "clients [--failed] [--build B] [--stale 7d] [--json] | clients show ID | clients forget ID... | clients forget --stale AGE",
		Short: "List the workstations the server has heard from, with their last outcome",
		Long: `clients lists every workstation (client id) that reported a sync to the
server: its host, user, OS, build, when it was last seen and its last
outcome, failures with the step and the reason. The record is the
server's SQLite file in its state folder (clients.db); this command reads
it while the server runs.

--failed keeps the clients whose last sync failed or was interrupted,
--build and --os those on one build or OS, --stale those not seen for a
while (7d, 36h; --stale config takes [STATUS] StaleDays), --search those whose
host, user, id or install folder contains the text. --json writes one JSON
array for scripts. "clients show ID" prints one client's history;
"clients forget" deletes retired workstations (see its help).`,
		Example: "  appserver clients --config AppServer.ini --failed\n  appserver clients --stale 7d --json\n  appserver clients show 3f2a9c0b7d1e4f5a8b6c2d0e9f1a7b3c",
		Args:    exactArgs(0, "no arguments (or: clients show ID, clients forget ID...)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := clientdb.Filter{Failed: failed, Build: build, OS: osName, Search: search, Sort: sortBy, Desc: desc, Limit: limit}
			if stale != "" {
				cfg, err := appserver.LoadConfig(config)
				d, perr := parseAge(stale, cfg, err)
				if perr != nil {
					return perr
				}
				f.StaleSince = time.Now().Add(-d)
			}
			r, err := clientdb.OpenReadOnly(cmd.Context(), appserver.ClientsDB(appserver.StateDir(config, state)))
			if err != nil {
				return ran(err)
			}
			defer r.Close()
			list, err := r.Clients(cmd.Context(), f)
			if err != nil {
				return ran(err)
			}
			if asJSON {
				return writeJSON(e.stdout, clientsJSON(list))
			}
			if len(list) == 0 {
				fmt.Fprintln(e.stdout, "No client matches.")
				return nil
			}
			return printClients(e.stdout, list, time.Now())
		},
	}
	fl := c.Flags()
	fl.StringVar(&config, "config", "AppServer.ini", "AppServer.ini of the server")
	fl.StringVar(&state, "state", "", "the server's state folder; default: appserver-state beside the configuration")
	fl.BoolVar(&failed, "failed", false, "only the clients whose last sync failed or was interrupted")
	fl.StringVar(&build, "build", "", "only the clients on this build")
	fl.StringVar(&osName, "os", "", "only the clients of this OS (windows, linux, darwin)")
	fl.StringVar(&stale, "stale", "", "only the clients not seen for this long (7d, 36h; \"config\": [STATUS] StaleDays)")
	fl.StringVar(&search, "search", "", "only the clients whose host, user, id or install folder contains this text, in any case")
	fl.StringVar(&sortBy, "sort", "host", "order by: "+strings.Join(clientdb.SortKeys, ", "))
	fl.BoolVar(&desc, "desc", false, "in descending order")
	fl.IntVar(&limit, "limit", 0, "at most this many clients (0: all)")
	fl.BoolVar(&asJSON, "json", false, "write JSON, for scripts")
	c.AddCommand(e.clientShowCommand(), e.clientForgetCommand())
	return c
}

// forgetFloor is the least --stale age clients forget takes without
// --force: [STATUS] StaleDays says when to flag a workstation, not when it
// is retired, and a week of holidays must not empty the record.
const forgetFloor = 30 * 24 * time.Hour

// clientForgetCommand deletes clients and their history from clients.db.
func (e *env) clientForgetCommand() *cobra.Command {
	var config, state, stale string
	var dryRun, asJSON, force bool
	c := &cobra.Command{
		Use:   "forget ID... | forget --stale AGE [--dry-run]",
		Short: "Forget workstations (retired, reinstalled) and their history",
		Long: `forget deletes workstations from the server's record (clients.db), with
their history of syncs: those named by id, or with --stale those not seen
for that long (90d) before the latest workstation the server heard from,
so that days the server was down count for no one. An age under 30 days
needs --force. A retired or reinstalled workstation otherwise stays among
the console's stale clients for good. It runs while the server runs, in
one transaction; if any id named is not in the record, nothing is
forgotten. A workstation forgotten that syncs again is recorded anew.
--dry-run lists what would be forgotten and changes nothing.`,
		Example: "  appserver clients forget --stale 90d --dry-run --config AppServer.ini\n  appserver clients forget 3f2a9c0b7d1e4f5a8b6c2d0e9f1a7b3c",
		RunE: func(cmd *cobra.Command, args []string) error {
			var age time.Duration
			switch {
			case stale != "" && len(args) > 0:
				return usagef("name clients or give --stale, not both")
			case stale == "" && len(args) == 0:
				return usagef("name the clients to forget (their ids), or give --stale AGE")
			case stale == "config":
				return usagef("--stale config is [STATUS] StaleDays, when a workstation is flagged, not when it is retired: give an age (90d)")
			case stale != "":
				d, err := parseAge(stale, nil, nil)
				if err != nil {
					return err
				}
				if d < forgetFloor && !force {
					return usagef("--stale %s would forget workstations away for less than 30 days (a holiday, a repair): give a longer age, or --force", stale)
				}
				age = d
			}
			gone, err := clientdb.Forget(cmd.Context(), appserver.ClientsDB(appserver.StateDir(config, state)), args, age, dryRun)
			if err != nil {
				return ran(err)
			}
			if asJSON {
				return writeJSON(e.stdout, struct {
					DryRun    bool         `json:"dry_run"`
					Forgotten []clientJSON `json:"forgotten"`
				}{dryRun, clientsJSON(gone)})
			}
			verb := "Forgot"
			if dryRun {
				verb = "Would forget (dry run, nothing changed)"
			}
			if len(gone) == 0 {
				fmt.Fprintln(e.stdout, "No client matches: nothing forgotten.")
				return nil
			}
			fmt.Fprintf(e.stdout, "%s %d client(s) and their history:\n", verb, len(gone))
			return printClients(e.stdout, gone, time.Now())
		},
	}
	fl := c.Flags()
	fl.StringVar(&config, "config", "AppServer.ini", "AppServer.ini of the server")
	fl.StringVar(&state, "state", "", "the server's state folder; default: appserver-state beside the configuration")
	fl.StringVar(&stale, "stale", "", "forget the clients not seen for this long (90d; at least 30d without --force)")
	fl.BoolVar(&dryRun, "dry-run", false, "list what would be forgotten, change nothing")
	fl.BoolVar(&force, "force", false, "take a --stale age under 30 days")
	fl.BoolVar(&asJSON, "json", false, "write JSON, for scripts: {\"dry_run\": ..., \"forgotten\": [...]}")
	return c
}

// parseAge reads --stale: days (7d), a Go duration (36h), or "config"
// for [STATUS] StaleDays.
func parseAge(s string, cfg *appserver.Config, cfgErr error) (time.Duration, error) {
	if s == "config" {
		if cfgErr != nil {
			return 0, fmt.Errorf("--stale without a value takes [STATUS] StaleDays, but the configuration cannot be read: %w", cfgErr)
		}
		return cfg.Status.StaleAfter(), nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err == nil && n > 0 && n <= 3650 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("--stale %q is not an age: write days (7d) or a duration (36h)", s)
}

func (e *env) clientShowCommand() *cobra.Command {
	var config, state string
	var asJSON bool
	var limit int
	c := &cobra.Command{
		Use:     "show ID",
		Short:   "Print one client's state and history of syncs",
		Example: "  appserver clients show 3f2a9c0b7d1e4f5a8b6c2d0e9f1a7b3c --config AppServer.ini",
		Args:    exactArgs(1, "the client id (the ID column of appserver clients --json, or the client's .smartclient/client-id)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := clientdb.OpenReadOnly(cmd.Context(), appserver.ClientsDB(appserver.StateDir(config, state)))
			if err != nil {
				return ran(err)
			}
			defer r.Close()
			cl, hist, err := r.Client(cmd.Context(), args[0], limit)
			if err != nil {
				return ran(err)
			}
			if asJSON {
				return writeJSON(e.stdout, struct {
					Client  clientJSON `json:"client"`
					History []syncJSON `json:"history"`
				}{toClientJSON(cl), syncsJSON(hist)})
			}
			return printClient(e.stdout, cl, hist)
		},
	}
	fl := c.Flags()
	fl.StringVar(&config, "config", "AppServer.ini", "AppServer.ini of the server")
	fl.StringVar(&state, "state", "", "the server's state folder; default: appserver-state beside the configuration")
	fl.IntVar(&limit, "limit", 50, "the newest syncs to show")
	fl.BoolVar(&asJSON, "json", false, "write JSON, for scripts")
	return c
}

func printClients(w io.Writer, list []clientdb.Client, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tUSER\tOS\tBUILD\tLAST SEEN\tLAST OUTCOME\tID")
	for _, c := range list {
		outcome := c.Outcome
		if c.Failed() {
			outcome = strings.TrimSpace(c.Outcome + " (" + strings.Trim(c.Step+": "+c.Reason, ": ") + ")")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", orDash(cell(c.Host, 40)), orDash(cell(c.User, 30)), cell(c.OS, 10), orDash(cell(c.Build, 30)),
			seen(c.LastSeen, now), cell(outcome, 90), cell(c.ID, 40))
	}
	return tw.Flush()
}

func printClient(w io.Writer, c clientdb.Client, hist []clientdb.Sync) error {
	fmt.Fprintf(w, "Client     %s\nHost       %s\nUser       %s\nOS         %s\nFolder     %s\nAddress    %s\nBuild      %s (release %d)\n",
		termtext.Escape(c.ID), orDash(termtext.Escape(c.Host)), orDash(termtext.Escape(c.User)), termtext.Escape(c.OS),
		orDash(termtext.Escape(c.Path)), orDash(c.Addr), orDash(termtext.Escape(c.Build)), c.Release)
	if c.Ring != "" {
		fmt.Fprintf(w, "Ring       %s\n", c.Ring)
	}
	fmt.Fprintf(w, "First seen %s\nLast seen  %s\n", stamp(c.FirstSeen), stamp(c.LastSeen))
	if !c.LastSuccess.IsZero() {
		fmt.Fprintf(w, "Last good  %s\n", stamp(c.LastSuccess))
	}
	fmt.Fprintln(w)
	if len(hist) == 0 {
		fmt.Fprintln(w, "No sync in the history (older ones are removed after [STATUS] KeepDays).")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WHEN\tOUTCOME\tBUILD\tRELEASE\tFILES\tBYTES\tTOOK\tSTEP\tREASON")
	for _, s := range hist {
		when := stamp(s.At)
		if !s.Reported.IsZero() && s.Reported.Sub(s.At) > time.Minute {
			when += " (reported " + stamp(s.Reported) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", when, s.Outcome, orDash(cell(s.Build, 30)), s.Release, s.Files,
			appserver.GroupDigits(s.Bytes), s.Duration.Round(time.Millisecond), orDash(cell(s.Step, 20)), orDash(cell(s.Reason, 100)))
	}
	return tw.Flush()
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// seen is a last-seen time as an administrator reads it: the date, and
// how long ago.
func seen(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	var ago string
	switch {
	case d < time.Minute:
		ago = "just now"
	case d < time.Hour:
		ago = fmt.Sprintf("%d min ago", int(d/time.Minute))
	case d < 48*time.Hour:
		ago = fmt.Sprintf("%d h ago", int(d/time.Hour))
	default:
		ago = fmt.Sprintf("%d days ago", int(d/(24*time.Hour)))
	}
	return t.Local().Format("2006-01-02 15:04") + " (" + ago + ")"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// cell is text a client sent (its host, user, build, reason) as a cell
// of the table: escaped for the terminal, on one line of at most n runes.
func cell(s string, n int) string { return termtext.Line(termtext.Escape(s), n) }

// The JSON forms, with stable lower-case names and RFC 3339 times.
type clientJSON struct {
	ID          string     `json:"id"`
	Host        string     `json:"host"`
	User        string     `json:"user"`
	OS          string     `json:"os"`
	Path        string     `json:"path"`
	Addr        string     `json:"addr"`
	Build       string     `json:"build"`
	Release     uint64     `json:"release"`
	Ring        string     `json:"ring,omitempty"`
	FirstSeen   time.Time  `json:"first_seen"`
	LastSeen    time.Time  `json:"last_seen"`
	Outcome     string     `json:"outcome"`
	Step        string     `json:"step,omitempty"`
	Reason      string     `json:"reason,omitempty"`
	Bytes       int64      `json:"bytes"`
	DurationMS  int64      `json:"duration_ms"`
	LastSuccess *time.Time `json:"last_success,omitempty"`
}

type syncJSON struct {
	At         time.Time `json:"at"`
	Reported   time.Time `json:"reported"`
	Outcome    string    `json:"outcome"`
	Step       string    `json:"step,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Build      string    `json:"build"`
	Release    uint64    `json:"release"`
	Files      int       `json:"files"`
	Bytes      int64     `json:"bytes"`
	DurationMS int64     `json:"duration_ms"`
}

func toClientJSON(c clientdb.Client) clientJSON {
	j := clientJSON{ID: c.ID, Host: c.Host, User: c.User, OS: c.OS, Path: c.Path, Addr: c.Addr, Build: c.Build,
		Release: c.Release, Ring: c.Ring, FirstSeen: c.FirstSeen, LastSeen: c.LastSeen, Outcome: c.Outcome,
		Step: c.Step, Reason: c.Reason, Bytes: c.Bytes, DurationMS: c.Duration.Milliseconds()}
	if !c.LastSuccess.IsZero() {
		t := c.LastSuccess
		j.LastSuccess = &t
	}
	return j
}

func clientsJSON(list []clientdb.Client) []clientJSON {
	out := make([]clientJSON, 0, len(list))
	for _, c := range list {
		out = append(out, toClientJSON(c))
	}
	return out
}

func syncsJSON(list []clientdb.Sync) []syncJSON {
	out := make([]syncJSON, 0, len(list))
	for _, s := range list {
		r := s.Reported
		if r.IsZero() {
			r = s.At
		}
		out = append(out, syncJSON{At: s.At, Reported: r, Outcome: s.Outcome, Step: s.Step, Reason: s.Reason, Build: s.Build,
			Release: s.Release, Files: s.Files, Bytes: s.Bytes, DurationMS: s.Duration.Milliseconds()})
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
