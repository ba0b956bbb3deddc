package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/internal/cmdline"
	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// The command: smartclient admin update-server.

// adminPollInterval is AdminOptions.PollInterval for the command; tests
// shorten it.
var adminPollInterval = smartclient.DefaultPollInterval

func (e *env) adminCommand() *cobra.Command {
	admin := &cobra.Command{
		Use:   "admin",
		Short: "Administer the appserver from this workstation",
		Long: `admin holds the administrator's commands, sent to the appserver after the
administrator's password (read from the terminal without echo, or from
$` + smartclient.AdminPasswordEnv + `).`,
	}
	var f adminFlags
	update := &cobra.Command{
		Use:   "update-server [--from SOURCE] [flags]",
		Short: "Update the appserver itself from a signed release",
		Long: `update-server asks the appserver to update itself from a signed release
archive (a path on the server's machine, or a URL): connected users are
warned with a countdown and closed at the deadline, the server's data is
backed up, the new server started and checked, and the old one put back if
it does not answer. Without --from, the server takes the newest release of
the vendor's release feed ([SELFUPDATE] Feed in its AppServer.ini), which
'smartclient admin check' shows. --status shows the scheduled, running or
last update; --cancel withdraws one not yet past its countdown.

The password is read from the terminal without echo, or from $` + smartclient.AdminPasswordEnv + `.`,
		Example: `  smartclient admin update-server --from /srv/releases/appserver-7.00.240601A.tar.gz --countdown 5m --notify admin@example.com
  smartclient admin update-server --countdown 5m     (the newest release of the server's feed)
  smartclient admin update-server --from https://releases.example.com/appserver.tar.gz --at 02:00
  smartclient admin update-server --status`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			return nil
		},
	}
	f.add(update)
	update.RunE = func(cmd *cobra.Command, args []string) error {
		o, err := f.options(cmd.Flags().Changed, time.Now())
		if err != nil {
			return cmdline.UsageError{Err: err}
		}
		o.Log = f.log(e.stderr)
		if err := e.readPassword(&o); err != nil {
			return err
		}
		o.Event = func(text string) {
			fmt.Fprintf(e.stdout, "%s %s\n", time.Now().Format("15:04:05"), text)
		}
		st, err := smartclient.Admin(e.ctx, o)
		if err == nil {
			err = sayAdmin(e.stdout, e.stderr, o, st)
		} else {
			sayAdminError(e.stderr, o, err, e.code(err))
		}
		return exitError{e.code(err)}
	}
	admin.AddCommand(update, e.checkCommand())
	cmdline.Group(admin)
	return admin
}

// readPassword asks for the administrator's password (or takes it from
// the environment) into o; an error is the one the command ends with.
func (e *env) readPassword(o *smartclient.AdminOptions) error {
	var err error
	o.Password, err = adminPassword(e.ctx, o.User, e.stdin, e.stderr)
	switch {
	case err == nil:
		return nil
	case e.ctx.Err() != nil:
		fmt.Fprintln(e.stderr, "Interrupted; nothing was sent to the server.")
		return exitError{ExitInterrupted}
	case cmdline.IsUsage(err):
		return err
	}
	// The terminal failed us: not the administrator's mistake.
	fmt.Fprintf(e.stderr, "smartclient admin: %v\n", err)
	return exitError{ExitFailed}
}

