package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/internal/cmdline"
	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// syncFlags are the flags sync and run share.
type syncFlags struct {
	server, dir, os, compress string
	ui                        string // auto, window or text
	yes, check, stats         bool
	verbose                   bool
	minRate                   int64         // KiB/s; 0: smartclient.ini or the default; negative: none
	rateWindow, deadline      time.Duration // 0: smartclient.ini or the default
	connectRetry              string        // "": smartclient.ini or the default; a duration, or off
	allowUnsigned             bool
}

func (f *syncFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.server, "server", "", "update server as HOST:PORT (default: [TCP] Server and Port of smartclient.ini)")
	fl.StringVar(&f.dir, "dir", "", "install folder to update (default: the folder of the smartclient executable)")
	fl.StringVar(&f.os, "os", runtime.GOOS, "which update folder to follow: windows, linux or darwin")
	fl.BoolVar(&f.yes, "yes", false, "accept a full update (first install, incompatible build) without asking")
	fl.BoolVar(&f.check, "check", false, "only say whether an update is available (exit 100 if so); change nothing")
	fl.StringVar(&f.compress, "compress", smartclient.CompressAuto, "compress file data: auto (not on loopback), yes or no")
	fl.BoolVar(&f.stats, "stats", false, "print a last line of byte counts (received, sent) for scripts and benchmarks")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "log each step to stderr; with --check, list what would change")
	fl.Int64Var(&f.minRate, "min-rate", 0, "fail a transfer slower than this many KiB/s on average (default: [UPDATE] MinRate, else 32; -1: no minimum)")
	fl.DurationVar(&f.rateWindow, "rate-window", 0, "the span --min-rate is averaged over (default: [UPDATE] RateWindow, else 60s)")
	fl.DurationVar(&f.deadline, "deadline", 0, "fail a transfer that lasts longer (default: [UPDATE] Deadline, else the bytes at the minimum rate plus 10m; -1s: none)")
	fl.StringVar(&f.connectRetry, "connect-retry", "", "how long to keep trying a server that cannot be reached, with backoff (default: [UPDATE] ConnectRetry, else 2m; 0 or off: fail at once)")
	fl.BoolVar(&f.allowUnsigned, "allow-unsigned", false, "install a release the publisher did not sign, with a warning (as [UPDATE] AllowUnsigned=1)")
	fl.StringVar(&f.ui, "ui", uiAuto, "how to show progress: auto (a window when started without a terminal on a desktop: smartclientw.exe on Windows, zenity elsewhere), window or text")
}

