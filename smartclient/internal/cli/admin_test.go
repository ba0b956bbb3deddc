package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/pki"
	"github.com/erpupdate/smartsync/internal/pki/pkitest"
	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/syncproto"
)

const (
	fakeUser     = "admin"
	fakePassword = "correct horse battery staple"
)

// fakeAdmin is the server's side of administrator sessions, as the
// protocol specifies it: a real key exchange, the password opened and
// checked, and then whatever the test's handler answers.
type fakeAdmin struct {
	t    *testing.T
	addr string
	// handle answers the n-th accepted request (from 0); the connection
	// is closed when it returns.
	handle func(n int, a syncproto.Admin, send func(...syncproto.Message))

	mu        sync.Mutex
	ln        net.Listener
	received  bytes.Buffer // every byte every client sent
	requests  []syncproto.Admin
	passwords []string // as opened, accepted or not
	tokens    [][]byte // session tokens as opened, accepted or not
	served    int      // requests past the password or token check
	// refusedHandshakes counts the TLS handshakes a client broke off.
	refusedHandshakes int
	// token is the session token the fake gives an update run now, and
	// sessionName its name; refuseTokens makes it refuse every token, as a
	// server whose sessions expired does.
	token        []byte
	sessionName  string
	refuseTokens bool
	closed       bool
	// intercept, when set, is given each new connection first; true
	// means it has dealt with it.
	intercept func(nc net.Conn) bool
	wg        sync.WaitGroup
	// tls is the fake server's TLS configuration, and fingerprint its
	// key's, which the client is given in smartclient.ini.
	tls         *tls.Config
	fingerprint string
}

func newFakeAdmin(t *testing.T, handle func(n int, a syncproto.Admin, send func(...syncproto.Message))) *fakeAdmin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert, fp := pkitest.Certificate(t)
	f := &fakeAdmin{t: t, addr: ln.Addr().String(), handle: handle, fingerprint: fp,
		tls: pki.ServerConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil })}
	f.ln = tls.NewListener(ln, f.tls)
	f.serve(f.ln)
	t.Cleanup(f.close)
	return f
}

// serve accepts on ln, which the caller has made f.ln.
func (f *fakeAdmin) serve(ln net.Listener) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer nc.Close()
				f.session(nc)
			}()
		}
	}()
}

// restart closes the listener, so that the client's polls find nobody
// (connection refused), and listens on the same address again after
// pause, as a server that stops and starts does.
func (f *fakeAdmin) restart(pause time.Duration) { f.restartAs(pause, f.tls) }

// restartAs is restart with the TLS configuration cfg: another key than
// the one the client pinned makes the fake an impostor at the address.
func (f *fakeAdmin) restartAs(pause time.Duration, cfg *tls.Config) {
	f.mu.Lock()
	f.ln.Close()
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		time.Sleep(pause)
		// The port was just ours; a few tries cover a slow release of
		// it by the kernel.
		for range 100 {
			f.mu.Lock()
			if f.closed {
				f.mu.Unlock()
				return
			}
			// Listening and serving under the lock, so that a close
			// sees either no listener or this one.
			ln, err := net.Listen("tcp", f.addr)
			if err == nil {
				f.ln = tls.NewListener(ln, cfg)
				f.serve(f.ln)
			}
			f.mu.Unlock()
			if err == nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		f.t.Errorf("fake admin server: could not listen on %s again", f.addr)
	}()
}

func (f *fakeAdmin) close() {
	f.mu.Lock()
	f.closed = true
	f.ln.Close()
	f.mu.Unlock()
	f.wg.Wait()
}

// recorder keeps a copy of what the client sends.
type recorder struct {
	r io.Reader
	f *fakeAdmin
}

func (r recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.f.mu.Lock()
	r.f.received.Write(p[:n])
	r.f.mu.Unlock()
	return n, err
}

func (f *fakeAdmin) setIntercept(fn func(nc net.Conn) bool) {
	f.mu.Lock()
	f.intercept = fn
	f.mu.Unlock()
}

