package appserver

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/rollout"
	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/erpupdate/smartsync/syncproto"
)

// TestConcurrentRolloutCommands: two administrators' commands at once
// each get their own answer from the running server (a single request
// file per OS made the second wait 15 s and fail), and no request or
// answer file is left.
func TestConcurrentRolloutCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"keep": "folder"}, oldTime)
	cfg, _ := loadServerConfig(t, "Enable=1", "PathLinux="+dir, "Build="+srvBuild, "[ROLLOUT]", "Pilot=pilot-*")
	state := t.TempDir()
	publishTree(t, cfg, state, "7.00.240601A", map[string]string{"app": "one"}, nil)
	ts := startServerIn(t, cfg, state, nil, nil)
	lock, err := lockState(state)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	syncAs(t, ts.addr, "desk-1", "d1", srvBuild, syncproto.OutcomeUpdated)
	// Release 2 goes to the pilot ring first.
	publishTree(t, cfg, state, "7.00.240701A", map[string]string{"app": "two"}, nil)
	syncAs(t, ts.addr, "desk-1", "d1", "7.00.240601A", syncproto.OutcomeUpToDate)

	reqs := []RolloutRequest{{Op: "halt", Reason: "first admin"}, {Op: "status"}, {Op: "status"}}
	answers := make([]RolloutAnswer, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	start := time.Now()
	for i, r := range reqs {
		wg.Go(func() { answers[i], errs[i] = RolloutCommand(context.Background(), cfg, state, "linux", r) })
	}
	wg.Wait()
	for i := range reqs {
		if errs[i] != nil || answers[i].Error != "" || answers[i].Status == "" {
			t.Errorf("command %d (%s): %+v, %v", i, reqs[i].Op, answers[i], errs[i])
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the commands took %v: one waited for the other's timeout", d)
	}
	if !strings.Contains(answers[0].Status, "halted") {
		t.Errorf("the halt's answer: %s", answers[0].Status)
	}
	if n := strings.Count(ts.logs.String(), "rollout request"); n != len(reqs) {
		t.Errorf("the server took %d requests, want %d:\n%s", n, len(reqs), ts.logs)
	}
	ents, _ := os.ReadDir(rolloutDir(state))
	for _, e := range ents {
		if strings.Contains(e.Name(), ".request") || strings.Contains(e.Name(), ".answer") {
			t.Errorf("%s left in the rollout folder", e.Name())
		}
	}
}

// TestRolloutRequestsInOrder: the requests waiting are taken in the
// order they were made (the order of their names), a damaged one is
// removed, and answers older than a minute are removed.
func TestRolloutRequestsInOrder(t *testing.T) {
	state := t.TempDir()
	var logs strings.Builder // takeRequests logs from this goroutine only
	log := slog.New(slog.NewTextHandler(&logs, nil))
	rs := newRollouts(state, log, rollout.Policy{Pilot: []string{"pilot-*"}}, nil)
	dir := rolloutDir(state)
	if err := rs.of("linux").Begin(time.Now(), 2, "B2", 1); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// Made in this order: halt, then resume. Taken in the other order,
	// the resume fails (not halted) and the rollout ends halted.
	halt := RolloutRequest{ID: newRequestID(now), Op: "halt"}
	resume := RolloutRequest{ID: newRequestID(now.Add(time.Millisecond)), Op: "resume"}
	for _, r := range []RolloutRequest{resume, halt} {
		mustOK(t, atomicfile.WriteJSON(rolloutRequestFile(dir, "linux", r.ID), r, 0o644))
	}
	damaged := rolloutRequestFile(dir, "linux", "x")
	writeFile(t, damaged, "{not json")
	mismatched := RolloutRequest{ID: "other", Op: "promote"}
	mustOK(t, atomicfile.WriteJSON(rolloutRequestFile(dir, "linux", "mine"), mismatched, 0o644))
	stale, fresh := answerFile(dir, "linux", "old"), answerFile(dir, "linux", "new")
	writeFile(t, stale, "{}")
	writeFile(t, fresh, "{}")
	if err := os.Chtimes(stale, now.Add(-2*time.Minute), now.Add(-2*time.Minute)); err != nil {
		t.Fatal(err)
	}

	rs.takeRequests([]string{"linux"}, now)
	var a RolloutAnswer
	mustOK(t, atomicfile.ReadJSON(answerFile(dir, "linux", resume.ID), &a))
	if a.Error != "" || strings.Contains(a.Status, "halted") {
		t.Errorf("the resume, made after the halt, was not taken after it: %+v", a)
	}
	if _, err := os.Stat(answerFile(dir, "linux", "other")); err == nil {
		t.Error("a request whose id is not its name's was answered")
	}
	for _, f := range []string{damaged, rolloutRequestFile(dir, "linux", "mine"), stale} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s is still there", filepath.Base(f))
		}
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a fresh answer was removed: %v", err)
	}
	if strings.Count(logs.String(), "ignoring a damaged rollout request") != 2 {
		t.Errorf("the damaged requests are not logged:\n%s", logs.String())
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
