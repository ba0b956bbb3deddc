package smartclient

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/servertrust"
	"github.com/erpupdate/smartsync/smartclient/internal/session"
	"github.com/erpupdate/smartsync/syncproto"
)

// AdminOptions configure one administrator request: server self-update,
// its status, or its cancellation.
type AdminOptions struct {
	Server   string // HOST:PORT of the appserver
	User     string // the administrator's login name ([ADMIN] User on the server)
	Password string // sent sealed, never in clear, once per command (see syncproto.SealRequest)
	Op       syncproto.AdminOp

	// OpStatus only: Feed asks the server for what it knows of the
	// vendor's release feed (syncproto.AdminFeed): the newest release
	// newer than its own build, in the UpdateStatus's feed fields. An
	// older server refuses the request.
	Feed bool

	// OpUpdate only.
	Source         string        // release archive: a path on the server's machine, or a URL; "" for the newest release of the server's feed
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

	// Dir is the install folder whose .smartclient records the keys of
	// the servers it synced from; Fingerprint, CAFile and AllowPlaintext
	// are its smartclient.ini's [SSL] keys (see Options). An
	// administrator's password goes only to a server whose key is known
	// that way: never to one seen for the first time.
	Dir            string
	Fingerprint    string
	CAFile         string
	AllowPlaintext bool
}

// ErrAdminPlaintext refuses an administrator's command over plain TCP:
// the password's seal is not authenticated, so only the pinned TLS key
// keeps it from a machine in the middle.
var ErrAdminPlaintext = errors.New("smartclient: administrator commands need TLS, and smartclient.ini says [SSL] AllowPlaintext=1")

// trust is what an administrator's command trusts of the server.
func (o *AdminOptions) trust() servertrust.Config {
	t := servertrust.Config{Fingerprint: o.Fingerprint, CAFile: o.CAFile, Plaintext: o.AllowPlaintext, Unknown: servertrust.Refuse}
	if o.Dir != "" {
		t.KnownFile = filepath.Join(o.Dir, install.MetaDir, servertrust.KnownName)
	}
	return t
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

// Errors of Admin.
var (
	// ErrAdminWait is returned when a restarting server does not report
	// the outcome of the update within AdminOptions.Wait.
	ErrAdminWait = errors.New("smartclient: the server did not report the outcome of the update")
	// ErrAdminSession is returned when the server refuses the command's
	// session token (expired, or not known), or gave none: the command
	// does not send the password again on its own, the administrator
	// runs it again.
	ErrAdminSession = errors.New("smartclient: the server no longer accepts this command's administrator session")
	// ErrAdminAnswer is returned when a status does not name the
	// command's session: it is not the answer to this command's question.
	ErrAdminAnswer = errors.New("smartclient: the server's answer does not name this command's session")
)

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
// The password is sent once, at the login, sealed and bound to every
// field of the request. The restarted server is asked with the session
// token the login gave (never with the password), over a connection to
// the same pinned server key, and its answer is taken only when it names
// this update and this session. A server at the address with another
// key ends the command at once (a servertrust error), and a refused
// token with ErrAdminSession: the administrator runs the command again.
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
	if o.AllowPlaintext {
		return nil, fmt.Errorf("%w: remove it from the smartclient.ini of the folder this command runs for, or run the command from another", ErrAdminPlaintext)
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
		c, err := session.Dial(ctx, o.Server, o.Timeout, o.trust())
		if err != nil {
			return nil, err
		}
		defer c.Close()
		if _, err := adminRequest(c, &o, o.Op, nil); err != nil {
			return nil, err
		}
		st, err := readStatus(c, o.Event, nil)
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
	case len(o.Source) > syncproto.MaxPath || !utf8.ValidString(o.Source):
		return bad("release source: at most %d bytes of UTF-8", syncproto.MaxPath)
	case len(o.Notify) > syncproto.MaxNotify || !utf8.ValidString(o.Notify):
		return bad("notify address: at most %d bytes of UTF-8", syncproto.MaxNotify)
	}
	if err := CheckCountdown(o.Countdown); err != nil {
		return bad("countdown %v: %v", o.Countdown, err)
	}
	return nil
}