func (e *env) syncCommand(run bool) *cobra.Command {
	var f syncFlags
	cmd := &cobra.Command{
		Use:   "sync [flags]",
		Short: "Bring the install folder up to date with the server",
		Long: `sync brings the install folder up to date with the update folder the
appserver holds for this OS. A first install, or an installed build the
server calls incompatible, asks before it copies the whole release (--yes
answers for the user). --check changes nothing: it exits 0 when up to date
and 100 when an update is available, as dnf check-update does; with -v it
lists what would change.`,
		Example: `  smartclient sync --server erp.example.local:1234 --dir /opt/erp
  smartclient sync --check -v`,
		Args: cobra.NoArgs,
	}
	if run {
		cmd.Use = "run [flags] -- PROGRAM [ARGS...]"
		cmd.Short = "Sync, then start the application (what a desktop shortcut runs)"
		cmd.Long = `run syncs as sync does, then starts PROGRAM with ARGS in the install
folder (a bare name is looked for there first) whatever the outcome: the old
installation still works after a failed update. While the program runs the
server's notices are shown, and at a server restart's deadline the program
is asked to stop. run exits with the program's exit status.`
		cmd.Example = `  smartclient run --yes -- ./erp-client --lang pt`
		cmd.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("run needs a program after --")
			}
			return nil
		}
	}
	f.add(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := *e
		// A window's Cancel stops the sync as an interrupt does: it
		// cancels syncCtx, the sync's alone. The program run starts
		// gets e.ctx, which only a signal ends: a Cancel once the sync
		// is over (in the progress window left on screen while the
		// failure is shown) must not keep it from starting.
		syncCtx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		se := e
		se.ctx = syncCtx
		u, err := e.openUI(f.ui, cancel)
		if err != nil {
			return err
		}
		defer u.Close()
		if run {
			// The program, the server's notices and the log write to
			// it at once.
			e.stderr = smartclient.SharedWriter(e.stderr)
		}
		o, err := e.syncOptions(&f, e.stderr, u)
		if err != nil {
			u.Failed(err.Error())
			if _, text := u.(*textUI); !text {
				return shownError{err}
			}
			return err
		}
		var app smartclient.Application
		if run {
			app.Keep(&o)
		}
		u.Status(fmt.Sprintf("Checking for updates on %s", o.Server))
		res, err := smartclient.Sync(syncCtx, o)
		code := se.code(err)
		switch code {
		case ExitUsage:
			fmt.Fprintf(e.stderr, "smartclient: %s\n", clean(err.Error()))
			u.Failed(clean(err.Error()))
		case ExitFailed:
			e.say(o, &f, res, err, code)
			u.Failed(failure(err))
		default:
			e.say(o, &f, res, err, code)
		}
		// The window goes before the program starts.
		u.Close()
		if f.stats && res != nil {
			fmt.Fprintf(e.stdout, "stats: received=%d sent=%d fetched=%d reused=%d file_bytes=%d patched=%d\n",
				res.Received, res.Sent, res.Fetched, res.Reused, res.WireBytes, res.Patched)
		}
		if run && code != ExitUsage && code != ExitInterrupted {
			// The old installation still works after a failed update,
			// so the application starts either way.
			status, err := app.Run(e.ctx, o, args, e.stdin, e.stdout, e.stderr)
			if err != nil {
				fmt.Fprintf(e.stderr, "smartclient: %v\n", err)
				if _, text := u.(*textUI); !text {
					// The window is gone; stderr may go nowhere.
					e.alert(fmt.Sprintf("Could not start the program: %v.", err))
				}
			}
			return exitError{status}
		}
		app.Close()
		if code == ExitOK && f.check && res != nil && res.Outcome == syncproto.OutcomeChecked && res.Changes() > 0 {
			code = ExitUpdateAvailable
		}
		return exitError{code}
	}
	return cmd
}

// syncOptions turns the flags into the library's options.
func (e *env) syncOptions(f *syncFlags, stderr io.Writer, u ui) (smartclient.Options, error) {
	o := smartclient.Options{Yes: f.yes, CheckOnly: f.check, Stats: f.stats, List: f.check && f.verbose}
	switch c := strings.ToLower(f.compress); c {
	case smartclient.CompressAuto, smartclient.CompressYes, smartclient.CompressNo:
		o.Compress = c
	default:
		return o, usagef("--compress %q: must be auto, yes or no", f.compress)
	}
	var err error
	if o.Dir, err = installDir(f.dir); err != nil {
		return o, cmdline.UsageError{Err: err}
	}
	switch strings.ToLower(f.os) {
	case "windows":
		o.OS = "windows"
	case "linux":
		o.OS = "linux"
	case "darwin", "macos", "macosx", "osx":
		o.OS = "darwin"
	default:
		return o, usagef("--os %q: must be windows, linux or darwin", f.os)
	}
	ini, err := smartclient.LoadClientINI(o.Dir)
	if err != nil {
		return o, cmdline.UsageError{Err: err}
	}
	if o.Server, err = serverAddr(f.server, ini); err != nil {
		return o, cmdline.UsageError{Err: err}
	}
	o.Fingerprint, o.CAFile, o.AllowPlaintext = ini.Fingerprint, ini.CA, ini.AllowPlaintext
	if f.rateWindow < 0 {
		return o, usagef("--rate-window %s: must not be negative", f.rateWindow)
	}
	o.MinRate, o.RateWindow, o.Deadline = f.minRate<<10, f.rateWindow, f.deadline
	switch v := strings.TrimSpace(f.connectRetry); {
	case v == "":
	case strings.EqualFold(v, "off"):
		o.ConnectRetryFor = -1
	default:
		d, err := time.ParseDuration(v)
		if v == "0" {
			d, err = 0, nil
		}
		if err != nil || d < 0 {
			return o, usagef("--connect-retry %q: want a duration such as 2m, or off", f.connectRetry)
		}
		o.ConnectRetryFor = d
		if d == 0 {
			o.ConnectRetryFor = -1
		}
	}
	ini.Transfer.Apply(&o)
	if o.ConnectRetryFor == 0 {
		o.ConnectRetryFor = smartclient.DefaultConnectRetryFor
	}
	o.PublisherKeys, o.AllowUnsigned = ini.PublisherKeys, ini.AllowUnsigned || f.allowUnsigned
	level := slog.LevelWarn
	if f.verbose && !f.check {
		level = slog.LevelInfo
	}
	o.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	o.Out = e.stdout
	if _, text := u.(*textUI); !text {
		o.Out = io.MultiWriter(statusWriter{u}, e.stdout) // the window first: a windowsgui build's stdout fails every write
	}
	o.Progress = u
	if u.CanAsk() {
		o.Confirm = u.Ask
	}
	return o, nil
}

