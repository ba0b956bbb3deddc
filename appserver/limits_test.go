package appserver

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/syncproto"
)

// dialFrom connects to addr from the local IP address from (127.0.0.1,
// 127.0.0.2, ...: Linux answers on all of 127/8), so that a test can be
// several clients. It skips the test where the address cannot be used.
func dialFrom(t *testing.T, addr, from string) *testClient {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		if from != "127.0.0.1" {
			t.Skipf("cannot connect from %s: %v", from, err)
		}
		t.Fatal(err)
	}
	c, err := handshake(conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return c
}

// holdSessions opens n sessions from the address from, each welcomed, and
// returns a function that closes them.
func holdSessions(t *testing.T, addr, from string, n int) func() {
	t.Helper()
	var held []*testClient
	for i := range n {
		c := dialFrom(t, addr, from)
		if _, err := c.hello(srvBuild, "linux", fmt.Sprintf("held-%s-%d", from, i)); err != nil {
			t.Fatalf("held session %d of %d from %s: %v", i+1, n, from, err)
		}
		held = append(held, c)
	}
	return func() {
		for _, c := range held {
			c.conn.Close()
		}
	}
}

// waitHeld waits until the server has admitted n connections.
func waitHeld(t *testing.T, ts *testServer, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		// s.limits is set before the first connection is tracked.
		ts.srv.mu.Lock()
		held := len(ts.srv.conns)
		ts.srv.mu.Unlock()
		if held > 0 {
			ts.srv.limits.mu.Lock()
			held = ts.srv.limits.total
			ts.srv.limits.mu.Unlock()
		}
		if held == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server holds %d connections, want %d", held, n)
		}
	}
}

// busyAnswer reads the server's answer on c and checks that it is
// CodeBusy with a wait to retry after, said in the message too.
func busyAnswer(c *testClient) error {
	m, err := c.r.Read()
	var pe *syncproto.Error
	switch {
	case err == nil:
		return fmt.Errorf("got %v, want Error{CodeBusy}", m.Type())
	case !errors.As(err, &pe):
		return fmt.Errorf("got %v, want Error{CodeBusy}", err)
	case pe.Code != syncproto.CodeBusy:
		return fmt.Errorf("got code %v (%s), want CodeBusy", pe.Code, pe.Message)
	case pe.Retry < uint16(busyRetry/time.Second) || pe.Retry > uint16(2*busyRetry/time.Second):
		return fmt.Errorf("Retry %d s, want %v..%v", pe.Retry, busyRetry, 2*busyRetry)
	case pe.Message != fmt.Sprintf("server is busy, retry in %d s", pe.Retry):
		return fmt.Errorf("message %q does not say the wait of %d s", pe.Message, pe.Retry)
	}
	return nil
}

// syncWithin runs a full session from 127.0.0.1 until one succeeds or limit
// passes: the server lets the closed sessions' places go when it has seen
// them close.
func syncWithin(addr string, files map[string]string, limit time.Duration) error {
	var err error
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = fullSession(addr, "good-client", files); err == nil {
			return nil
		}
	}
	return err
}

// TestServerConnectionCaps: over the per-address cap, or over the total
// cap, a new connection hears CodeBusy with a wait (after its hello while
// the administrators' reserve has room, at once without reading anything
// when it is full) while the connections under the cap are served; once
// the held connections close, a client syncs.
func TestServerConnectionCaps(t *testing.T) {
	files := map[string]string{"smartclient": "client", "lib/a.so": "a"}
	dir := t.TempDir()
	writeTree(t, dir, files, oldTime)
	tests := []struct {
		name           string
		total, perAddr int
		heldFrom       string
		overFrom       string
		servedBesideOn string // an address still served over the cap; "" for none
	}{
		{"per address", 100, 3, "127.0.0.1", "127.0.0.1", "127.0.0.2"},
		{"total", 3, 100, "127.0.0.1", "127.0.0.2", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, linuxConfig(t, dir), func(s *Server) {
				s.MaxConnections, s.MaxPerAddress = tc.total, tc.perAddr
				s.IdleTimeout, s.HandshakeTimeout = 10*time.Second, 5*time.Second
			}, nil)
			release := holdSessions(t, ts.addr, tc.heldFrom, 3)
			defer release()

			// Over the cap with the reserve free: heard after the hello.
			c := dialFrom(t, ts.addr, tc.overFrom)
			if err := c.send(syncproto.Hello{ClientBuild: srvBuild, OS: "linux", ClientID: "over"}); err != nil {
				t.Fatal(err)
			}
			if err := busyAnswer(c); err != nil {
				t.Errorf("client over the cap, reserve free: %v", err)
			}
			// Its place is given back before the server closes it.
			if _, err := c.readUntilClosed(); err != nil {
				t.Fatal(err)
			}
			// Fill the reserve with silent connections: the next one is
			// answered without a word from it.
			for range adminReserve {
				dialFrom(t, ts.addr, tc.overFrom)
			}
			waitHeld(t, ts, 3+adminReserve)
			start := time.Now()
			if err := busyAnswer(dialFrom(t, ts.addr, tc.overFrom)); err != nil {
				t.Errorf("silent client over the cap, reserve full: %v", err)
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("the busy answer took %v", took)
			}
			if tc.servedBesideOn != "" {
				c := dialFrom(t, ts.addr, tc.servedBesideOn)
				if _, err := c.hello(srvBuild, "linux", "other-address"); err != nil {
					t.Errorf("client from another address: %v", err)
				}
				c.conn.Close()
			}
			release()
			if err := syncWithin(ts.addr, files, 8*time.Second); err != nil {
				t.Errorf("after the held sessions closed: %v", err)
			}
			if n := strings.Count(ts.logs.String(), "server busy: refusing connections"); n != 1 {
				t.Errorf("%d log lines of refusals, want 1:\n%s", n, ts.logs.String())
			}
		})
	}
}