func (f *fakeAdmin) session(nc net.Conn) {
	nc.SetDeadline(time.Now().Add(time.Minute))
	f.mu.Lock()
	intercept := f.intercept
	f.mu.Unlock()
	if intercept != nil && intercept(nc) {
		return
	}
	if tc, ok := nc.(*tls.Conn); ok {
		if err := tc.Handshake(); err != nil {
			// A client that refuses the fake's key says so here.
			f.mu.Lock()
			f.refusedHandshakes++
			f.mu.Unlock()
			return
		}
	}
	r := syncproto.NewReader(recorder{nc, f})
	w := syncproto.NewWriter(nc)
	send := func(ms ...syncproto.Message) {
		for _, m := range ms {
			if err := w.Write(m); err != nil {
				return
			}
		}
		w.Flush()
	}
	m, err := r.Expect(syncproto.MsgAdminKey)
	if err != nil && !smartclient.ConnectionLost(err) {
		f.t.Errorf("fake admin server: reading the client's key: %v", err)
	}
	if err != nil {
		return
	}
	priv, key, err := syncproto.NewAdminKey()
	if err != nil {
		f.t.Error(err)
		return
	}
	send(key)
	m2, err := r.Expect(syncproto.MsgAdmin)
	if err != nil {
		// A client that gives up may hang up at any time.
		if !smartclient.ConnectionLost(err) {
			f.t.Errorf("fake admin server: reading the request: %v", err)
		}
		return
	}
	a := m2.(syncproto.Admin)
	clientKey := m.(syncproto.AdminKey)
	secret, err := syncproto.OpenRequest(priv, clientKey, a)
	if err != nil {
		f.t.Errorf("fake admin server: opening the request: %v", err)
		return
	}
	f.mu.Lock()
	f.requests = append(f.requests, a)
	withToken := a.Flags&syncproto.AdminToken != 0
	if withToken {
		f.tokens = append(f.tokens, secret)
	} else {
		f.passwords = append(f.passwords, string(secret))
	}
	tokenOK := withToken && !f.refuseTokens && a.Op == syncproto.OpStatus && f.token != nil && bytes.Equal(secret, f.token)
	f.mu.Unlock()
	switch {
	case withToken && !tokenOK:
		send(&syncproto.Error{Code: syncproto.CodeDenied, Message: "this command's administrator session has expired or is not known to this server; run the command again"})
		return
	case !withToken && (a.User != fakeUser || string(secret) != fakePassword):
		send(&syncproto.Error{Code: syncproto.CodeDenied, Message: "wrong user or password"})
		return
	}
	if a.Op == syncproto.OpUpdate && a.At == 0 {
		// An update run now gets the command's session token, as the
		// real server gives it, before the handler's answer.
		token := bytes.Repeat([]byte{0x42}, syncproto.TokenSize)
		ms := syncproto.AdminSession{Session: "s-fake", UpdateID: fakeUpdateID, Expires: time.Now().Add(time.Hour).Unix()}
		if err := syncproto.SealToken(priv, clientKey, &ms, token); err != nil {
			f.t.Error(err)
			return
		}
		f.mu.Lock()
		f.token, f.sessionName = token, ms.Session
		f.mu.Unlock()
		send(ms)
	}
	if withToken {
		// Answers to a token name its session, unless the handler
		// names another.
		plain := send
		send = func(ms ...syncproto.Message) {
			for i, m := range ms {
				if st, ok := m.(syncproto.UpdateStatus); ok && st.Session == "" {
					f.mu.Lock()
					st.Session = f.sessionName
					f.mu.Unlock()
					ms[i] = st
				}
			}
			plain(ms...)
		}
	}
	f.mu.Lock()
	n := f.served
	f.served++
	f.mu.Unlock()
	f.handle(n, a, send)
}

// fakeUpdateID is the update the fake's session tokens are for.
const fakeUpdateID = "u-42"

// lastRequest is the last request the fake received.
func (f *fakeAdmin) lastRequest(t *testing.T) syncproto.Admin {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		t.Fatal("the fake server received no request")
	}
	return f.requests[len(f.requests)-1]
}

// runAdminCLI runs "smartclient admin update-server ARGS --server fake"
// without a terminal, with fast polls.
func runAdminCLI(t *testing.T, ctx context.Context, f *fakeAdmin, args ...string) (int, string, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "smartclient.ini"), []byte("[SSL]\nFingerprint="+f.fingerprint+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return runAdminCLIIn(t, ctx, f, dir, args...)
}

