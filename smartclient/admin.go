package smartclient

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
	"unicode/utf8"

	"github.com/erpupdate/smartsync/smartclient/internal/session"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// AdminOptions configure one administrator request: server self-update,
// its status, or its cancellation.
type AdminOptions struct {
	Server   string // HOST:PORT of the appserver
	User     string // the administrator's login name ([ADMIN] User on the server)
	Password string // sent sealed, never in clear (see syncproto.SealPassword)
	Op       syncproto.AdminOp

	// OpUpdate only.
	Source         string        // release archive: a path on the server's machine, or a URL
	Countdown      time.Duration // warning given to connected sessions, whole seconds; 0 for DefaultCountdown
	At             time.Time     // when to start; zero for now
	Notify         string        // e-mail address told the outcome; "" for none
	AllowDowngrade bool          // accept a release not newer than the running build

	// Event is called with each line of progress, in order: the server's
	// AdminEvents, and the client's own notes (waiting for the restarted
	// server). Nil drops them.
	Event func(text string)
	Log   *slog.Logger
	// Timeout bounds the dial and each message of a short exchange;
	// default 30 s.
	Timeout time.Duration
	// Wait bounds how long an update run now waits for the restarted
	// server to report the outcome, from the moment the session drops;
	// default 10 minutes.
	Wait time.Duration
	// PollInterval is the pause between two questions to a restarting
	// server; default 2 s.
	PollInterval time.Duration
}

// Defaults of AdminOptions.
const (
	DefaultCountdown    = 2 * time.Minute
	DefaultAdminWait    = 10 * time.Minute
	DefaultPollInterval = 2 * time.Second
	// MinCountdown and MaxCountdown bound AdminOptions.Countdown; the
	// server applies the same rule.
	MinCountdown = time.Minute
	MaxCountdown = 10 * time.Minute
)

// ShortCountdownEnv names the environment variable that, set to "1",
// accepts any countdown of at least a second. It is for tests only; the
// server honours the same variable.
const ShortCountdownEnv = "SMARTSYNC_TEST_SHORT_COUNTDOWN"

// AdminPasswordEnv names the environment variable that gives the
// administrator's password to a script.
const AdminPasswordEnv = "SMARTCLIENT_ADMIN_PASSWORD"

// usageError is a bad command line or option: it is ErrUsage, and says
// only what is wrong.
type usageError struct{ msg string }

func (e *usageError) Error() string        { return e.msg }
func (e *usageError) Is(target error) bool { return target == ErrUsage }

