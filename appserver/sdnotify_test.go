package appserver

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/handover"
	"github.com/erpupdate/smartsync/internal/testtree"
)

// TestSystemdNotify runs the server as systemd runs a Type=notify unit,
// with NOTIFY_SOCKET naming a real datagram socket: READY=1 comes once a
// hello is answered (the test's own hello, sent the moment READY=1
// arrives, is answered at once), and STOPPING=1 when the server stops.
func TestSystemdNotify(t *testing.T) {
	dir, err := os.MkdirTemp("", "sdnotify") // short: a socket path has 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Skipf("no unix datagram socket here: %v", err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	// As systemd sets it for the process it starts (and no other).
	t.Setenv("SYSTEMD_EXEC_PID", strconv.Itoa(os.Getpid()))

	cfg := stateLockConfig(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errb testtree.Buffer
	done := make(chan error, 1)
	go func() { done <- RunServer(ctx, ServeOptions{Config: cfg, Listen: "127.0.0.1:0"}, &out, &errb) }()

	read := func() string {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 4096)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("reading the notify socket: %v\nserver log:\n%s", err, errb.String())
		}
		return string(buf[:n])
	}
	msg := read()
	if !strings.Contains("\n"+msg+"\n", "\nREADY=1\n") {
		t.Fatalf("first notification %q, want READY=1", msg)
	}
	m := regexp.MustCompile(`STATUS=serving on (\S+)`).FindStringSubmatch(msg)
	if m == nil {
		t.Fatalf("READY=1 without the address: %q", msg)
	}
	hctx, hcancel := context.WithTimeout(t.Context(), time.Second)
	err = handover.Hello(hctx, m[1])
	hcancel()
	if err != nil {
		t.Fatalf("READY=1 came, but a hello at %s is not answered at once: %v", m[1], err)
	}
	// And it came after the server began accepting, not with the
	// listener alone.
	logText := errb.String()
	if i, j := strings.Index(logText, "msg=listening"), strings.Index(logText, "telling systemd the server is ready"); i < 0 || j < i {
		t.Errorf("the log does not say the server told systemd it is ready after it began serving:\n%s", logText)
	}

	cancel()
	if msg := read(); !strings.Contains(msg, "STOPPING=1") {
		t.Errorf("notification at the stop %q, want STOPPING=1", msg)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("RunServer: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not stop")
	}
}

// TestNoNotifyWithoutSystemd: without NOTIFY_SOCKET nothing is sent and
// no hello is made. (A child of a service, which inherits NOTIFY_SOCKET,
// is not taken for systemd's process: see service.Detect.)
func TestNoNotifyWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			accepted <- struct{}{}
		}
	}()
	stop := notifyReady(t.Context(), discardLogger(), ln.Addr())
	select {
	case <-accepted:
		t.Error("notifyReady said hello without NOTIFY_SOCKET")
	case <-time.After(300 * time.Millisecond):
	}
	stop()
}

// TestNotifyNotFromAChild: a server started by a service's process (a
// script under a unit, a test runner) inherits NOTIFY_SOCKET but is not
// the unit's process; it must not tell that unit it is ready.
func TestNotifyNotFromAChild(t *testing.T) {
	dir, err := os.MkdirTemp("", "sdnotify")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Skipf("no unix datagram socket here: %v", err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("INVOCATION_ID", "0123456789abcdef")
	t.Setenv("SYSTEMD_EXEC_PID", strconv.Itoa(os.Getppid()))

	cfg := stateLockConfig(t)
	ctx, cancel := context.WithCancel(t.Context())
	var out, errb testtree.Buffer
	done := make(chan error, 1)
	go func() { done <- RunServer(ctx, ServeOptions{Config: cfg, Listen: "127.0.0.1:0"}, &out, &errb) }()
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4096)
	if n, err := conn.Read(buf); err == nil {
		t.Errorf("a server that is not systemd's process sent %q", buf[:n])
	}
	if !strings.Contains(errb.String(), "msg=listening") {
		t.Errorf("the server did not start:\n%s", errb.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("RunServer: %v", err)
	}
}