// TestServerAdminGetsInWhenFull: on a server that holds all the
// connections it may, an administrator's session is still taken.
func TestServerAdminGetsInWhenFull(t *testing.T) {
	files := map[string]string{"smartclient": "client"}
	dir := t.TempDir()
	writeTree(t, dir, files, oldTime)
	ts := startServer(t, linuxConfig(t, dir), func(s *Server) {
		s.MaxConnections, s.MaxPerAddress = 2, 2
		s.IdleTimeout = 10 * time.Second
	}, nil)
	defer holdSessions(t, ts.addr, "127.0.0.1", 2)()
	c := dialFrom(t, ts.addr, "127.0.0.1")
	_, key, err := syncproto.NewAdminKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.send(key); err != nil {
		t.Fatal(err)
	}
	if _, err := c.r.Expect(syncproto.MsgAdminKey); err != nil {
		t.Fatalf("administrator on a full server: %v", err)
	}
}

// TestServerFlood: a few hundred connections at once, against a cap of
// 20, each saying hello: at most 20 are welcomed, every other one hears
// CodeBusy, the refusals are logged in one line, and once they have gone
// a good client syncs.
func TestServerFlood(t *testing.T) {
	files := map[string]string{"smartclient": "client", "lib/a.so": "a"}
	dir := t.TempDir()
	writeTree(t, dir, files, oldTime)
	const limit, flood = 20, 300
	ts := startServer(t, linuxConfig(t, dir), func(s *Server) {
		s.MaxConnections = limit
		s.IdleTimeout, s.HandshakeTimeout = 10*time.Second, 5*time.Second
	}, nil)
	var (
		mu                     sync.Mutex
		welcomed, busy, failed int
		firstErr               error
		wg                     sync.WaitGroup
		conns                  = make(chan net.Conn, flood)
	)
	for i := range flood {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialClient(ts.addr)
			if err == nil {
				conns <- c.conn
				err = c.send(syncproto.Hello{ClientBuild: srvBuild, OS: "linux", ClientID: fmt.Sprintf("flood-%d", i)})
			}
			var m syncproto.Message
			if err == nil {
				m, err = c.r.Read()
			}
			mu.Lock()
			defer mu.Unlock()
			var pe *syncproto.Error
			switch {
			case err == nil && m.Type() == syncproto.MsgWelcome:
				welcomed++
			case errors.As(err, &pe) && pe.Code == syncproto.CodeBusy && pe.Retry > 0:
				busy++
			default:
				failed++
				if firstErr == nil {
					firstErr = fmt.Errorf("connection %d: %v, %v", i, m, err)
				}
			}
		}()
	}
	wg.Wait()
	close(conns)
	for c := range conns {
		c.Close()
	}
	t.Logf("%d connections: %d welcomed, %d busy, %d failed", flood, welcomed, busy, failed)
	if welcomed > limit || welcomed == 0 || busy < flood-limit-adminReserve || failed > 0 {
		t.Errorf("%d welcomed (cap %d), %d busy, %d failed (first: %v)", welcomed, limit, busy, failed, firstErr)
	}
	if err := syncWithin(ts.addr, files, 8*time.Second); err != nil {
		t.Errorf("after the flood: %v", err)
	}
	logs := ts.logs.String()
	if n := strings.Count(logs, "server busy: refusing connections") + strings.Count(logs, "server is busy"); n > 2 {
		t.Errorf("%d log lines of refusals for one flood, want at most 2", n)
	}
}

// TestServerSilentConnectionsCostLittle measures the heap that 200
// connections that never say hello hold in the server: a session's
// buffers are small until its hello is accepted, so each costs well under
// the 128 KiB of the two full buffers.
func TestServerSilentConnectionsCostLittle(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"smartclient": "client"}, oldTime)
	ts := startServer(t, linuxConfig(t, dir), func(s *Server) {
		s.HandshakeTimeout = 30 * time.Second
	}, nil)
	const n = 200
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		dialFrom(t, ts.addr, "127.0.0.1")
	}
	// Every connection accepted, and its session made and waiting.
	waitHeld(t, ts, n)
	time.Sleep(200 * time.Millisecond)
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	stack := (int64(after.StackInuse) - int64(before.StackInuse)) / n
	t.Logf("per silent connection (server and test client): %d bytes of heap, %d of stack", heap, stack)
	if heap > 16<<10 {
		t.Errorf("each silent connection holds %d bytes of heap, want under 16 KiB", heap)
	}
}