// CheckCountdown applies the server's rule to a countdown.
func CheckCountdown(d time.Duration) error {
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

// adminToken is the session token the server gave the command's login,
// with which it asks the restarted server for the outcome.
type adminToken struct {
	token    []byte
	session  string
	updateID string
	// expires is the server's word, for the log: the server, not this
	// workstation's clock, decides when the token is over.
	expires time.Time
}

// adminKeys are the keys of one session's exchange, which open what the
// server seals for the client.
type adminKeys struct {
	priv   *ecdh.PrivateKey
	server syncproto.AdminKey
}

// openSession opens the session token of an AdminSession.
func (k *adminKeys) openSession(m syncproto.AdminSession) (*adminToken, error) {
	t, err := syncproto.OpenToken(k.priv, k.server, m)
	if err != nil {
		return nil, fmt.Errorf("opening the session token: %w", err)
	}
	return &adminToken{token: t, session: m.Session, updateID: m.UpdateID, expires: time.Unix(m.Expires, 0)}, nil
}

// adminRequest exchanges session keys on c and sends the request, with
// its credential sealed and bound to its fields: the password, or tok's
// token when tok is set (OpStatus only).
func adminRequest(c *conn, o *AdminOptions, op syncproto.AdminOp, tok *adminToken) (*adminKeys, error) {
	priv, key, err := syncproto.NewAdminKey()
	if err != nil {
		return nil, err
	}
	if err := c.Send(key); err != nil {
		return nil, fmt.Errorf("sending the session key: %w", err)
	}
	m, err := c.Expect(syncproto.MsgAdminKey)
	if err != nil {
		return nil, fmt.Errorf("waiting for the server's session key: %w", err)
	}
	keys := &adminKeys{priv: priv, server: m.(syncproto.AdminKey)}
	a := syncproto.Admin{User: o.User, Op: op}
	if op == syncproto.OpUpdate {
		a.Source, a.Countdown, a.Notify = o.Source, uint32(o.Countdown/time.Second), o.Notify
		if !o.At.IsZero() {
			a.At = o.At.Unix()
		}
		if o.AllowDowngrade {
			a.Flags |= syncproto.AdminAllowDowngrade
		}
	}
	if op == syncproto.OpStatus && o.Feed && o.Op == syncproto.OpStatus {
		a.Flags |= syncproto.AdminFeed
	}
	secret := []byte(o.Password)
	if tok != nil {
		a.Flags |= syncproto.AdminToken
		secret = tok.token
	}
	if err := syncproto.SealRequest(priv, keys.server, &a, secret); err != nil {
		return nil, fmt.Errorf("sealing the request: %w", err)
	}
	if err := c.Send(a); err != nil {
		return nil, fmt.Errorf("sending the request: %w", err)
	}
	return keys, nil
}

// readStatus reads up to the server's UpdateStatus, passing on the
// AdminEvents before it, and an AdminSession to session (nil: none is
// expected).
func readStatus(c *conn, event func(string), session func(syncproto.AdminSession) error) (*syncproto.UpdateStatus, error) {
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
		case syncproto.AdminSession:
			if session == nil {
				return nil, fmt.Errorf("got %v: %w", m.Type(), syncproto.ErrUnexpected)
			}
			if err := session(m); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("got %v: %w", m.Type(), syncproto.ErrUnexpected)
		}
	}
}

// adminUpdate sends OpUpdate and follows it to its outcome.
func adminUpdate(ctx context.Context, o *AdminOptions) (*syncproto.UpdateStatus, error) {
	c, err := session.Dial(ctx, o.Server, o.Timeout, o.trust())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	keys, err := adminRequest(c, o, syncproto.OpUpdate, nil)
	if err != nil {
		return nil, err
	}
	var tok *adminToken
	takeToken := func(m syncproto.AdminSession) error {
		if tok != nil {
			return fmt.Errorf("a second session token: %w", syncproto.ErrUnexpected)
		}
		t, err := keys.openSession(m)
		tok = t
		return err
	}
	// The server may stay silent for long while it fetches the release
	// and counts down; a session that hears nothing for the countdown
	// and the whole wait besides has lost its server.
	c.SetTimeout(max(o.Timeout, o.Countdown+o.Wait))
	id := ""
	for {
		st, err := readStatus(c, o.Event, takeToken)
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
	switch {
	case tok == nil:
		return nil, fmt.Errorf("%w: the server gave no session token with update %s, so the outcome cannot be asked for without the password; 'smartclient admin update-server --status' shows it", ErrAdminSession, id)
	case tok.updateID != id:
		return nil, fmt.Errorf("%w: the session token is for update %s, not %s", ErrAdminSession, tok.updateID, id)
	}
	o.Log.Info("asking the restarted server with the session token", "id", id, "session", tok.session, "expires", tok.expires)
	o.Event("The server is restarting; waiting for it to come back...")
	return pollOutcome(ctx, o, id, tok)
}

// pollOutcome asks a restarting server for the outcome of update id until
// it names it in a final state, for at most o.Wait, with the session token
// tok and never with the password.
func pollOutcome(ctx context.Context, o *AdminOptions, id string, tok *adminToken) (*syncproto.UpdateStatus, error) {
	wctx, cancel := context.WithTimeout(ctx, o.Wait)
	defer cancel()
	last := errors.New("no answer")
	lastState := syncproto.StateSwitching
	for {
		st, retry, err := pollOnce(wctx, o, tok)
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case wctx.Err() != nil:
			// The wait ended during the attempt; its error says only
			// that.
		case err == nil && st.Session != tok.session:
			// Only the server that knows the token names its session.
			return nil, fmt.Errorf("asking for the outcome of update %s: %w (it names %q)", id, ErrAdminAnswer, st.Session)
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
func pollOnce(ctx context.Context, o *AdminOptions, tok *adminToken) (st *syncproto.UpdateStatus, retry bool, err error) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	c, err := session.Dial(actx, o.Server, o.Timeout, o.trust())
	if err != nil {
		// A server that answers with another key is not a restarting
		// one: asking again would only be asking an impostor again.
		return nil, !servertrust.Untrusted(err), err
	}
	defer c.Close()
	if _, err = adminRequest(c, o, syncproto.OpStatus, tok); err == nil {
		if st, err = readStatus(c, o.Event, nil); err == nil {
			return st, false, nil
		}
	}
	var pe *syncproto.Error
	if errors.As(err, &pe) {
		switch pe.Code {
		case syncproto.CodeUpdating, syncproto.CodeBusy, syncproto.CodeShuttingDown:
			return nil, true, err
		case syncproto.CodeDenied:
			// The token is refused; the password is not sent instead.
			return nil, false, fmt.Errorf("%w: %w", ErrAdminSession, err)
		}
		return nil, false, err
	}
	// A server that is starting may accept and drop a connection;
	// anything else (another protocol version, a foreign peer) does not
	// mend by asking again.
	return nil, lostConnection(err), err
}