// runAdminCLIIn is runAdminCLI with the install folder dir, which says
// how the fake's key is pinned.
func runAdminCLIIn(t *testing.T, ctx context.Context, f *fakeAdmin, dir string, args ...string) (int, string, string) {
	t.Helper()
	saved := adminPollInterval
	adminPollInterval = 10 * time.Millisecond
	defer func() { adminPollInterval = saved }()
	var out, errb bytes.Buffer
	args = append([]string{"admin", "update-server", "--dir", dir, "--server", f.addr}, args...)
	code := Main(ctx, args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// answer makes a handler that sends the same messages to every request.
func answer(ms ...syncproto.Message) func(int, syncproto.Admin, func(...syncproto.Message)) {
	return func(_ int, _ syncproto.Admin, send func(...syncproto.Message)) { send(ms...) }
}

func TestAdminPassword(t *testing.T) {
	status := syncproto.UpdateStatus{State: syncproto.StateNone, RunningBuild: "7.00.240501A"}
	for _, tc := range []struct {
		name, user, password string
		code                 int
		out, errOut          string
	}{
		{"right", "", fakePassword, ExitOK, "No server update is scheduled, running or recorded (running build 7.00.240501A).", ""},
		{"wrong password", "", fakePassword + "!", ExitFailed, "", "Access denied: wrong administrator user or password.\n"},
		{"wrong user", "root", fakePassword, ExitFailed, "", "Access denied: wrong administrator user or password.\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAdmin(t, answer(status))
			t.Setenv(smartclient.AdminPasswordEnv, tc.password)
			args := []string{"--status"}
			if tc.user != "" {
				args = append(args, "--user", tc.user)
			}
			code, out, errOut := runAdminCLI(t, t.Context(), f, args...)
			if code != tc.code || !strings.Contains(out, tc.out) || errOut != tc.errOut {
				t.Fatalf("exit %d, want %d\nstdout: %q, want %q\nstderr: %q, want %q", code, tc.code, out, tc.out, errOut, tc.errOut)
			}
			f.close()
			if f.passwords[0] != tc.password {
				t.Errorf("the server opened the password %q, want %q", f.passwords[0], tc.password)
			}
			if bytes.Contains(f.received.Bytes(), []byte(tc.password)) {
				t.Errorf("the password travelled in clear: % x", f.received.Bytes())
			}
			if want := orDefault(tc.user, fakeUser); f.requests[0].User != want || f.requests[0].Op != syncproto.OpStatus {
				t.Errorf("request %+v, want user %q and OpStatus", f.requests[0], want)
			}
		})
	}
}

func orDefault(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestAdminNoPassword(t *testing.T) {
	f := newFakeAdmin(t, answer())
	code, _, errOut := runAdminCLI(t, t.Context(), f, "--status")
	if code != ExitUsage || !strings.Contains(errOut, smartclient.AdminPasswordEnv) {
		t.Fatalf("exit %d, stderr %q: want %d and a word on %s", code, errOut, ExitUsage, smartclient.AdminPasswordEnv)
	}
	t.Setenv(smartclient.AdminPasswordEnv, "")
	if code, _, errOut := runAdminCLI(t, t.Context(), f, "--status"); code != ExitUsage || !strings.Contains(errOut, "set but empty") {
		t.Fatalf("empty %s: exit %d, stderr %q", smartclient.AdminPasswordEnv, code, errOut)
	}
	if f.served != 0 || len(f.requests) != 0 {
		t.Errorf("the server was asked %d times", len(f.requests))
	}
}

var eventLine = regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d `)

// TestAdminUpdateNow follows an update run now: events, the session
// dropped for the switch, polls while the server restarts, the outcome.
func TestAdminUpdateNow(t *testing.T) {
	const id = "u-42"
	countdown := syncproto.UpdateStatus{State: syncproto.StateCountdown, ID: id, RunningBuild: "A", When: time.Now().Add(2 * time.Minute).Unix()}
	events := []syncproto.Message{
		syncproto.AdminEvent{Text: "release 7.00.241101A verified"},
		syncproto.AdminEvent{Text: "warning 3 connected sessions: restart in 120 s"},
	}
	done := syncproto.UpdateStatus{State: syncproto.StateDone, ID: id, RunningBuild: "B", OldBuild: "A", NewBuild: "B"}
	reverted := syncproto.UpdateStatus{State: syncproto.StateReverted, ID: id, RunningBuild: "A", OldBuild: "A", NewBuild: "B",
		Message: "the new server did not answer within 30 s"}
	type handler = func(f *fakeAdmin, n int, a syncproto.Admin, send func(...syncproto.Message))
	for _, tc := range []struct {
		name   string
		handle handler
		args   []string
		code   int
		out    []string // in stdout, in order
		errOut string   // in stderr
		polls  int      // status requests answered, at least
	}{{
		name: "done after the server restarts",
		handle: func(f *fakeAdmin, n int, a syncproto.Admin, send func(...syncproto.Message)) {
			switch {
			case n == 0:
				send(append([]syncproto.Message{countdown}, events...)...)
				f.restart(50 * time.Millisecond)
			case n == 1:
				send(syncproto.UpdateStatus{State: syncproto.StateSwitching, ID: id, RunningBuild: "B"})
			default:
				send(done)
			}
		},
		code:  ExitOK,
		out:   []string{"release 7.00.241101A verified", "restart in 120 s", "The server is restarting; waiting for it to come back...", "Server updated: build A -> B.\n"},
		polls: 2,
	}, {
		name: "reverted, after every kind of not yet",
		handle: func(f *fakeAdmin, n int, a syncproto.Admin, send func(...syncproto.Message)) {
			switch n {
			case 0:
				send(append([]syncproto.Message{countdown}, events...)...)
			case 1: // accepted and dropped: the server is starting
			case 2:
				send(&syncproto.Error{Code: syncproto.CodeUpdating, Message: "server is updating, retry in 5 s", Retry: 5})
			case 3:
				send(syncproto.UpdateStatus{State: syncproto.StateSwitching, ID: id})
			case 4: // another update's outcome is not ours
				send(syncproto.UpdateStatus{State: syncproto.StateDone, ID: "u-41", OldBuild: "9", NewBuild: "A"})
			default:
				send(reverted)
			}
		},
		code:   ExitFailed,
		out:    []string{"release 7.00.241101A verified", "The server is restarting"},
		errOut: "Update failed; reverted to A: the new server did not answer within 30 s\n",
		polls:  5,
	}, {
		name: "failed before the switch",
		handle: func(f *fakeAdmin, n int, a syncproto.Admin, send func(...syncproto.Message)) {
			send(syncproto.UpdateStatus{State: syncproto.StatePreparing, ID: id}, events[0],
				syncproto.UpdateStatus{State: syncproto.StateFailed, ID: id, Message: "backing up the data: disk full"})
		},
		code:   ExitFailed,
		out:    []string{"release 7.00.241101A verified"},
		errOut: "Update failed: backing up the data: disk full (nothing was changed)\n",
	}, {
		name: "cancelled during the countdown",
		handle: func(f *fakeAdmin, n int, a syncproto.Admin, send func(...syncproto.Message)) {
			send(countdown, syncproto.UpdateStatus{State: syncproto.StateCancelled, ID: id})
		},
		code:   ExitFailed,
		errOut: "The update was cancelled.\n",
	}, {
		name: "refused",
		handle: func(f *fakeAdmin, n int, a syncproto.Admin, send func(...syncproto.Message)) {
			send(&syncproto.Error{Code: syncproto.CodeRefused, Message: "release 7.00.231101A is not newer than 7.00.240501A"})
		},
		code:   ExitFailed,
		errOut: "The server refused the update: release 7.00.231101A is not newer than 7.00.240501A\n",
	}, {
		name: "another update under way",
		handle: func(f *fakeAdmin, n int, a syncproto.Admin, send func(...syncproto.Message)) {
			send(&syncproto.Error{Code: syncproto.CodeUpdating, Message: "server is updating, retry in 40 s", Retry: 40})
		},
		code:   ExitFailed,
		errOut: "The server is already updating (server is updating, retry in 40 s)",
	}, {
		name: "dropped before accepting",
		handle: func(f *fakeAdmin, n int, a syncproto.Admin, send func(...syncproto.Message)) {
			send(events[0])
		},
		code:   ExitFailed,
		out:    []string{"release 7.00.241101A verified"},
		errOut: "lost before it accepted the update",
	}, {
		name: "never back within --wait",
		handle: func(f *fakeAdmin, n int, a syncproto.Admin, send func(...syncproto.Message)) {
			if n == 0 {
				send(countdown)
				return
			}
			send(syncproto.UpdateStatus{State: syncproto.StateSwitching, ID: id})
		},
		args:   []string{"--wait", "300ms"},
		code:   ExitFailed,
		out:    []string{"The server is restarting"},
		errOut: "The server did not report the outcome of the update: waited 300ms for update u-42, last seen switching",
		polls:  1,
	}, {
		name: "a server that comes back speaking another protocol",
		handle: func(f *fakeAdmin, n int, a syncproto.Admin, send func(...syncproto.Message)) {
			send(countdown)
			// From now on every session gets a frame of the next
			// version, as from a newer server.
			f.setIntercept(func(nc net.Conn) bool {
				nc.Write([]byte{'S', 'C', syncproto.Version + 1, byte(syncproto.MsgAdminKey), 0, 0, 0, 0})
				return true
			})
		},
		code:   ExitFailed,
		errOut: fmt.Sprintf("peer speaks version %d", syncproto.Version+1),
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(smartclient.AdminPasswordEnv, fakePassword)
			var f *fakeAdmin
			f = newFakeAdmin(t, func(n int, a syncproto.Admin, send func(...syncproto.Message)) {
				if n > 0 && a.Op != syncproto.OpStatus {
					t.Errorf("request %d: op %d, want OpStatus", n, a.Op)
				}
				tc.handle(f, n, a, send)
			})
			args := append([]string{"--from", "https://dl.example.com/erp-7.00.241101A.tar.gz", "--notify", "Admin <admin@example.com>",
				"--allow-downgrade"}, tc.args...)
			code, out, errOut := runAdminCLI(t, t.Context(), f, args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			rest := out
			for _, want := range tc.out {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Errorf("stdout lacks %q (in order)", want)
					continue
				}
				rest = rest[i+len(want):]
			}
			if !strings.Contains(errOut, tc.errOut) || tc.errOut == "" && errOut != "" {
				t.Errorf("stderr lacks %q", tc.errOut)
			}
			if len(tc.out) > 1 && len(eventLine.FindAllString(out, -1)) < len(tc.out)-1 {
				t.Errorf("events are not each on a line of their own after the time")
			}
			f.close()
			if f.served < 1+tc.polls {
				t.Errorf("the server answered %d requests, want at least %d", f.served, 1+tc.polls)
			}
			a := f.requests[0]
			if a.Op != syncproto.OpUpdate || a.Source != "https://dl.example.com/erp-7.00.241101A.tar.gz" || a.Countdown != 120 ||
				a.At != 0 || a.Notify != "admin@example.com" || a.Flags != syncproto.AdminAllowDowngrade || a.User != fakeUser {
				t.Errorf("request %+v", a)
			}
			// One login per command: the password once, then the token.
			if len(f.passwords) != 1 || f.passwords[0] != fakePassword {
				t.Errorf("the server was sent the passwords %q, want the password once", f.passwords)
			}
			for i, a := range f.requests[1:] {
				if a.Flags&syncproto.AdminToken == 0 || a.Op != syncproto.OpStatus {
					t.Errorf("poll %d: flags %#x, op %d; want the token and OpStatus", i+1, a.Flags, a.Op)
				}
			}
			for i, tok := range f.tokens {
				if !bytes.Equal(tok, f.token) {
					t.Errorf("poll %d: token % x, want the one given", i+1, tok)
				}
			}
			if bytes.Contains(f.received.Bytes(), []byte(fakePassword)) {
				t.Error("the password travelled in clear")
			}
			if t.Failed() {
				t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
			}
		})
	}
}

// TestAdminSessionRefused: when the restarted server refuses the
// command's token (expired, or not known), the command stops and says to
// run it again; it does not send the password again on its own.
func TestAdminSessionRefused(t *testing.T) {
	t.Setenv(smartclient.AdminPasswordEnv, fakePassword)
	var f *fakeAdmin
	f = newFakeAdmin(t, func(n int, a syncproto.Admin, send func(...syncproto.Message)) {
		send(syncproto.UpdateStatus{State: syncproto.StateCountdown, ID: fakeUpdateID})
		f.mu.Lock()
		f.refuseTokens = true
		f.mu.Unlock()
	})
	start := time.Now()
	code, _, errOut := runAdminCLI(t, t.Context(), f, "--from", "r.tar.gz")
	if code != ExitFailed || !strings.Contains(errOut, "no longer accepts this command's administrator session") ||
		!strings.Contains(errOut, "Run the command again") || strings.Contains(errOut, "wrong administrator user or password") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the command took %v", took)
	}
	f.close()
	if len(f.passwords) != 1 || len(f.tokens) != 1 {
		t.Errorf("the server was sent %d passwords and %d tokens, want 1 and 1", len(f.passwords), len(f.tokens))
	}
}

// TestAdminAnswerNamesSession: a final status that does not name the
// command's session is not taken as the outcome of its update.
func TestAdminAnswerNamesSession(t *testing.T) {
	t.Setenv(smartclient.AdminPasswordEnv, fakePassword)
	f := newFakeAdmin(t, func(n int, a syncproto.Admin, send func(...syncproto.Message)) {
		if n == 0 {
			send(syncproto.UpdateStatus{State: syncproto.StateCountdown, ID: fakeUpdateID})
			return
		}
		send(syncproto.UpdateStatus{State: syncproto.StateDone, ID: fakeUpdateID, OldBuild: "A", NewBuild: "B", Session: "s-other"})
	})
	code, out, errOut := runAdminCLI(t, t.Context(), f, "--from", "r.tar.gz")
	if code != ExitFailed || strings.Contains(out, "Server updated") || !strings.Contains(errOut, "does not name this command's session") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestAdminImpostorDuringRestart is the attack of a machine that takes
// the server's address while it restarts for the update, with a TLS key
// of its own: the command refuses it at the handshake, so the impostor
// receives neither the password nor the session token, and the command
// ends at once with a clear error instead of asking again for ten
// minutes.
func TestAdminImpostorDuringRestart(t *testing.T) {
	t.Setenv(smartclient.AdminPasswordEnv, fakePassword)
	for _, tc := range []struct {
		name string
		pin  func(t *testing.T, f *fakeAdmin, dir string) // pins the real server's key in dir
		want string                                       // in stderr
	}{
		{"fingerprint in smartclient.ini", func(t *testing.T, f *fakeAdmin, dir string) {
			writeTestFile(t, filepath.Join(dir, "smartclient.ini"), "[SSL]\nFingerprint="+f.fingerprint+"\n")
		}, "not the one smartclient.ini names"},
		{"key recorded by an earlier sync", func(t *testing.T, f *fakeAdmin, dir string) {
			writeTestFile(t, filepath.Join(dir, "smartclient.ini"), "[TCP]\nServer=127.0.0.1\n")
			writeTestFile(t, filepath.Join(dir, ".smartclient", "known_servers.json"),
				`{"servers": {"`+f.addr+`": {"fingerprint": "`+f.fingerprint+`", "first_seen": "2026-11-01T00:00:00Z"}}}`)
		}, "this workstation has trusted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			impostorCert, _ := pkitest.Certificate(t)
			impostor := pki.ServerConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &impostorCert, nil })
			var f *fakeAdmin
			var before int
			f = newFakeAdmin(t, func(n int, a syncproto.Admin, send func(...syncproto.Message)) {
				if n > 0 {
					t.Errorf("the impostor was sent request %d: %+v", n, a)
					send(syncproto.UpdateStatus{State: syncproto.StateDone, ID: fakeUpdateID, OldBuild: "A", NewBuild: "B"})
					return
				}
				send(syncproto.UpdateStatus{State: syncproto.StateCountdown, ID: fakeUpdateID})
				f.mu.Lock()
				before = f.received.Len()
				f.mu.Unlock()
				f.restartAs(20*time.Millisecond, impostor)
			})
			dir := t.TempDir()
			tc.pin(t, f, dir)
			start := time.Now()
			code, out, errOut := runAdminCLIIn(t, t.Context(), f, dir, "--from", "r.tar.gz") // --wait is the default 10 minutes
			took := time.Since(start)
			f.close()
			if code != ExitFailed || strings.Contains(out, "Server updated") || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
			}
			if took > 10*time.Second {
				t.Errorf("the command went on for %v against the impostor", took)
			}
			if f.refusedHandshakes == 0 {
				t.Error("no client came to the impostor")
			}
			if got := f.received.Len() - before; got != 0 {
				t.Errorf("the impostor received %d bytes of the protocol", got)
			}
			if len(f.passwords) != 1 || len(f.tokens) != 0 || len(f.requests) != 1 {
				t.Errorf("passwords %d, tokens %d, requests %d: the impostor got a credential", len(f.passwords), len(f.tokens), len(f.requests))
			}
		})
	}
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestAdminAt(t *testing.T) {
	t.Setenv(smartclient.AdminPasswordEnv, fakePassword)
	// Two hours on, to the minute: the next time of day "HH:MM" names,
	// today or tomorrow.
	next := time.Now().Add(2 * time.Hour).Truncate(time.Minute)
	rfc := time.Now().Add(49 * time.Hour).Truncate(time.Second)
	for _, tc := range []struct {
		at   string
		want time.Time
	}{
		{next.Format("15:04"), next},
		{rfc.Format(time.RFC3339), rfc},
		{rfc.UTC().Format(time.RFC3339), rfc},
	} {
		t.Run(tc.at, func(t *testing.T) {
			f := newFakeAdmin(t, func(_ int, a syncproto.Admin, send func(...syncproto.Message)) {
				send(syncproto.UpdateStatus{State: syncproto.StateScheduled, ID: "u-7", When: a.At, Source: a.Source})
			})
			code, out, errOut := runAdminCLI(t, t.Context(), f, "--from", "/srv/releases/erp.tar.gz", "--at", tc.at, "--countdown", "5")
			if code != ExitOK {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			a := f.lastRequest(t)
			if a.At != tc.want.Unix() || a.Countdown != 300 || a.Op != syncproto.OpUpdate {
				t.Errorf("sent At %v, countdown %d, op %d; want %v, 300, OpUpdate", time.Unix(a.At, 0), a.Countdown, a.Op, tc.want)
			}
			want := "Update to /srv/releases/erp.tar.gz scheduled for " + tc.want.Local().Format("2006-01-02 15:04") + " (local).\n"
			if !strings.HasPrefix(out, want) {
				t.Errorf("stdout %q, want %q", out, want)
			}
		})
	}
}

func TestParseAt(t *testing.T) {
	now := time.Date(2026, 11, 23, 14, 30, 15, 0, time.Local)
	for _, tc := range []struct {
		in   string
		want time.Time // zero: an error
	}{
		{"02:00", time.Date(2026, 11, 24, 2, 0, 0, 0, time.Local)},
		{"14:31", time.Date(2026, 11, 23, 14, 31, 0, 0, time.Local)},
		{"14:30", time.Date(2026, 11, 24, 14, 30, 0, 0, time.Local)}, // this minute has begun
		{"9:05", time.Date(2026, 11, 24, 9, 5, 0, 0, time.Local)},
		{"23:59", time.Date(2026, 11, 23, 23, 59, 0, 0, time.Local)},
		{"2026-11-30T02:00:00Z", time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)},
		{"2026-11-23T14:30:15" + now.Format("Z07:00"), time.Time{}}, // now is not the future
		{"2025-01-01T00:00:00Z", time.Time{}},
		{"24:00", time.Time{}},
		{"2am", time.Time{}},
		{"", time.Time{}},
	} {
		got, err := parseAt(tc.in, now)
		if tc.want.IsZero() {
			if err == nil {
				t.Errorf("parseAt(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("parseAt(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestAdminStatusAndCancel(t *testing.T) {
	t.Setenv(smartclient.AdminPasswordEnv, fakePassword)
	when := time.Date(2026, 11, 24, 2, 0, 0, 0, time.Local)
	scheduled := syncproto.UpdateStatus{State: syncproto.StateScheduled, ID: "u-7", RunningBuild: "7.00.240501A",
		OldBuild: "7.00.240501A", NewBuild: "7.00.241101A", When: when.Unix(), Source: "/srv/releases/erp.tar.gz"}
	cancelled := scheduled
	cancelled.State, cancelled.When, cancelled.Message = syncproto.StateCancelled, when.Add(-time.Hour).Unix(), "cancelled by admin"
	for _, tc := range []struct {
		name   string
		args   []string
		op     syncproto.AdminOp
		answer syncproto.Message
		code   int
		out    []string
		errOut string
	}{
		{"status", []string{"--status"}, syncproto.OpStatus, scheduled, ExitOK, []string{
			"Update:         scheduled (u-7)\n",
			"Running build:  7.00.240501A\n",
			"Builds:         7.00.240501A -> 7.00.241101A\n",
			"Starts at:      " + when.Format("2006-01-02 15:04:05") + " (local)\n",
			"Source:         /srv/releases/erp.tar.gz\n",
		}, ""},
		{"status of a revert", []string{"--status"}, syncproto.OpStatus,
			syncproto.UpdateStatus{State: syncproto.StateReverted, ID: "u-6", RunningBuild: "A", OldBuild: "A", NewBuild: "B",
				When: when.Unix(), Message: "the new server did not answer"},
			ExitOK, []string{"Update:         reverted (u-6)\n", "Ended:          ", "Message:        the new server did not answer\n"}, ""},
		// Nothing the server says reaches the terminal raw.
		{"status with escapes", []string{"--status"}, syncproto.OpStatus,
			syncproto.UpdateStatus{State: syncproto.StateFailed, ID: "u-\x1b[2J", RunningBuild: "A\r", OldBuild: "A", NewBuild: "\x1b]0;x\x07",
				When: when.Unix(), Source: "src\x1b[1A", Message: "fine\rUpdated"},
			ExitOK, []string{"Update:         failed (u-\\x1b[2J)\n", "Running build:  A\\x0d\n", "Builds:         A -> \\x1b]0;x\\x07\n",
				"Source:         src\\x1b[1A\n", "Message:        fine\\x0dUpdated\n"}, ""},
		{"cancel", []string{"--cancel"}, syncproto.OpCancel, cancelled, ExitOK,
			[]string{"Cancelled the update to /srv/releases/erp.tar.gz (u-7).\n"}, ""},
		{"nothing to cancel", []string{"--cancel", "--user", "admin"}, syncproto.OpCancel,
			&syncproto.Error{Code: syncproto.CodeRefused, Message: "no update is scheduled or counting down"},
			ExitFailed, nil, "The server refused to cancel: no update is scheduled or counting down\n"},
		{"too late to cancel", []string{"--cancel"}, syncproto.OpCancel,
			syncproto.UpdateStatus{State: syncproto.StateSwitching, ID: "u-7"},
			ExitFailed, nil, "The update was not cancelled; it is switching.\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAdmin(t, answer(tc.answer))
			code, out, errOut := runAdminCLI(t, t.Context(), f, tc.args...)
			if code != tc.code || !strings.HasPrefix(errOut, tc.errOut) || tc.errOut == "" && errOut != "" {
				t.Errorf("exit %d, want %d; stderr %q, want %q", code, tc.code, errOut, tc.errOut)
			}
			for _, want := range tc.out {
				if !strings.Contains(out, want) {
					t.Errorf("stdout lacks %q:\n%s", want, out)
				}
			}
			if a := f.lastRequest(t); a.Op != tc.op || a.Source != "" || a.Countdown != 0 || a.At != 0 || a.Notify != "" || a.Flags != 0 {
				t.Errorf("request %+v, want a bare op %d", a, tc.op)
			}
		})
	}
}

func TestAdminFlags(t *testing.T) {
	past := time.Now().Add(-time.Hour).Format(time.RFC3339)
	for _, tc := range []struct {
		name      string
		args      []string
		short     bool   // SMARTSYNC_TEST_SHORT_COUNTDOWN=1
		errOut    string // "" when accepted
		countdown uint32 // sent, when accepted
	}{
		{"no --from: the server's feed", nil, false, "", 120},
		{"countdown too short", []string{"--from", "r.tar.gz", "--countdown", "30s"}, false, `--countdown "30s": must be between 1m and 10m`, 0},
		{"countdown too short for tests too", []string{"--from", "r.tar.gz", "--countdown", "500ms"}, true, `must be between 1s and 10m`, 0},
		{"short countdown for tests", []string{"--from", "r.tar.gz", "--countdown", "30s"}, true, "", 30},
		{"countdown too long", []string{"--from", "r.tar.gz", "--countdown", "11m"}, false, "must be between 1m and 10m", 0},
		{"countdown in plain minutes", []string{"--from", "r.tar.gz", "--countdown", "10"}, false, "", 600},
		{"countdown of a minute and a half", []string{"--from", "r.tar.gz", "--countdown", "90s"}, false, "", 90},
		{"countdown in fractions of seconds", []string{"--from", "r.tar.gz", "--countdown", "90.5s"}, false, "whole seconds", 0},
		{"countdown not a duration", []string{"--from", "r.tar.gz", "--countdown", "soon"}, false, "not a duration", 0},
		{"default countdown", []string{"--from", "r.tar.gz"}, false, "", 120},
		{"--at in the past", []string{"--from", "r.tar.gz", "--at", past}, false, "is in the past", 0},
		{"--at not a time", []string{"--from", "r.tar.gz", "--at", "tonight"}, false, "not HH:MM or an RFC 3339 time", 0},
		{"--notify not an address", []string{"--from", "r.tar.gz", "--notify", "admin at example"}, false, "not an e-mail address", 0},
		{"--status with --from", []string{"--status", "--from", "r.tar.gz"}, false, "--status takes no --from", 0},
		{"--status with --countdown", []string{"--status", "--countdown", "2m"}, false, "--status takes no --countdown", 0},
		{"--cancel with --at", []string{"--cancel", "--at", "02:00"}, false, "--cancel takes no --at", 0},
		{"--cancel with --notify", []string{"--cancel", "--notify", "a@example.com"}, false, "--cancel takes no --notify", 0},
		{"--status and --cancel", []string{"--status", "--cancel"}, false, "exclude each other", 0},
		{"empty --user", []string{"--status", "--user", ""}, false, "--user: empty", 0},
		{"unknown flag", []string{"--from", "r.tar.gz", "--force"}, false, "unknown flag: --force", 0},
		{"stray argument", []string{"--from", "r.tar.gz", "now"}, false, "unexpected arguments", 0},
		{"bad --wait", []string{"--from", "r.tar.gz", "--wait", "0s"}, false, "--wait 0s: must be positive", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(smartclient.AdminPasswordEnv, fakePassword)
			if tc.short {
				t.Setenv(smartclient.ShortCountdownEnv, "1")
			}
			f := newFakeAdmin(t, func(_ int, a syncproto.Admin, send func(...syncproto.Message)) {
				send(syncproto.UpdateStatus{State: syncproto.StateFailed, ID: "u-1", Message: "test"})
			})
			code, _, errOut := runAdminCLI(t, t.Context(), f, tc.args...)
			f.close()
			if tc.errOut != "" {
				if code != ExitUsage || !strings.Contains(errOut, tc.errOut) {
					t.Errorf("exit %d, stderr %q; want %d and %q", code, errOut, ExitUsage, tc.errOut)
				}
				if len(f.requests) != 0 {
					t.Errorf("a refused command line reached the server: %+v", f.requests)
				}
				return
			}
			if code == ExitUsage || len(f.requests) != 1 {
				t.Fatalf("exit %d, stderr %q, %d requests", code, errOut, len(f.requests))
			}
			if got := f.requests[0].Countdown; got != tc.countdown {
				t.Errorf("countdown %d s sent, want %d", got, tc.countdown)
			}
		})
	}
}

// TestAdminInterrupted interrupts a client that waits for a restarting
// server: it stops at once with 130 and says that the update goes on.
func TestAdminInterrupted(t *testing.T) {
	t.Setenv(smartclient.AdminPasswordEnv, fakePassword)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	f := newFakeAdmin(t, func(n int, a syncproto.Admin, send func(...syncproto.Message)) {
		if n == 0 {
			send(syncproto.UpdateStatus{State: syncproto.StateCountdown, ID: fakeUpdateID})
			return
		}
		if n == 3 {
			cancel()
		}
		send(syncproto.UpdateStatus{State: syncproto.StateSwitching, ID: fakeUpdateID})
	})
	code, _, errOut := runAdminCLI(t, ctx, f, "--from", "r.tar.gz")
	if code != ExitInterrupted || !strings.Contains(errOut, "An update the server accepted goes on") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

// TestAdminLibrary uses Admin directly: events come through the callback,
// bad options are usage errors before any connection.
func TestAdminLibrary(t *testing.T) {
	f := newFakeAdmin(t, answer(syncproto.AdminEvent{Text: "one"}, syncproto.AdminEvent{Text: "two"},
		syncproto.UpdateStatus{State: syncproto.StateNone, RunningBuild: "A"}))
	var events []string
	o := smartclient.AdminOptions{Server: f.addr, Fingerprint: f.fingerprint, User: fakeUser, Password: fakePassword, Op: syncproto.OpStatus,
		Event: func(s string) { events = append(events, s) }}
	st, err := smartclient.Admin(t.Context(), o)
	if err != nil || st.State != syncproto.StateNone || st.RunningBuild != "A" || strings.Join(events, ",") != "one,two" {
		t.Fatalf("Admin = %+v, %v; events %q", st, err, events)
	}
	for _, mod := range []func(*smartclient.AdminOptions){
		func(o *smartclient.AdminOptions) { o.Password = "" },
		func(o *smartclient.AdminOptions) { o.Password = strings.Repeat("x", syncproto.MaxPassword+1) },
		func(o *smartclient.AdminOptions) { o.User = "" },
		func(o *smartclient.AdminOptions) { o.Op = 9 },
		func(o *smartclient.AdminOptions) {
			o.Op, o.Source = syncproto.OpUpdate, strings.Repeat("x", syncproto.MaxPath+1)
		}, // source too long; none is the server's feed
		func(o *smartclient.AdminOptions) {
			o.Op, o.Source, o.Countdown = syncproto.OpUpdate, "r.tar.gz", time.Second
		}, // too short
		func(o *smartclient.AdminOptions) {
			o.Op, o.Source, o.Countdown = syncproto.OpUpdate, "r.tar.gz", 61500*time.Millisecond
		}, // not whole seconds
	} {
		o := o
		mod(&o)
		if _, err := smartclient.Admin(t.Context(), o); !errors.Is(err, smartclient.ErrUsage) {
			t.Errorf("smartclient.Admin(%+v) = %v, want a usage error", o, err)
		}
	}
	// Plain TCP, even where both sides allow it, never carries an
	// administrator's password.
	plain := o
	plain.AllowPlaintext = true
	if _, err := smartclient.Admin(t.Context(), plain); !errors.Is(err, smartclient.ErrAdminPlaintext) {
		t.Errorf("Admin over plain TCP = %v, want %v", err, smartclient.ErrAdminPlaintext)
	}
	f.close()
	if len(f.requests) != 1 {
		t.Errorf("%d requests reached the server, want 1", len(f.requests))
	}
}

// TestAdminDeniedSaysWhy: a server whose self-update is not configured,
// or that holds back an address after failed logins, is not reported as
// a wrong password.
func TestAdminDeniedSaysWhy(t *testing.T) {
	for _, tc := range []struct {
		err  syncproto.Error
		want string
	}{
		{syncproto.Error{Code: syncproto.CodeDenied, Message: "wrong administrator user or password"}, "Access denied: wrong administrator user or password."},
		{syncproto.Error{Code: syncproto.CodeDenied, Message: "self-update is disabled on this server: [ADMIN] PasswordHash is not set in AppServer.ini"}, "self-update is not configured"},
		{syncproto.Error{Code: syncproto.CodeDenied, Retry: 30, Message: "too many failed logins from this address; try again in 30 s"}, "try again in 30 s"},
	} {
		var b bytes.Buffer
		sayAdminError(&b, smartclient.AdminOptions{Op: syncproto.OpStatus}, &tc.err, ExitFailed)
		if !strings.Contains(b.String(), tc.want) {
			t.Errorf("%v: said %q, want %q", tc.err, b.String(), tc.want)
		}
	}
}

// TestAdminCheck: "admin check" asks for the feed (AdminFeed) and shows the
// newest release, escaped like everything a server says.
func TestAdminCheck(t *testing.T) {
	t.Setenv(smartclient.AdminPasswordEnv, fakePassword)
	checked := time.Date(2026, 12, 6, 9, 0, 0, 0, time.Local)
	for _, tc := range []struct {
		name   string
		answer syncproto.Message
		code   int
		out    []string
		errOut string
	}{
		{"newer", syncproto.UpdateStatus{RunningBuild: "7.00.240501A", FeedChecked: checked.Unix(), NewestBuild: "7.01.250101A", NewestNotes: "Faster\x1b[2J start"},
			ExitOK, []string{"Running build:  7.00.240501A\n", "Newer release:  7.01.250101A: Faster\\x1b[2J start\n", "smartclient admin update-server' (without --from)"}, ""},
		{"up to date", syncproto.UpdateStatus{RunningBuild: "7.01.250101A", FeedChecked: checked.Unix()},
			ExitOK, []string{"newest release of its feed (checked 2026-12-06 09:00, local)"}, ""},
		{"no feed", syncproto.UpdateStatus{RunningBuild: "7.01.250101A"},
			ExitOK, []string{"has no release feed ([SELFUPDATE] Feed"}, ""},
		{"feed failing", syncproto.UpdateStatus{RunningBuild: "7.01.250101A", FeedError: "release feed https://x/feed.json: expired"},
			ExitOK, []string{"Feed problem:   release feed https://x/feed.json: expired\n"}, ""},
		{"older server", &syncproto.Error{Code: syncproto.CodeProtocol, Message: "malformed Admin: unknown flags 0x4"},
			ExitFailed, nil, "The server does not report a release feed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAdmin(t, answer(tc.answer))
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "smartclient.ini"), []byte("[SSL]\nFingerprint="+f.fingerprint+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			code := Main(t.Context(), []string{"admin", "check", "--dir", dir, "--server", f.addr}, strings.NewReader(""), &out, &errb)
			if code != tc.code || !strings.HasPrefix(errb.String(), tc.errOut) || tc.errOut == "" && errb.Len() != 0 {
				t.Errorf("exit %d, want %d; stderr %q, want %q", code, tc.code, errb.String(), tc.errOut)
			}
			for _, want := range tc.out {
				if !strings.Contains(out.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, out.String())
				}
			}
			if a := f.lastRequest(t); a.Op != syncproto.OpStatus || a.Flags != syncproto.AdminFeed || a.Source != "" {
				t.Errorf("request %+v, want OpStatus with AdminFeed", a)
			}
		})
	}
	if code, _, errOut := runMain(t, "admin", "check", "--from", "x.tar.gz"); code != ExitUsage || !strings.Contains(errOut, "unknown flag: --from") {
		t.Errorf("check --from: exit %d, %q", code, errOut)
	}
}
