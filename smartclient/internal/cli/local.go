package cli

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/erpupdate/smartsync/internal/cmdline"
	"github.com/erpupdate/smartsync/internal/termtext"
	"github.com/erpupdate/smartsync/smartclient"
	"github.com/spf13/cobra"
)

// localFlags are the flags of the commands that work on the install folder
// alone.
type localFlags struct {
	dir     string
	backup  int
	verbose bool
}

func (f *localFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dir, "dir", "", "install folder (default: the folder of the smartclient executable)")
	cmd.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "log each step to stderr")
}

func (f *localFlags) log(stderr io.Writer) *slog.Logger {
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

func (e *env) statusCommand() *cobra.Command {
	var f localFlags
	cmd := &cobra.Command{
		Use:   "status [flags]",
		Short: "Show the installed build, the last sync and the backups kept",
		Long: `status shows the installed build, the last sync and its outcome, and the
backups kept. It changes nothing; while a sync runs it shows the last known
state and says so.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := installDir(f.dir)
			if err != nil {
				return cmdline.UsageError{Err: err}
			}
			r, err := smartclient.Status(e.ctx, dir, f.log(e.stderr))
			if err != nil {
				fmt.Fprintf(e.stderr, "smartclient status: %s\n", clean(err.Error()))
				return exitError{e.code(err)}
			}
			printStatus(e.stdout, r)
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func (e *env) restoreCommand() *cobra.Command {
	var f localFlags
	cmd := &cobra.Command{
		Use:   "restore [flags]",
		Short: "Put a kept backup back, atomically",
		Long: `restore puts one of the three backups kept (bkp_remote.003 the newest, .002,
.001) back in place of the installation, as one switch: a crash leaves the
installation as it was or as the backup, never a mix. The installation it
replaces is kept as the newest backup.`,
		Example: `  smartclient restore --backup 2`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := installDir(f.dir)
			if err != nil {
				return cmdline.UsageError{Err: err}
			}
			res, err := smartclient.Restore(e.ctx, dir, f.backup, f.log(e.stderr))
			if err != nil {
				code := e.code(err)
				if code == ExitFailed {
					fmt.Fprintf(e.stderr, "Could not restore: %s. The installation was left as it was.\n", reason(err))
				} else {
					fmt.Fprintf(e.stderr, "smartclient restore: %s\n", clean(err.Error()))
				}
				return exitError{code}
			}
			fmt.Fprintf(e.stdout, "Restored %s (build %s): %s put back, %d removed", res.From, orUnknown(res.Build), plural(res.Restored, "file"), res.Removed)
			if res.Backup != "" {
				fmt.Fprintf(e.stdout, "; the replaced installation is kept in %s", res.Backup)
			}
			fmt.Fprintln(e.stdout, ".")
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().IntVar(&f.backup, "backup", 0, "which backup to put back: 3 (the newest), 2 or 1 (default: the newest)")
	return cmd
}

// printStatus shows a status report. What it holds came from servers at
// some time, through earlier builds of the client too: it is escaped
// again here.
func printStatus(w io.Writer, r *smartclient.StatusReport) {
	e := termtext.Escape
	fmt.Fprintf(w, "Install folder:  %s\n", r.Dir)
	if r.ClientID != "" {
		fmt.Fprintf(w, "Client id:       %s (the server's log names this install by it)\n", r.ClientID)
	}
	if r.Running != nil {
		if r.Running.PID > 0 {
			fmt.Fprintf(w, "A sync is running (smartclient pid %d, since %s); below is the last known state.\n",
				r.Running.PID, r.Running.Since.Local().Format("2006-01-02 15:04:05"))
		} else {
			fmt.Fprintln(w, "A sync is running; below is the last known state.")
		}
	}
	if r.Build == "" {
		fmt.Fprintln(w, "Installed build: none (never synced)")
	} else {
		fmt.Fprintf(w, "Installed build: %s (%s), %s installed by smartclient\n", e(r.Build), r.OS, plural(r.Files, "file"))
	}
	if !r.LastSync.IsZero() {
		fmt.Fprintf(w, "Last sync:       %s from %s: %s", r.LastSync.Local().Format("2006-01-02 15:04:05 MST"), e(orUnknown(r.Server)), e(r.LastOutcome))
		if r.LastMessage != "" {
			fmt.Fprintf(w, " (%s)", e(r.LastMessage))
		}
		fmt.Fprintln(w)
	}
	for _, k := range r.ServerKeys {
		// Written by this client, but from what a server presented:
		// escaped like the rest.
		fmt.Fprintf(w, "Server key:      %s at %s, trusted since %s\n", e(k.Fingerprint), e(k.Addr), k.FirstSeen.Local().Format("2006-01-02"))
	}
	switch p := r.Publisher; {
	case p == nil:
		fmt.Fprintln(w, "Release:         unsigned (no signed release verified yet)")
	case p.Installed == nil:
		fmt.Fprintf(w, "Release:         unsigned; trusted publisher keys %s (key list version %d), highest release installed %d\n", e(p.Keys), p.KeyListVersion, p.Highest)
	default:
		i := p.Installed
		exp := i.Expires.Format("2006-01-02 15:04 MST")
		if !time.Now().Before(i.Expires) {
			exp += " (expired: the next sync needs a newly signed release)"
		}
		fmt.Fprintf(w, "Release:         %d, build %s, signed by publisher key %s, expires %s\n", i.Number, e(i.Build), e(i.Key), exp)
		fmt.Fprintf(w, "Publisher keys:  %s (key list version %d), highest release installed %d\n", e(p.Keys), p.KeyListVersion, p.Highest)
	}
	if len(r.Backups) == 0 {
		fmt.Fprintln(w, "Backups:         none")
		return
	}
	fmt.Fprintln(w, "Backups (newest last):")
	for _, b := range r.Backups {
		fmt.Fprintf(w, "  %s  build %-14s %s  %12s  %s\n", b.Name, e(orUnknown(b.Build)),
			b.When.Local().Format("2006-01-02 15:04"), plural(b.Files, "file"), smartclient.HumanBytes(b.Bytes))
	}
}