// checkCommand is "smartclient admin check": the server's build and the
// newest release of its feed.
func (e *env) checkCommand() *cobra.Command {
	var f adminFlags
	f.check = true
	c := &cobra.Command{
		Use:   "check [flags]",
		Short: "Show whether the vendor's feed has a newer release of the appserver",
		Long: `check asks the appserver for its build and for the newest release of the
vendor's release feed ([SELFUPDATE] Feed in its AppServer.ini), which the
server reads at start and daily. When a newer release exists, install it
with 'smartclient admin update-server' (without --from).

The password is read from the terminal without echo, or from $` + smartclient.AdminPasswordEnv + `.`,
		Example: "  smartclient admin check --server erp.example.local:1234",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			return nil
		},
	}
	f.addCommon(c)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		o, err := f.options(cmd.Flags().Changed, time.Now())
		if err != nil {
			return cmdline.UsageError{Err: err}
		}
		o.Log = f.log(e.stderr)
		if err := e.readPassword(&o); err != nil {
			return err
		}
		st, err := smartclient.Admin(e.ctx, o)
		if err != nil {
			var pe *syncproto.Error
			if errors.As(err, &pe) && pe.Code == syncproto.CodeProtocol {
				fmt.Fprintf(e.stderr, "The server does not report a release feed (a build older than this smartclient?): %s\n", pe.Message)
			} else {
				sayAdminError(e.stderr, o, err, e.code(err))
			}
			return exitError{e.code(err)}
		}
		printFeed(e.stdout, st)
		return exitError{ExitOK}
	}
	return c
}

// printFeed shows what the server knows of its release feed.
func printFeed(w io.Writer, st *syncproto.UpdateStatus) {
	fmt.Fprintf(w, "%-15s %s\n", "Running build:", orUnknown(st.RunningBuild))
	switch {
	case st.NewestBuild != "":
		line := st.NewestBuild
		if st.NewestNotes != "" {
			line += ": " + st.NewestNotes
		}
		fmt.Fprintf(w, "%-15s %s\n", "Newer release:", line)
		fmt.Fprintln(w, "Install it with 'smartclient admin update-server' (without --from).")
	case st.FeedChecked != 0:
		fmt.Fprintf(w, "The server runs the newest release of its feed (checked %s, local).\n", time.Unix(st.FeedChecked, 0).Local().Format("2006-01-02 15:04"))
	case st.FeedError == "":
		fmt.Fprintln(w, "The server has no release feed ([SELFUPDATE] Feed in its AppServer.ini), or has not read it yet.")
	}
	if st.FeedError != "" {
		fmt.Fprintf(w, "%-15s %s\n", "Feed problem:", st.FeedError)
	}
}

// adminFlags are the flags of "admin update-server" and "admin check".
type adminFlags struct {
	from, countdown, at, notify, user, server, dir string
	downgrade, status, cancel, verbose             bool
	wait                                           time.Duration
	check                                          bool // admin check, not a flag
}

// addCommon adds the flags every admin command has.
func (f *adminFlags) addCommon(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.user, "user", "admin", "administrator user name")
	fl.StringVar(&f.server, "server", "", "the appserver as HOST:PORT (default: [TCP] Server and Port of smartclient.ini)")
	fl.StringVar(&f.dir, "dir", "", "folder of smartclient.ini (default: the folder of the smartclient executable)")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "log each step to stderr")
}

func (f *adminFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.from, "from", "", "release archive to update from: a path on the server's machine, or a URL (default: the newest release of the server's feed)")
	fl.StringVar(&f.countdown, "countdown", minutes(smartclient.DefaultCountdown), "warning given to connected users before they are closed: 1m to 10m")
	fl.StringVar(&f.at, "at", "", "start at HH:MM (the next such local time) or at an RFC 3339 time, instead of now")
	fl.StringVar(&f.notify, "notify", "", "e-mail address told the outcome")
	fl.BoolVar(&f.downgrade, "allow-downgrade", false, "accept a release not newer than the running build")
	fl.DurationVar(&f.wait, "wait", smartclient.DefaultAdminWait, "how long to wait for the restarted server to report the outcome")
	fl.BoolVar(&f.status, "status", false, "show the scheduled, running or last update")
	fl.BoolVar(&f.cancel, "cancel", false, "withdraw an update not yet past its countdown")
	f.addCommon(cmd)
}