// say tells the user the outcome of a sync.
func (e *env) say(o smartclient.Options, f *syncFlags, res *smartclient.Result, err error, code int) {
	stdout, stderr := e.stdout, e.stderr
	switch code {
	case ExitInterrupted:
		fmt.Fprintln(stderr, "Interrupted; the installation was left as it was.")
		return
	case ExitDeclined:
		fmt.Fprintln(stdout, "Update declined; nothing was changed.")
		return
	case ExitFailed:
		fmt.Fprintln(stderr, failure(err))
		return
	}
	if errors.Is(err, smartclient.ErrDisabled) {
		fmt.Fprintf(stdout, "Automatic updates are disabled on the server (%s); nothing was changed.\n", strings.TrimSuffix(res.Message, "."))
		return
	}
	switch res.Outcome {
	case syncproto.OutcomeChecked:
		if res.Changes() == 0 {
			fmt.Fprintf(stdout, "Up to date: build %s.\n", res.Build)
			return
		}
		kind := ""
		switch {
		case res.Installed == "":
			kind = " (first install)"
		case !res.Compatible:
			kind = " (full update: the installed build is incompatible)"
		}
		links := ""
		if res.Linked > 0 {
			links = fmt.Sprintf(", %s to make", plural(res.Linked, "link"))
		}
		if res.Folders > 0 {
			links += fmt.Sprintf(", %s to make", plural(res.Folders, "empty folder"))
		}
		fmt.Fprintf(stdout, "Update available: build %s%s, %s to download (%s)%s, %d to remove, %d to retime.\n",
			res.Build, kind, plural(res.Fetched, "file"), smartclient.HumanBytes(res.FetchedBytes), links, res.Removed, res.Touched)
		for _, c := range res.Planned {
			fmt.Fprintf(stdout, "%s %s\n", c.Kind, c.Path)
		}
	case syncproto.OutcomeUpdated:
		fmt.Fprintf(stdout, "Updated to build %s: %s downloaded (%s, %s on the wire), %d removed, %d retimed",
			res.Build, plural(res.Fetched, "file"), smartclient.HumanBytes(res.FetchedBytes), smartclient.HumanBytes(res.WireBytes), res.Removed, res.Touched)
		if res.Backup != "" {
			fmt.Fprintf(stdout, "; previous installation kept in %s", res.Backup)
		}
		fmt.Fprintln(stdout, ".")
	default:
		fmt.Fprintf(stdout, "Up to date: build %s.\n", res.Build)
	}
}

// failure is the message of a failed sync.
func failure(err error) string {
	return fmt.Sprintf("Could not update automatically: %s. Please contact your system administrator.", reason(err))
}

// serverAddr resolves the server address: the flag wins over the INI; a
// flag without a port takes the INI's port.
func serverAddr(flag string, ini smartclient.ClientINI) (string, error) {
	host, port := ini.Server, ini.Port
	if flag != "" {
		h, p, err := net.SplitHostPort(flag)
		if err != nil {
			host = flag
		} else {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				return "", fmt.Errorf("--server %q: %q is not a port number (1-65535)", flag, p)
			}
			host, port = h, n
		}
	}
	if host == "" {
		return "", errors.New("no update server: set [TCP] Server and Port in smartclient.ini, or use --server HOST:PORT")
	}
	if port == 0 {
		return "", fmt.Errorf("no port for update server %s: set [TCP] Port in smartclient.ini, or use --server HOST:PORT", host)
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// isTerminal asks the terminal driver, since a mode check would take
// /dev/null, a character device, for a person.
func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func askYesNo(in io.Reader, out io.Writer, q string) (bool, error) {
	fmt.Fprint(out, q+" ")
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && line == "" {
		return false, err
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "", "y", "yes", "s", "sim":
		return true, nil
	}
	return false, nil
}
