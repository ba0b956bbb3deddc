package appserver

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/mail/mailtest"
	"github.com/erpupdate/smartsync/syncproto"
)

// syncAs opens a session as the workstation host (client id id) with
// build installed, fetches the release it is served and reports outcome;
// it returns the build it was served.
func syncAs(t *testing.T, addr, host, id, build string, outcome syncproto.Outcome) string {
	t.Helper()
	c, served := fetchAs(t, addr, host, id, build)
	if err := c.report(syncproto.Report{Outcome: outcome, Build: served}); err != nil {
		t.Fatal(err)
	}
	c.conn.Close()
	return served
}

// fetchAs opens a session as the workstation host (client id id) with
// build installed and fetches the release it is served, whose build it
// returns with the session, which owes its report.
func fetchAs(t *testing.T, addr, host, id, build string) (*testClient, string) {
	t.Helper()
	c := mustDial(t, addr)
	if err := c.send(syncproto.Hello{ClientBuild: build, OS: "linux", ClientID: id, Host: host}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.r.Expect(syncproto.MsgWelcome); err != nil {
		t.Fatal(err)
	}
	s := &viewSession{c: c}
	if err := c.send(syncproto.GetManifest{}); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := c.r.Read()
		if err != nil {
			t.Fatal(err)
		}
		if h, ok := m.(syncproto.ManifestHeader); ok {
			s.header = h
			break
		}
	}
	for range s.header.Count {
		m, err := c.r.Expect(syncproto.MsgManifestEntry)
		if err != nil {
			t.Fatal(err)
		}
		s.entries = append(s.entries, m.(syncproto.ManifestEntry))
	}
	s.fetchAll(t)
	return c, s.header.Build
}

// TestStagedRollout: with a pilot ring, a new release goes to the pilot
// workstations first while the others keep the previous one from the
// history; the pilot's successes promote it to everyone; a failing
// release halts, which is logged and mailed to [SELFUPDATE] Notify, and
// the workstations without it are served the previous release again; the
// administrator's promote, through the running server, ends the halt.
func TestStagedRollout(t *testing.T) {
	smtp := mailtest.Start(t, mailtest.Options{})
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"keep": "folder"}, oldTime)
	cfg, _ := loadServerConfig(t, "Enable=1", "PathLinux="+dir, "Build="+srvBuild,
		"[ROLLOUT]", "Pilot=pilot-*", "Delay=0", "MinSuccesses=2", "HaltPercent=40", "MinReports=2",
		"[SELFUPDATE]", "Notify=admin@example.com",
		"[MAIL]", "Host="+smtp.Host(), "Port="+strconv.Itoa(smtp.Port()), "From=erp@example.com", "StartTLS=0")
	state := t.TempDir()
	const b1, b2, b3 = "7.00.240601A", "7.00.240701A", "7.00.240801A"
	publishTree(t, cfg, state, b1, map[string]string{"app": "one"}, nil)
	ts := startServerIn(t, cfg, state, nil, nil)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the server's log:\n%s", ts.logs)
		}
	})
	// The first release goes to everyone: there is nothing before it.
	if got := syncAs(t, ts.addr, "desk-1", "d1", srvBuild, syncproto.OutcomeUpdated); got != b1 {
		t.Fatalf("the first release: desk-1 got %s", got)
	}

	publishTree(t, cfg, state, b2, map[string]string{"app": "two"}, nil)
	if got := syncAs(t, ts.addr, "pilot-1", "p1", b1, syncproto.OutcomeUpdated); got != b2 {
		t.Fatalf("pilot-1 got %s, want the new %s first", got, b2)
	}
	if got := syncAs(t, ts.addr, "desk-1", "d1", b1, syncproto.OutcomeUpToDate); got != b1 {
		t.Fatalf("desk-1 got %s before the promotion, want the previous %s", got, b1)
	}
	syncAs(t, ts.addr, "PILOT-2", "p2", b1, syncproto.OutcomeUpdated) // the second success promotes
	if got := syncAs(t, ts.addr, "desk-1", "d1", b1, syncproto.OutcomeUpdated); got != b2 {
		t.Fatalf("desk-1 got %s after 2 pilot successes, want %s", got, b2)
	}

	publishTree(t, cfg, state, b3, map[string]string{"app": "three, broken"}, nil)
	syncAs(t, ts.addr, "pilot-1", "p1", b2, syncproto.OutcomeFailed)
	syncAs(t, ts.addr, "pilot-2", "p2", b2, syncproto.OutcomeFailed) // 2 of 2 reports failed: halted
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := smtp.Wait(ctx, 1)
	if err != nil {
		t.Fatalf("no mail of the halt: %v\n%s", err, ts.logs)
	}
	if m := msgs[0]; !strings.Contains(m.Subject, "rollout of release 3 for linux halted") || !strings.Contains(string(m.Data), "HaltPercent") {
		t.Errorf("mail %q:\n%s", m.Subject, m.Data)
	}
	if !strings.Contains(ts.logs.String(), "level=ERROR msg=\"rollout of release 3 (build "+b3+") halted") {
		t.Errorf("the halt is not logged as an error:\n%s", ts.logs)
	}
	if got := syncAs(t, ts.addr, "pilot-3", "p3", b2, syncproto.OutcomeUpToDate); got != b2 {
		t.Errorf("a pilot workstation without the halted release got %s, want %s", got, b2)
	}
	if got := syncAs(t, ts.addr, "desk-1", "d1", b2, syncproto.OutcomeUpToDate); got != b2 {
		t.Errorf("desk-1 got %s during the halt, want %s", got, b2)
	}

	// The administrator promotes it through the running server (which
	// holds the state folder's lock, as RunServer takes it).
	lock, err := lockState(state)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	a, err := RolloutCommand(context.Background(), cfg, state, "linux", RolloutRequest{Op: "status"})
	if err != nil || a.Error != "" || !strings.Contains(a.Status, "halted") {
		t.Fatalf("rollout status during the halt: %+v, %v", a, err)
	}
	a, err = RolloutCommand(context.Background(), cfg, state, "linux", RolloutRequest{Op: "promote"})
	if err != nil || a.Error != "" {
		t.Fatalf("rollout promote: %+v, %v", a, err)
	}
	if !strings.Contains(ts.logs.String(), "rollout request") {
		t.Errorf("the running server did not take the request:\n%s", ts.logs)
	}
	if got := syncAs(t, ts.addr, "desk-1", "d1", b2, syncproto.OutcomeUpdated); got != b3 {
		t.Errorf("desk-1 got %s after the promotion, want %s", got, b3)
	}
	a, err = RolloutCommand(context.Background(), cfg, state, "linux", RolloutRequest{Op: "resume"})
	if err != nil || a.Error == "" {
		t.Errorf("resume of a rollout not halted: %+v, %v; want the rollout's error", a, err)
	}
	if _, err := RolloutCommand(context.Background(), cfg, state, "windows", RolloutRequest{Op: "status"}); err == nil || !strings.Contains(err.Error(), "PathWindows") {
		t.Errorf("rollout of an OS not served: %v", err)
	}
}