func badUsage(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// ErrAdminWait is returned when a restarting server does not report the
// outcome of the update within AdminOptions.Wait.
var ErrAdminWait = errors.New("smartclient: the server did not report the outcome of the update")

// Admin sends one administrator request and returns the server's answer.
//
// OpStatus and OpCancel return the UpdateStatus the server answers.
// OpUpdate with At set returns the StateScheduled answer. OpUpdate to run
// now follows the update: it passes the server's AdminEvents to o.Event
// until the server stops for the switch, then asks the restarted server
// every PollInterval for the outcome of this update (named by its ID),
// and returns that final status. A status in any final state is a
// successful answer: the caller tells StateDone from the others.
//
// A server's refusal comes back as a *syncproto.Error (CodeDenied for a
// wrong user or password, CodeRefused for a refused request); a bad
// option is ErrUsage (errors.Is).
func Admin(ctx context.Context, o AdminOptions) (*syncproto.UpdateStatus, error) {
	if o.Op == syncproto.OpUpdate && o.Countdown == 0 {
		o.Countdown = DefaultCountdown
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Event == nil {
		o.Event = func(string) {}
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Wait == 0 {
		o.Wait = DefaultAdminWait
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.Op != syncproto.OpUpdate {
		c, err := session.Dial(ctx, o.Server, o.Timeout)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		if err := adminRequest(c, &o, o.Op); err != nil {
			return nil, err
		}
		st, err := readStatus(c, o.Event)
		if err != nil {
			return nil, fmt.Errorf("waiting for the server's answer: %w", err)
		}
		return st, nil
	}
	return adminUpdate(ctx, &o)
}

// check refuses options that the protocol cannot carry or the server
// would refuse anyway, before anything is sent.
func (o *AdminOptions) check() error {
	bad := badUsage
	switch {
	case o.User == "":
		return bad("no administrator user name")
	case len(o.User) > syncproto.MaxShortString || !utf8.ValidString(o.User):
		return bad("administrator user name %q: at most %d bytes of UTF-8", o.User, syncproto.MaxShortString)
	case o.Password == "":
		return bad("empty administrator password")
	case len(o.Password) > syncproto.MaxPassword:
		return bad("administrator password of %d bytes, limit %d", len(o.Password), syncproto.MaxPassword)
	case o.Op < syncproto.OpUpdate || o.Op > syncproto.OpCancel:
		return bad("unknown administrator operation %d", o.Op)
	case o.Op != syncproto.OpUpdate:
		return nil
	case o.Source == "":
		return bad("no release source")
	case len(o.Source) > syncproto.MaxPath || !utf8.ValidString(o.Source):
		return bad("release source: at most %d bytes of UTF-8", syncproto.MaxPath)
	case len(o.Notify) > syncproto.MaxNotify || !utf8.ValidString(o.Notify):
		return bad("notify address: at most %d bytes of UTF-8", syncproto.MaxNotify)
	}
	if err := checkCountdown(o.Countdown); err != nil {
		return bad("countdown %v: %v", o.Countdown, err)
	}
	return nil
}

// checkCountdown applies the server's rule to a countdown.
func checkCountdown(d time.Duration) error {
	lo := MinCountdown
	if os.Getenv(ShortCountdownEnv) == "1" {
		lo = time.Second
	}
	if d < lo || d > MaxCountdown {
		return fmt.Errorf("must be between %v and %v", shortDuration(lo), shortDuration(MaxCountdown))
	}
	if d%time.Second != 0 {
		return errors.New("must be whole seconds")
	}
	return nil
}

// shortDuration writes 2m rather than 2m0s.
func shortDuration(d time.Duration) string {
	return strings.Replace(d.String(), "m0s", "m", 1)
}

// adminRequest exchanges session keys on c and sends the request, with
// the password sealed.
func adminRequest(c *conn, o *AdminOptions, op syncproto.AdminOp) error {
	priv, key, err := syncproto.NewAdminKey()
	if err != nil {
		return err
	}
	if err := c.Send(key); err != nil {
		return fmt.Errorf("sending the session key: %w", err)
	}
	m, err := c.Expect(syncproto.MsgAdminKey)
	if err != nil {
		return fmt.Errorf("waiting for the server's session key: %w", err)
	}
	sealed, err := syncproto.SealPassword(priv, m.(syncproto.AdminKey), o.Password)
	if err != nil {
		return fmt.Errorf("sealing the password: %w", err)
	}
	a := syncproto.Admin{User: o.User, Sealed: sealed, Op: op}
	if op == syncproto.OpUpdate {
		a.Source, a.Countdown, a.Notify = o.Source, uint32(o.Countdown/time.Second), o.Notify
		if !o.At.IsZero() {
			a.At = o.At.Unix()
		}
		if o.AllowDowngrade {
			a.Flags |= syncproto.AdminAllowDowngrade
		}
	}
	if err := c.Send(a); err != nil {
		return fmt.Errorf("sending the request: %w", err)
	}
	return nil
}

// readStatus reads up to the server's UpdateStatus, passing on the
// AdminEvents before it.
func readStatus(c *conn, event func(string)) (*syncproto.UpdateStatus, error) {
	for {
		m, err := c.Read()
		if err != nil {
			return nil, err
		}
		switch m := m.(type) {
		case syncproto.AdminEvent:
			event(m.Text)
		case syncproto.UpdateStatus:
			return &m, nil
		default:
			return nil, fmt.Errorf("got %v: %w", m.Type(), syncproto.ErrUnexpected)
		}
	}
}

// adminUpdate sends OpUpdate and follows it to its outcome.
func adminUpdate(ctx context.Context, o *AdminOptions) (*syncproto.UpdateStatus, error) {
	c, err := session.Dial(ctx, o.Server, o.Timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := adminRequest(c, o, syncproto.OpUpdate); err != nil {
		return nil, err
	}
	// The server may stay silent for long while it fetches the release
	// and counts down; a session that hears nothing for the countdown
	// and the whole wait besides has lost its server.
	c.SetTimeout(max(o.Timeout, o.Countdown+o.Wait))
	id := ""
	for {
		st, err := readStatus(c, o.Event)
		var pe *syncproto.Error
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case err == nil && (st.State.Final() || st.State == syncproto.StateScheduled):
			return st, nil
		case err == nil:
			// Accepted and under way: the first status names the
			// update whose outcome to ask for after the restart.
			if id == "" {
				id = st.ID
			}
			continue
		case errors.As(err, &pe) || !lostConnection(err):
			return nil, fmt.Errorf("waiting for the server's answer: %w", err)
		case id == "":
			return nil, fmt.Errorf("the connection to the server was lost before it accepted the update (see --status): %w", err)
		}
		// The server has stopped for the switch, as it does.
		o.Log.Info("the update session ended", "id", id, "err", err)
		break
	}
	c.Close()
	o.Event("The server is restarting; waiting for it to come back...")
	return pollOutcome(ctx, o, id)
}

// pollOutcome asks a restarting server for the outcome of update id until
// it names it in a final state, for at most o.Wait.
func pollOutcome(ctx context.Context, o *AdminOptions, id string) (*syncproto.UpdateStatus, error) {
	wctx, cancel := context.WithTimeout(ctx, o.Wait)
	defer cancel()
	last := errors.New("no answer")
	lastState := syncproto.StateSwitching
	for {
		st, retry, err := pollOnce(wctx, o)
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case wctx.Err() != nil:
			// The wait ended during the attempt; its error says only
			// that.
		case err == nil && st.ID == id && st.State.Final():
			return st, nil
		case err == nil:
			if st.ID == id {
				lastState = st.State
			}
			last = fmt.Errorf("the server reports update %q as %v", st.ID, st.State)
		case !retry:
			return nil, fmt.Errorf("asking the restarted server for the outcome of update %s: %w", id, err)
		default:
			last = err
		}
		o.Log.Info("the server has not reported the outcome yet", "id", id, "last", last)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wctx.Done():
			return nil, fmt.Errorf("%w: waited %v for update %s, last seen %v (last answer: %v)", ErrAdminWait, o.Wait, id, lastState, last)
		case <-time.After(o.PollInterval):
		}
	}
}

// pollOnce asks once for the status; retry says whether a failure is one
// a restarting server gives (no answer, a closed connection, "updating").
func pollOnce(ctx context.Context, o *AdminOptions) (st *syncproto.UpdateStatus, retry bool, err error) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	c, err := session.Dial(actx, o.Server, o.Timeout)
	if err != nil {
		return nil, true, err
	}
	defer c.Close()
	if err = adminRequest(c, o, syncproto.OpStatus); err == nil {
		if st, err = readStatus(c, o.Event); err == nil {
			return st, false, nil
		}
	}
	var pe *syncproto.Error
	if errors.As(err, &pe) {
		switch pe.Code {
		case syncproto.CodeUpdating, syncproto.CodeBusy, syncproto.CodeShuttingDown:
			return nil, true, err
		}
		return nil, false, err
	}
	// A server that is starting may accept and drop a connection;
	// anything else (another protocol version, a foreign peer) does not
	// mend by asking again.
	return nil, lostConnection(err), err
}

// The command: smartclient admin update-server.

const adminUsage = `usage:
  smartclient admin update-server --from SOURCE [--countdown 2m] [--at HH:MM|RFC3339] [--notify ADDRESS]
                                  [--allow-downgrade] [--wait 10m] [--user admin] [--server HOST:PORT] [--dir INSTALL]
  smartclient admin update-server --status [--user admin] [--server HOST:PORT] [--dir INSTALL]
  smartclient admin update-server --cancel [--user admin] [--server HOST:PORT] [--dir INSTALL]
The password is read from the terminal without echo, or from $` + AdminPasswordEnv + `.
`

// adminPollInterval is AdminOptions.PollInterval for the command; tests
// shorten it.
var adminPollInterval = DefaultPollInterval

// runAdmin is "smartclient admin ...".
func runAdmin(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "update-server" {
		if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(stdout, adminUsage)
			return ExitOK
		}
		if len(args) > 0 {
			fmt.Fprintf(stderr, "smartclient admin: unknown command %q\n", args[0])
		}
		fmt.Fprint(stderr, adminUsage)
		return ExitUsage
	}
	o, err := parseAdminFlags(args[1:], stdout, stderr, time.Now())
	if errors.Is(err, pflag.ErrHelp) {
		return ExitOK
	}
	if err == nil {
		o.Password, err = adminPassword(ctx, o.User, stdin, stderr)
	}
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "Interrupted; nothing was sent to the server.")
			return ExitInterrupted
		}
		fmt.Fprintf(stderr, "smartclient admin: %v\n", err)
		return ExitUsage
	}
	o.Event = func(text string) {
		fmt.Fprintf(stdout, "%s %s\n", time.Now().Format("15:04:05"), text)
	}
	st, err := Admin(ctx, o)
	if err == nil {
		err = sayAdmin(stdout, stderr, o, st)
	} else {
		sayAdminError(stderr, o, err, exitCode(ctx, err))
	}
	return exitCode(ctx, err)
}

