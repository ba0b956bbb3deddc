package appserver

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/rollout"
)

func publishQuiet(t *testing.T, cfg *Config, state, build string, files map[string]string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "release")
	writeTree(t, src, files, oldTime)
	if _, err := Publish(context.Background(), discardLogger(), cfg, state, PublishOptions{OS: "linux", Build: build, Source: src, Now: time.Now()}); err != nil {
		t.Fatalf("Publish %s: %v", build, err)
	}
}

// TestPublishWhileStoppedStillPilots: a release published while the
// server is stopped (a maintenance window,
// a crash) must still go to the pilot ring first once the server starts.
func TestPublishWhileStoppedStillPilots(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"keep": "folder"}, oldTime)
	cfg, _ := loadServerConfig(t, "Enable=1", "PathLinux="+dir, "Build="+srvBuild,
		"[ROLLOUT]", "Pilot=pilot-*", "Delay=24h", "MinSuccesses=5")
	state := t.TempDir()
	publishQuiet(t, cfg, state, "7.00.240601A", map[string]string{"app": "one"})
	ts := startServerIn(t, cfg, state, nil, nil)
	waitRelease(t, ts, 1)
	if err := ts.stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	ts.srv.Close()

	publishQuiet(t, cfg, state, "7.00.240701A", map[string]string{"app": "two"})
	ts2 := startServerIn(t, cfg, state, nil, nil)
	waitRelease(t, ts2, 2)
	st := ts2.srv.rollouts.of("linux").Status(time.Now())
	if st.Release != 2 || st.Phase != rollout.PhasePilot || st.Previous != 1 {
		t.Errorf("release 2, published while the server was stopped: phase %s, previous %d (%s); want the pilot phase with release 1 as fallback", st.Phase, st.Previous, st.Reason)
	}
}

func waitRelease(t *testing.T, ts *testServer, n uint64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st := ts.srv.rollouts.of("linux").Status(time.Now()); st.Release == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("release %d never began its rollout:\n%s", n, ts.logs)
		}
	}
}

// TestResignGoesToEveryone: renewing a signature (publish again with
// --key, same files) goes to everyone at once: staged, the pilots would
// only ever say "up to date" (nothing to fetch, no report), MinSuccesses
// would never promote it, and the old signature would expire on everyone
// else.
func TestResignGoesToEveryone(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"keep": "folder"}, oldTime)
	cfg, _ := loadServerConfig(t, "Enable=1", "PathLinux="+dir, "Build="+srvBuild,
		"[ROLLOUT]", "Pilot=pilot-*", "Delay=0", "MinSuccesses=1")
	state := t.TempDir()
	key := publisherKey(9)
	pub := func() {
		src := filepath.Join(t.TempDir(), "release")
		writeTree(t, src, map[string]string{"app": "one"}, oldTime)
		if _, err := Publish(context.Background(), discardLogger(), cfg, state, PublishOptions{OS: "linux", Build: "7.00.240601A", Source: src, Key: key, Now: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	pub()
	ts := startServerIn(t, cfg, state, nil, nil)
	waitRelease(t, ts, 1)
	pub() // renew the signature
	waitRelease(t, ts, 2)
	st := ts.srv.rollouts.of("linux").Status(time.Now())
	if st.Phase != rollout.PhaseComplete {
		t.Errorf("a re-signed release (same files) is rolled out in phase %s (%s): everyone outside the pilot ring keeps release 1's signature until a pilot reports an update that never comes", st.Phase, st.Reason)
	}
}