// TestRolloutCountsOnlyFetches: reports from sessions that fetched
// nothing, or that name another build than the one served, neither
// promote nor halt a rollout (any client can say it is a pilot
// workstation and claim an outcome).
func TestRolloutCountsOnlyFetches(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"keep": "folder"}, oldTime)
	cfg, _ := loadServerConfig(t, "Enable=1", "PathLinux="+dir, "Build="+srvBuild,
		"[ROLLOUT]", "Pilot=pilot-*", "Delay=0", "MinSuccesses=2", "HaltPercent=40", "MinReports=2")
	state := t.TempDir()
	const b1, b2 = "7.00.240601A", "7.00.240701A"
	publishTree(t, cfg, state, b1, map[string]string{"app": "one"}, nil)
	ts := startServerIn(t, cfg, state, nil, nil)
	publishTree(t, cfg, state, b2, map[string]string{"app": "two"}, nil)
	waitServed(t, ts, b2)
	for i, outcome := range []syncproto.Outcome{syncproto.OutcomeUpdated, syncproto.OutcomeUpdated, syncproto.OutcomeFailed, syncproto.OutcomeFailed, syncproto.OutcomeUpdated} {
		c := mustDial(t, ts.addr)
		if err := c.send(syncproto.Hello{ClientBuild: b1, OS: "linux", ClientID: fmt.Sprintf("liar%d", i), Host: "pilot-x"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.r.Expect(syncproto.MsgWelcome); err != nil {
			t.Fatal(err)
		}
		if err := c.send(syncproto.GetManifest{}); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := c.r.Read()
			if err != nil {
				t.Fatal(err)
			}
			if h, ok := m.(syncproto.ManifestHeader); ok {
				for range h.Count {
					c.r.Expect(syncproto.MsgManifestEntry)
				}
				break
			}
		}
		build := b2
		if i == 4 {
			build = "9.99.991231Z" // fetched below, but reports another build
		}
		if i == 4 {
			if err := c.send(syncproto.Request{Indices: []uint32{0}}, syncproto.RequestEnd{}); err != nil {
				t.Fatal(err)
			}
			dec, _ := syncproto.NewChunkDecoder()
			c.receiveFile(dec, 0)
			dec.Close()
		} else if err := c.send(syncproto.RequestEnd{}); err != nil {
			t.Fatal(err)
		}
		if err := c.report(syncproto.Report{Outcome: outcome, Build: build}); err != nil {
			t.Fatal(err)
		}
		c.conn.Close()
	}
	if got := syncAs(t, ts.addr, "desk-1", "d1", b1, syncproto.OutcomeUpToDate); got != b1 {
		t.Errorf("reports without a fetch changed the rollout: desk-1 got %s, want %s", got, b1)
	}
	if got := syncAs(t, ts.addr, "pilot-9", "p9", b1, syncproto.OutcomeUpdated); got != b2 {
		t.Errorf("reports without a fetch halted the rollout: a pilot got %s, want %s", got, b2)
	}
}

// waitServed waits until the server's log says it serves build.
func waitServed(t *testing.T, ts *testServer, build string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(ts.logs.String(), "build="+build) {
		if time.Now().After(deadline) {
			t.Fatalf("the server does not serve %s:\n%s", build, ts.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
