package smartclient

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/erpupdate/smartsync/syncproto"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// Exit codes of the smartclient command (see the README).
const (
	ExitOK          = 0
	ExitFailed      = 1
	ExitUsage       = 2
	ExitDeclined    = 3
	ExitInterrupted = 130
)

// ErrUsage marks a bad command line or configuration.
var ErrUsage = errors.New("usage error")

const usage = `usage:
  smartclient sync    [--server HOST:PORT] [--dir INSTALL] [--os windows|linux|darwin] [--yes] [--check]
                      [--compress auto|yes|no] [--stats] [-v]
  smartclient run     [sync flags] -- PROGRAM [ARGS...]
  smartclient status  [--dir INSTALL]
  smartclient restore [--dir INSTALL] [--backup 3|2|1]
  smartclient admin update-server --from SOURCE [--countdown 2m] [--at HH:MM] [--notify ADDRESS]
                      [--allow-downgrade] [--wait 10m] [--user admin] [--server HOST:PORT] [--dir INSTALL]
  smartclient admin update-server --status | --cancel [--user admin] [--server HOST:PORT] [--dir INSTALL]
`

// Run is the smartclient command: args are without the program name. It
// returns the process exit code.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ExitUsage
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "sync", "run":
	case "status", "restore":
		return runLocal(ctx, cmd, args, stdout, stderr)
	case "admin":
		return runAdmin(ctx, args, stdin, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return ExitOK
	default:
		fmt.Fprintf(stderr, "smartclient: unknown command %q\n%s", cmd, usage)
		return ExitUsage
	}
	if _, ok := stderr.(*os.File); !ok && cmd == "run" {
		// The program and the server's notices write to it at once.
		stderr = &lockedWriter{w: stderr}
	}
	o, rest, err := parseSyncFlags(cmd, args, stdin, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "smartclient: %v\n", err)
		return ExitUsage
	}
	if cmd == "run" && len(rest) == 0 {
		fmt.Fprintf(stderr, "smartclient: run needs a program after --\n%s", usage)
		return ExitUsage
	}
	if cmd == "sync" && len(rest) > 0 {
		fmt.Fprintf(stderr, "smartclient: unexpected arguments %q\n%s", rest, usage)
		return ExitUsage
	}
	var sess *conn // run's session with the server, kept open for its notices
	if cmd == "run" {
		o.keep = func(c *conn) { sess = keepSession(sess, c) }
	}
	res, err := Sync(ctx, o)
	code := exitCode(ctx, err)
	say(stdout, stderr, o, res, err, code)
	if o.Stats && res != nil {
		fmt.Fprintf(stdout, "stats: received=%d sent=%d fetched=%d reused=%d file_bytes=%d\n",
			res.Received, res.Sent, res.Fetched, res.Reused, res.WireBytes)
	}
	if cmd == "run" && code != ExitUsage && code != ExitInterrupted {
		// The old installation still works after a failed update, so the
		// application starts either way.
		return runProgram(ctx, o, sess, rest, stdin, stdout, stderr)
	}
	if sess != nil {
		sess.Close()
	}
	return code
}