func (f *adminFlags) log(stderr io.Writer) *slog.Logger {
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

// minutes writes a whole number of minutes as "2m".
func minutes(d time.Duration) string { return fmt.Sprintf("%dm", int(d/time.Minute)) }

// options checks the flags and makes the library's options; changed says
// whether a flag was given; now is the time --at is taken from.
func (f *adminFlags) options(changed func(string) bool, now time.Time) (smartclient.AdminOptions, error) {
	bad := func(format string, a ...any) (smartclient.AdminOptions, error) {
		return smartclient.AdminOptions{}, fmt.Errorf(format, a...)
	}
	o := smartclient.AdminOptions{User: f.user, Op: syncproto.OpUpdate, Wait: f.wait, PollInterval: adminPollInterval}
	switch {
	case f.check:
		o.Op, o.Feed = syncproto.OpStatus, true
	case f.status && f.cancel:
		return bad("--status and --cancel exclude each other")
	case f.status || f.cancel:
		name := "--status"
		o.Op = syncproto.OpStatus
		if f.cancel {
			name, o.Op = "--cancel", syncproto.OpCancel
		}
		for _, fl := range []string{"from", "at", "countdown", "notify", "allow-downgrade", "wait"} {
			if changed(fl) {
				return bad("%s takes no --%s", name, fl)
			}
		}
	default:
		// Without --from, the server takes the newest release of its feed.
		o.Source = f.from
		var err error
		if o.Countdown, err = parseCountdown(f.countdown); err != nil {
			return bad("--countdown %q: %v", f.countdown, err)
		}
		if f.at != "" {
			if o.At, err = parseAt(f.at, now); err != nil {
				return bad("--at %q: %v", f.at, err)
			}
		}
		if f.notify != "" {
			a, err := mail.ParseAddress(f.notify)
			if err != nil {
				return bad("--notify %q: not an e-mail address", f.notify)
			}
			o.Notify = a.Address
		}
		o.AllowDowngrade = f.downgrade
		if f.wait <= 0 {
			return bad("--wait %v: must be positive", f.wait)
		}
	}
	if f.user == "" {
		return bad("--user: empty")
	}
	d, err := installDir(f.dir)
	if err != nil {
		return bad("%v", err)
	}
	ini, err := smartclient.LoadClientINI(d)
	if err != nil {
		return bad("%v", err)
	}
	if o.Server, err = serverAddr(f.server, ini); err != nil {
		return bad("%v", err)
	}
	o.Dir, o.Fingerprint, o.CAFile, o.AllowPlaintext = d, ini.Fingerprint, ini.CA, ini.AllowPlaintext
	return o, nil
}

// parseCountdown reads a Go duration ("90s", "2m") or plain minutes ("2").
func parseCountdown(s string) (time.Duration, error) {
	var d time.Duration
	if n, err := strconv.Atoi(s); err == nil {
		// Clamped so that a huge number is refused by the range check
		// rather than overflow into it.
		d = time.Duration(min(max(n, 0), 1<<20)) * time.Minute
	} else if d, err = time.ParseDuration(s); err != nil {
		return 0, errors.New("not a duration (e.g. 2m, 90s)")
	}
	if err := smartclient.CheckCountdown(d); err != nil {
		return 0, err
	}
	return d, nil
}

// parseAt reads --at: "HH:MM" is the next such local time after now,
// today or tomorrow; otherwise an RFC 3339 time, which must be after now.
func parseAt(s string, now time.Time) (time.Time, error) {
	if hm, err := time.ParseInLocation("15:04", s, time.Local); err == nil {
		now = now.In(time.Local)
		y, m, d := now.Date()
		t := time.Date(y, m, d, hm.Hour(), hm.Minute(), 0, 0, time.Local)
		if !t.After(now) {
			t = time.Date(y, m, d+1, hm.Hour(), hm.Minute(), 0, 0, time.Local)
		}
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, errors.New("not HH:MM or an RFC 3339 time (2026-11-24T02:00:00+01:00)")
	}
	if !t.After(now) {
		return time.Time{}, fmt.Errorf("%s is in the past", t.Local().Format("2006-01-02 15:04:05"))
	}
	return t, nil
}

// adminPassword reads the administrator's password: from the
// environment, or from the terminal without echo.
func adminPassword(ctx context.Context, user string, stdin io.Reader, stderr io.Writer) (string, error) {
	if pw, ok := os.LookupEnv(smartclient.AdminPasswordEnv); ok {
		if pw == "" {
			return "", usagef("%s is set but empty", smartclient.AdminPasswordEnv)
		}
		return pw, nil
	}
	f, ok := stdin.(*os.File)
	if !ok || !isTerminal(f) {
		return "", usagef("no terminal to ask the administrator password on: set %s", smartclient.AdminPasswordEnv)
	}
	fd := int(f.Fd())
	// A Ctrl-C while the password is typed cancels ctx rather than the
	// process, and the read goes on; the terminal's echo is put back
	// here before the command ends.
	saved, err := term.GetState(fd)
	if err != nil {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	fmt.Fprintf(stderr, "Administrator password for %s: ", user)
	type answer struct {
		pw  []byte
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		pw, err := term.ReadPassword(fd)
		ch <- answer{pw, err}
	}()
	select {
	case <-ctx.Done():
		term.Restore(fd, saved)
		fmt.Fprintln(stderr)
		return "", ctx.Err()
	case a := <-ch:
		fmt.Fprintln(stderr) // The Enter was not echoed either.
		if a.err != nil {
			return "", fmt.Errorf("reading the password: %w", a.err)
		}
		if len(a.pw) == 0 {
			return "", usagef("empty password")
		}
		return string(a.pw), nil
	}
}

// errUpdateOutcome marks an update that ended other than done; the
// command has said why.
var errUpdateOutcome = errors.New("smartclient: the server update did not succeed")

// sayAdmin prints the server's answer and returns the error that sets
// the exit code.
func sayAdmin(stdout, stderr io.Writer, o smartclient.AdminOptions, st *syncproto.UpdateStatus) error {
	switch o.Op {
	case syncproto.OpStatus:
		printUpdateStatus(stdout, st)
		return nil
	case syncproto.OpCancel:
		if st.State != syncproto.StateCancelled {
			fmt.Fprintf(stderr, "The update was not cancelled; it is %v.\n", st.State)
			printUpdateStatus(stderr, st)
			return errUpdateOutcome
		}
		fmt.Fprintf(stdout, "Cancelled the update to %s (%s).\n", orUnknown(st.Source), orUnknown(st.ID))
		return nil
	}
	switch st.State {
	case syncproto.StateScheduled:
		src := st.Source
		if src == "" {
			src = o.Source
		}
		fmt.Fprintf(stdout, "Update to %s scheduled for %s (local).\n", src, time.Unix(st.When, 0).Local().Format("2006-01-02 15:04"))
		fmt.Fprintln(stdout, "See it with 'smartclient admin update-server --status'; withdraw it with --cancel.")
		return nil
	case syncproto.StateDone:
		fmt.Fprintf(stdout, "Server updated: build %s -> %s.\n", orUnknown(st.OldBuild), orUnknown(st.NewBuild))
		return nil
	case syncproto.StateReverted:
		fmt.Fprintf(stderr, "Update failed; reverted to %s: %s\n", orUnknown(st.OldBuild), orUnknown(st.Message))
	case syncproto.StateFailed:
		fmt.Fprintf(stderr, "Update failed: %s (nothing was changed)\n", orUnknown(st.Message))
	case syncproto.StateCancelled:
		if st.Message != "" {
			fmt.Fprintf(stderr, "The update was cancelled: %s\n", st.Message)
		} else {
			fmt.Fprintln(stderr, "The update was cancelled.")
		}
	default:
		fmt.Fprintf(stderr, "The server answered with the update %v:\n", st.State)
		printUpdateStatus(stderr, st)
	}
	return errUpdateOutcome
}

func sayAdminError(stderr io.Writer, o smartclient.AdminOptions, err error, code int) {
	if code == ExitInterrupted {
		if o.Op == syncproto.OpUpdate && o.At.IsZero() {
			fmt.Fprintln(stderr, "Interrupted. An update the server accepted goes on: 'smartclient admin update-server --status' shows where it stands.")
		} else {
			fmt.Fprintln(stderr, "Interrupted.")
		}
		return
	}
	if errors.Is(err, smartclient.ErrAdminSession) {
		// The password was sent once, at the login; it is not sent again
		// behind the administrator's back.
		fmt.Fprintf(stderr, "%s\nRun the command again to log in anew; 'smartclient admin update-server --status' shows where the update stands.\n",
			capitalize(strings.TrimPrefix(err.Error(), "smartclient: ")))
		return
	}
	var pe *syncproto.Error
	if errors.As(err, &pe) {
		switch pe.Code {
		case syncproto.CodeDenied:
			switch {
			case strings.Contains(pe.Message, "self-update is disabled"):
				// Not a wrong password: no password would do.
				fmt.Fprintln(stderr, "The server's self-update is not configured: [ADMIN] PasswordHash is not set in its AppServer.ini (see 'appserver passwd').")
			case pe.Retry > 0:
				fmt.Fprintf(stderr, "Access denied: too many failed logins from this address; try again in %d s.\n", pe.Retry)
			default:
				fmt.Fprintln(stderr, "Access denied: wrong administrator user or password.")
			}
			return
		case syncproto.CodeUpdating:
			fmt.Fprintf(stderr, "The server is already updating (%s); 'smartclient admin update-server --status' shows where it stands.\n", pe.Message)
			return
		case syncproto.CodeRefused:
			what := map[syncproto.AdminOp]string{
				syncproto.OpUpdate: "The server refused the update",
				syncproto.OpStatus: "The server refused to report the update's status",
				syncproto.OpCancel: "The server refused to cancel",
			}[o.Op]
			fmt.Fprintf(stderr, "%s: %s\n", what, orUnknown(pe.Message))
			return
		}
	}
	if errors.Is(err, smartclient.ErrAdminWait) {
		fmt.Fprintf(stderr, "%s.\n'smartclient admin update-server --status' shows the outcome once the server answers.\n",
			capitalize(strings.TrimPrefix(err.Error(), "smartclient: ")))
		return
	}
	fmt.Fprintf(stderr, "smartclient admin: %v\n", err)
}

// capitalize makes the first letter of msg a capital.
func capitalize(msg string) string {
	if msg == "" {
		return msg
	}
	return strings.ToUpper(msg[:1]) + msg[1:]
}

// printUpdateStatus shows an UpdateStatus for people.
func printUpdateStatus(w io.Writer, st *syncproto.UpdateStatus) {
	if st.State == syncproto.StateNone {
		fmt.Fprintf(w, "No server update is scheduled, running or recorded (running build %s).\n", orUnknown(st.RunningBuild))
		return
	}
	line := func(label, value string) {
		if value != "" {
			fmt.Fprintf(w, "%-15s %s\n", label+":", value)
		}
	}
	line("Update", fmt.Sprintf("%v (%s)", st.State, orUnknown(st.ID)))
	line("Running build", st.RunningBuild)
	if st.OldBuild != "" || st.NewBuild != "" {
		line("Builds", orUnknown(st.OldBuild)+" -> "+orUnknown(st.NewBuild))
	}
	if st.When != 0 {
		label := "Time"
		switch {
		case st.State == syncproto.StateScheduled:
			label = "Starts at"
		case st.State == syncproto.StateCountdown:
			label = "Deadline"
		case st.State.Final():
			label = "Ended"
		}
		line(label, time.Unix(st.When, 0).Local().Format("2006-01-02 15:04:05")+" (local)")
	}
	line("Source", st.Source)
	line("Message", st.Message)
}
