package appserver

import (
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/testtree"
)

// oddListener is a real listener whose first fails Accepts fail with an
// error no OS list knows (what Wine's AcceptEx once returned), as a fault
// injected in front of the real one (1<<62: all of them, in effect).
type oddListener struct {
	net.Listener
	fails atomic.Int64
}

var errOddAccept = errors.New("acceptex: Overlapped I/O incomplete.")

func (l *oddListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: errOddAccept}
	}
	return l.Listener.Accept()
}

func listenOdd(t *testing.T, fails int64) *oddListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &oddListener{Listener: ln}
	l.fails.Store(fails)
	return l
}

// TestAcceptOddErrorTriedAgain: an Accept error the server does not know
// to pass is tried again, a few times, and logged; the client waiting in
// the listen queue is served. Before, the server stopped at the first,
// and the client's handshake met EOF.
func TestAcceptOddErrorTriedAgain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"app.txt": "one"}, oldTime)
	ln := listenOdd(t, 3)
	ts := startServer(t, linuxConfig(t, dir), nil, ln)
	c := mustDial(t, ts.addr)
	if _, err := c.hello(srvBuild, "linux", "after-odd-errors"); err != nil {
		t.Fatalf("hello after three odd Accept errors: %v\n%s", err, ts.logs)
	}
	c.conn.Close()
	logs := ts.logs.String()
	if n := strings.Count(logs, `msg="accepting connections failed; trying again"`); n != 3 {
		t.Errorf("%d log lines of the odd errors, want 3:\n%s", n, logs)
	}
	if !strings.Contains(logs, "Overlapped I/O incomplete") {
		t.Errorf("the log does not name the error:\n%s", logs)
	}
}

// TestAcceptOddErrorForGood: a listener that keeps failing ends Serve with
// the error after maxOddAcceptErrors tries, so that a service manager
// restarts the server. (Before, Serve then waited for ever for its own
// goroutines, which ended with its context only.)
func TestAcceptOddErrorForGood(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"app.txt": "one"}, oldTime)
	ln := listenOdd(t, 1<<62)
	ts := startServer(t, linuxConfig(t, dir), nil, ln)
	select {
	case <-ts.served:
	case <-time.After(15 * time.Second):
		t.Fatalf("Serve goes on after 15 s of failing Accepts:\n%s", ts.logs)
	}
	if ts.err == nil || !errors.Is(ts.err, errOddAccept) || !strings.Contains(ts.err.Error(), "11 tries") {
		t.Errorf("Serve = %v, want the Accept error after 11 tries", ts.err)
	}
	ts.err = nil // seen; the cleanup's stop returns it otherwise
}

// TestConsoleAcceptOddError: the console's listener tries an odd Accept
// error again, as the server's loop does (net/http's Serve would stop the
// console at it), and gives up after maxOddAcceptErrors in a row.
func TestConsoleAcceptOddError(t *testing.T) {
	logs := &testtree.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	odd := listenOdd(t, 3)
	defer odd.Close()
	l := &limitListener{Listener: odd, sem: make(chan struct{}, 4), perAddr: 4, log: log}
	dialed := make(chan error, 1)
	go func() {
		c, err := net.Dial("tcp", odd.Addr().String())
		if err == nil {
			c.Close()
		}
		dialed <- err
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept after three odd errors: %v", err)
	}
	c.Close()
	if err := <-dialed; err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "web console: accepting connections failed; trying again"); n != 3 {
		t.Errorf("%d log lines of the odd errors, want 3:\n%s", n, logs)
	}

	forGood := listenOdd(t, 1<<62)
	defer forGood.Close()
	l = &limitListener{Listener: forGood, sem: make(chan struct{}, 4), perAddr: 4, log: log}
	if _, err := l.Accept(); !errors.Is(err, errOddAccept) {
		t.Errorf("Accept of a listener failing for good = %v, want its error", err)
	}
}