// runLocal runs the commands that work on the install folder alone.
func runLocal(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) int {
	fl := pflag.NewFlagSet(cmd, pflag.ContinueOnError)
	fl.SetOutput(stderr)
	dir := fl.String("dir", "", "install folder (default: the folder of the smartclient executable)")
	n := 0
	if cmd == "restore" {
		fl.IntVar(&n, "backup", 0, "which backup to put back: 3 (the newest), 2 or 1 (default: the newest)")
	}
	verbose := fl.BoolP("verbose", "v", false, "log each step to stderr")
	if err := fl.Parse(args); err != nil || fl.NArg() > 0 {
		if err == nil {
			fmt.Fprintf(stderr, "smartclient: unexpected arguments %q\n", fl.Args())
		}
		fmt.Fprint(stderr, usage)
		return ExitUsage
	}
	d, err := installDir(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "smartclient: %v\n", err)
		return ExitUsage
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if cmd == "status" {
		r, err := Status(ctx, d, log)
		if err != nil {
			fmt.Fprintf(stderr, "smartclient status: %v\n", err)
			return exitCode(ctx, err)
		}
		printStatus(stdout, r)
		return ExitOK
	}
	res, err := Restore(ctx, d, n, log)
	if err != nil {
		code := exitCode(ctx, err)
		if code == ExitFailed {
			fmt.Fprintf(stderr, "Could not restore: %s. The installation was left as it was.\n", reason(err))
		} else {
			fmt.Fprintf(stderr, "smartclient restore: %v\n", err)
		}
		return code
	}
	fmt.Fprintf(stdout, "Restored %s (build %s): %d files put back, %d removed", res.From, orUnknown(res.Build), res.Restored, res.Removed)
	if res.Backup != "" {
		fmt.Fprintf(stdout, "; the replaced installation is kept in %s", res.Backup)
	}
	fmt.Fprintln(stdout, ".")
	return ExitOK
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func printStatus(w io.Writer, r *StatusReport) {
	fmt.Fprintf(w, "Install folder:  %s\n", r.Dir)
	if r.Build == "" {
		fmt.Fprintln(w, "Installed build: none (never synced)")
	} else {
		fmt.Fprintf(w, "Installed build: %s (%s), %d files installed by smartclient\n", r.Build, r.OS, r.Files)
	}
	if !r.LastSync.IsZero() {
		fmt.Fprintf(w, "Last sync:       %s from %s: %s", r.LastSync.Local().Format("2006-01-02 15:04:05 MST"), orUnknown(r.Server), r.LastOutcome)
		if r.LastMessage != "" {
			fmt.Fprintf(w, " (%s)", r.LastMessage)
		}
		fmt.Fprintln(w)
	}
	if len(r.Backups) == 0 {
		fmt.Fprintln(w, "Backups:         none")
		return
	}
	fmt.Fprintln(w, "Backups (newest last):")
	for _, b := range r.Backups {
		fmt.Fprintf(w, "  %s  build %-14s %s  %6d files  %s\n", b.Name, orUnknown(b.Build),
			b.When.Local().Format("2006-01-02 15:04"), b.Files, humanBytes(b.Bytes))
	}
}

// installDir resolves --dir, defaulting to the executable's folder.
func installDir(dir string) (string, error) {
	if dir == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("finding the install folder: %w (use --dir)", err)
		}
		dir = filepath.Dir(exe)
	}
	return filepath.Abs(dir)
}

// exitCode is the one place where an error becomes an exit code.
func exitCode(ctx context.Context, err error) int {
	switch {
	case err == nil, errors.Is(err, ErrDisabled):
		return ExitOK
	case ctx.Err() != nil:
		return ExitInterrupted
	case errors.Is(err, ErrUsage):
		return ExitUsage
	case errors.Is(err, ErrDeclined):
		return ExitDeclined
	}
	return ExitFailed
}

func say(stdout, stderr io.Writer, o Options, res *Result, err error, code int) {
	switch code {
	case ExitInterrupted:
		fmt.Fprintln(stderr, "Interrupted; the installation was left as it was.")
		return
	case ExitDeclined:
		fmt.Fprintln(stdout, "Update declined; nothing was changed.")
		return
	case ExitFailed:
		fmt.Fprintf(stderr, "Could not update automatically: %s. Please contact your system administrator.\n", reason(err))
		return
	}
	if errors.Is(err, ErrDisabled) {
		fmt.Fprintf(stdout, "Automatic updates are disabled on the server (%s); nothing was changed.\n", strings.TrimSuffix(res.Message, "."))
		return
	}
	switch res.Outcome {
	case syncproto.OutcomeChecked:
		if res.Fetched == 0 && res.Touched == 0 && res.Removed == 0 {
			fmt.Fprintf(stdout, "Up to date: build %s.\n", res.Build)
			return
		}
		kind := ""
		if !res.Compatible {
			kind = " (full update: the installed build is incompatible)"
		}
		fmt.Fprintf(stdout, "Update available: build %s%s, %d files to download (%s), %d to remove, %d to retime.\n",
			res.Build, kind, res.Fetched, humanBytes(res.FetchedBytes), res.Removed, res.Touched)
	case syncproto.OutcomeUpdated:
		fmt.Fprintf(stdout, "Updated to build %s: %d files downloaded (%s, %s on the wire), %d removed, %d retimed",
			res.Build, res.Fetched, humanBytes(res.FetchedBytes), humanBytes(res.WireBytes), res.Removed, res.Touched)
		if res.Backup != "" {
			fmt.Fprintf(stdout, "; previous installation kept in %s", res.Backup)
		}
		fmt.Fprintln(stdout, ".")
	default:
		fmt.Fprintf(stdout, "Up to date: build %s.\n", res.Build)
	}
}

// reason turns an error into words for the failure message.
func reason(err error) string {
	var pe *syncproto.Error
	switch {
	case errors.As(err, &pe):
		return "the update server refused: " + pe.Error()
	case lostConnection(err):
		return "the connection to the update server was lost (" + err.Error() + ")"
	}
	return strings.TrimSuffix(err.Error(), ".")
}

// lostConnection reports an error that means the connection to the
// server broke or went silent.
func lostConnection(err error) bool {
	var ne net.Error
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) || errors.As(err, &ne) && ne.Timeout()
}

