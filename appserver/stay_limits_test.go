package appserver

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/syncproto"
)

// stayClient says hello from 127.0.0.1, reports and sends Stay.
func stayClient(t *testing.T, addr, id string) *testClient {
	t.Helper()
	c := dialFrom(t, addr, "127.0.0.1")
	if _, err := c.hello(srvBuild, "linux", id); err != nil {
		t.Fatal(err)
	}
	if err := c.report(syncproto.Report{Outcome: syncproto.OutcomeUpToDate, Build: srvBuild}); err != nil {
		t.Fatal(err)
	}
	if err := c.send(syncproto.Stay{}); err != nil {
		t.Fatal(err)
	}
	return c
}

// heartbeats reads for d and counts the heartbeats; any other message or
// error but the read deadline is returned.
func heartbeats(c *testClient, d time.Duration) (int, error) {
	c.conn.SetReadDeadline(time.Now().Add(d))
	n := 0
	for {
		m, err := c.r.Read()
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		hb, ok := m.(syncproto.Notice)
		if !ok || hb.Kind != syncproto.NoticeHeartbeat || hb.Seconds != 1 {
			return n, fmt.Errorf("got %+v, want a heartbeat of 1 s", m)
		}
		n++
	}
}

// TestServerStayHeartbeatsAndCap: a staying session hears a heartbeat at
// once and then every interval; over MaxStaySessions, Stay is answered
// with CodeBusy and the session closed, and once a staying session leaves
// another may stay.
func TestServerStayHeartbeatsAndCap(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"smartclient": "client"}, oldTime)
	const interval = 100 * time.Millisecond
	ts := startServer(t, linuxConfig(t, dir), func(s *Server) {
		s.MaxStaySessions = 2
		s.Heartbeat = interval
	}, nil)
	a, b := stayClient(t, ts.addr, "a"), stayClient(t, ts.addr, "b")
	// 1 at once, then one each 100 ms: 5 or 6 in 550 ms.
	var wg sync.WaitGroup
	for _, c := range []*testClient{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := heartbeats(c, 550*time.Millisecond)
			if err != nil || n < 5 || n > 7 {
				t.Errorf("%d heartbeats in 550 ms (%v), want 5 or 6", n, err)
			}
		}()
	}
	wg.Wait()
	over := stayClient(t, ts.addr, "over")
	codes, err := over.readUntilClosed()
	if err != nil || len(codes) != 1 || codes[0] != syncproto.CodeBusy {
		t.Errorf("third staying session: got codes %v, %v; want CodeBusy and a close", codes, err)
	}
	// The other two still stay.
	if n, err := heartbeats(a, 250*time.Millisecond); err != nil || n < 1 {
		t.Errorf("after the refusal: %d heartbeats, %v", n, err)
	}
	b.conn.Close()
	var n int
	for deadline := time.Now().Add(3 * time.Second); n == 0 && time.Now().Before(deadline); {
		c := stayClient(t, ts.addr, "after")
		n, err = heartbeats(c, 250*time.Millisecond)
		c.conn.Close()
	}
	if n == 0 {
		t.Errorf("no session could stay after one left: %v", err)
	}
}

// TestStayWithoutAGoroutineOfItsOwn: a staying session costs the server
// the session's goroutine and nothing more (10,000 workstations keep one
// all day), and still hears a notice at once, with the next heartbeat
// minutes away, and the server's stop.
func TestStayWithoutAGoroutineOfItsOwn(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"smartclient": "client"}, oldTime)
	ts := startServer(t, linuxConfig(t, dir), func(s *Server) {
		s.Heartbeat = 10 * time.Minute
		s.IdleTimeout = time.Minute
	}, nil)
	first := func(c *testClient) {
		t.Helper()
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		m, err := c.r.Read()
		if n, ok := m.(syncproto.Notice); err != nil || !ok || n.Kind != syncproto.NoticeHeartbeat {
			t.Fatalf("first message of a staying session: %+v, %v; want a heartbeat", m, err)
		}
	}
	c0 := stayClient(t, ts.addr, "c0")
	first(c0)
	settle := func() int {
		// Goroutines of sessions that ended may take a moment to go.
		time.Sleep(100 * time.Millisecond)
		return runtime.NumGoroutine()
	}
	before := settle()
	const n = 40
	clients := []*testClient{c0}
	for i := range n {
		c := stayClient(t, ts.addr, fmt.Sprintf("c%d", i+1))
		first(c)
		clients = append(clients, c)
	}
	if per := float64(settle()-before) / n; per > 1.2 {
		t.Errorf("%.2f goroutines a staying session, want 1", per)
	}
	ts.srv.upd.broadcast(syncproto.Notice{Kind: syncproto.NoticeCountdown, Seconds: 90, Message: "test"})
	for i, c := range clients {
		c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		m, err := c.r.Read()
		if nt, ok := m.(syncproto.Notice); err != nil || !ok || nt.Kind != syncproto.NoticeCountdown {
			t.Fatalf("session %d after a broadcast: %+v, %v; want the countdown at once", i, m, err)
		}
	}
	start := time.Now()
	if err := ts.stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the server took %v to stop with %d sessions staying", took, len(clients))
	}
}