// parseAdminFlags reads the flags of "admin update-server"; now is the
// time --at is taken from.
func parseAdminFlags(args []string, stdout, stderr io.Writer, now time.Time) (AdminOptions, error) {
	fl := pflag.NewFlagSet("admin update-server", pflag.ContinueOnError)
	fl.SetOutput(stderr)
	// Only --help calls Usage here (ContinueOnError), so it goes to
	// stdout, as "smartclient help" does.
	fl.Usage = func() { fmt.Fprintf(stdout, "%s\nflags:\n%s", adminUsage, fl.FlagUsages()) }
	from := fl.String("from", "", "release archive to update from: a path on the server's machine, or a URL")
	countdown := fl.String("countdown", shortDuration(DefaultCountdown), "warning given to connected users before they are closed: 1m to 10m")
	at := fl.String("at", "", "start at HH:MM (the next such local time) or at an RFC 3339 time, instead of now")
	notify := fl.String("notify", "", "e-mail address told the outcome")
	user := fl.String("user", "admin", "administrator user name")
	downgrade := fl.Bool("allow-downgrade", false, "accept a release not newer than the running build")
	wait := fl.Duration("wait", DefaultAdminWait, "how long to wait for the restarted server to report the outcome")
	status := fl.Bool("status", false, "show the scheduled, running or last update")
	cancel := fl.Bool("cancel", false, "withdraw an update not yet past its countdown")
	server := fl.String("server", "", "the appserver as HOST:PORT (default: [TCP] Server and Port of smartclient.ini)")
	dir := fl.String("dir", "", "folder of smartclient.ini (default: the folder of the smartclient executable)")
	verbose := fl.BoolP("verbose", "v", false, "log each step to stderr")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return AdminOptions{}, err
		}
		return AdminOptions{}, badUsage("%v\n%s", err, strings.TrimSuffix(adminUsage, "\n"))
	}
	bad := func(format string, a ...any) (AdminOptions, error) {
		return AdminOptions{}, badUsage(format, a...)
	}
	if fl.NArg() > 0 {
		return bad("unexpected arguments %q", fl.Args())
	}
	o := AdminOptions{User: *user, Op: syncproto.OpUpdate, Wait: *wait, PollInterval: adminPollInterval}
	switch {
	case *status && *cancel:
		return bad("--status and --cancel exclude each other")
	case *status || *cancel:
		name := "--status"
		o.Op = syncproto.OpStatus
		if *cancel {
			name, o.Op = "--cancel", syncproto.OpCancel
		}
		for _, f := range []string{"from", "at", "countdown", "notify", "allow-downgrade", "wait"} {
			if fl.Changed(f) {
				return bad("%s takes no --%s", name, f)
			}
		}
	default:
		if *from == "" {
			return bad("--from SOURCE is needed: the release archive to update the server from")
		}
		o.Source = *from
		var err error
		if o.Countdown, err = parseCountdown(*countdown); err != nil {
			return bad("--countdown %q: %v", *countdown, err)
		}
		if *at != "" {
			if o.At, err = parseAt(*at, now); err != nil {
				return bad("--at %q: %v", *at, err)
			}
		}
		if *notify != "" {
			a, err := mail.ParseAddress(*notify)
			if err != nil {
				return bad("--notify %q: not an e-mail address", *notify)
			}
			o.Notify = a.Address
		}
		o.AllowDowngrade = *downgrade
		if *wait <= 0 {
			return bad("--wait %v: must be positive", *wait)
		}
	}
	if *user == "" {
		return bad("--user: empty")
	}
	d, err := installDir(*dir)
	if err != nil {
		return bad("%v", err)
	}
	ini, err := LoadClientINI(d)
	if err != nil {
		return bad("%v", err)
	}
	if o.Server, err = serverAddr(*server, ini); err != nil {
		return bad("%v", err)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	o.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
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
	if err := checkCountdown(d); err != nil {
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
	if pw, ok := os.LookupEnv(AdminPasswordEnv); ok {
		if pw == "" {
			return "", badUsage("%s is set but empty", AdminPasswordEnv)
		}
		return pw, nil
	}
	f, ok := stdin.(*os.File)
	if !ok || !isTerminal(f) {
		return "", badUsage("no terminal to ask the administrator password on: set %s", AdminPasswordEnv)
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
			return "", badUsage("empty password")
		}
		return string(a.pw), nil
	}
}