func parseSyncFlags(cmd string, args []string, stdin io.Reader, stdout, stderr io.Writer) (Options, []string, error) {
	fl := pflag.NewFlagSet(cmd, pflag.ContinueOnError)
	fl.SetOutput(stderr)
	server := fl.String("server", "", "update server as HOST:PORT (default: [TCP] Server and Port of smartclient.ini)")
	dir := fl.String("dir", "", "install folder to update (default: the folder of the smartclient executable)")
	osName := fl.String("os", runtime.GOOS, "which update folder to follow: windows, linux or darwin")
	yes := fl.Bool("yes", false, "accept a full update for an incompatible build without asking")
	check := fl.Bool("check", false, "only say whether an update is available; change nothing")
	compress := fl.String("compress", CompressAuto, "compress file data: auto (not on loopback), yes or no")
	stats := fl.Bool("stats", false, "print a last line of byte counts (received, sent) for scripts and benchmarks")
	verbose := fl.BoolP("verbose", "v", false, "log each step to stderr")
	if err := fl.Parse(args); err != nil {
		return Options{}, nil, err
	}
	o := Options{Yes: *yes, CheckOnly: *check, Stats: *stats}
	switch c := strings.ToLower(*compress); c {
	case CompressAuto, CompressYes, CompressNo:
		o.Compress = c
	default:
		return o, nil, fmt.Errorf("--compress %q: must be auto, yes or no", *compress)
	}
	var err error
	if o.Dir, err = installDir(*dir); err != nil {
		return o, nil, err
	}
	switch strings.ToLower(*osName) {
	case "windows":
		o.OS = "windows"
	case "linux":
		o.OS = "linux"
	case "darwin", "macos", "macosx", "osx":
		o.OS = "darwin"
	default:
		return o, nil, fmt.Errorf("--os %q: must be windows, linux or darwin", *osName)
	}
	ini, err := LoadClientINI(o.Dir)
	if err != nil {
		return o, nil, err
	}
	o.Server, err = serverAddr(*server, ini)
	if err != nil {
		return o, nil, err
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	o.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	o.Out = stdout
	o.Progress = NewProgress(stdout, isTerminal(stdout))
	if isTerminal(stdin) {
		o.Confirm = func(q string) (bool, error) { return askYesNo(stdin, stdout, q) }
	}
	return o, fl.Args(), nil
}

// serverAddr resolves the server address: the flag wins over the INI; a
// flag without a port takes the INI's port.
func serverAddr(flag string, ini ClientINI) (string, error) {
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

// keepSession returns c as the session run keeps, closing the one it kept
// before: a sync tried again (see Sync) may keep one for each attempt,
// and only the last is read.
func keepSession(kept, c *conn) *conn {
	if kept != nil && kept != c {
		kept.Close()
	}
	return c
}

// runProgram starts the application and returns its exit code. A bare
// program name is looked for in the install folder first. While it runs,
// the server's notices on sess (nil for none) are shown on stderr. At the
// server's deadline, as when ctx ends, the program is asked to stop
// (SIGTERM; CTRL_BREAK_EVENT on Windows) and killed if it has not after
// o.StopGrace. The session is closed when the program ends.
func runProgram(ctx context.Context, o Options, sess *conn, argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	prog := argv[0]
	if !strings.ContainsAny(prog, `/\`) {
		if fi, err := os.Stat(filepath.Join(o.Dir, prog)); err == nil && !fi.IsDir() {
			prog = filepath.Join(o.Dir, prog)
		}
	}
	grace := o.StopGrace
	if grace <= 0 {
		grace = 10 * time.Second
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	cmd := exec.CommandContext(runCtx, prog, argv[1:]...)
	cmd.Dir = o.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	prepareStop(cmd)
	cmd.Cancel = func() error { return askToStop(cmd.Process) }
	cmd.WaitDelay = grace
	if err := cmd.Start(); err != nil {
		if sess != nil {
			sess.Close()
		}
		fmt.Fprintf(stderr, "smartclient: starting %s: %v\n", argv[0], err)
		return ExitFailed
	}
	watched := make(chan struct{})
	if sess != nil {
		go func() {
			defer close(watched)
			watchNotices(sess, filepath.Base(argv[0]), stderr, o.Log, stop)
		}()
	} else {
		close(watched)
	}
	err := cmd.Wait()
	if sess != nil {
		sess.Close()
	}
	<-watched
	if cmd.ProcessState == nil {
		fmt.Fprintf(stderr, "smartclient: running %s: %v\n", argv[0], err)
		return ExitFailed
	}
	return exitStatus(cmd.ProcessState)
}

// exitStatus is a program's exit code; one ended by a signal gets 128
// plus the signal's number, as from a shell.
func exitStatus(ps *os.ProcessState) int {
	if code := ps.ExitCode(); code >= 0 {
		return code
	}
	if sig, ok := signalOf(ps); ok {
		return 128 + sig
	}
	return ExitFailed
}