// errUpdateOutcome marks an update that ended other than done; the
// command has said why.
var errUpdateOutcome = errors.New("smartclient: the server update did not succeed")

// sayAdmin prints the server's answer and returns the error that sets
// the exit code.
func sayAdmin(stdout, stderr io.Writer, o AdminOptions, st *syncproto.UpdateStatus) error {
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

func sayAdminError(stderr io.Writer, o AdminOptions, err error, code int) {
	if code == ExitInterrupted {
		if o.Op == syncproto.OpUpdate && o.At.IsZero() {
			fmt.Fprintln(stderr, "Interrupted. An update the server accepted goes on: 'smartclient admin update-server --status' shows where it stands.")
		} else {
			fmt.Fprintln(stderr, "Interrupted.")
		}
		return
	}
	var pe *syncproto.Error
	if errors.As(err, &pe) {
		switch pe.Code {
		case syncproto.CodeDenied:
			fmt.Fprintln(stderr, "Access denied: wrong administrator user or password.")
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
	if errors.Is(err, ErrAdminWait) {
		msg := strings.TrimPrefix(err.Error(), "smartclient: ")
		fmt.Fprintf(stderr, "%s%s.\n'smartclient admin update-server --status' shows the outcome once the server answers.\n",
			strings.ToUpper(msg[:1]), msg[1:])
		return
	}
	fmt.Fprintf(stderr, "smartclient admin: %v\n", err)
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
