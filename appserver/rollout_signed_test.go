package appserver

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/releasemeta"
	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/syncproto"
)

// postStep is the post-install step of the releases of
// TestSignedRolloutHaltServesFallback, a program the client runs where
// the test runs; postScript is its text, exiting with code.
var postStep = map[bool]string{false: "tools/post.sh", true: "tools/post.cmd"}[runtime.GOOS == "windows"]

func postScript(code string) string {
	if runtime.GOOS == "windows" {
		return "@exit /b " + code + "\r\n"
	}
	return "#!/bin/sh\nexit " + code + "\n"
}

// publishWithStep publishes files and the post-install step exiting with
// code as the linux release of build, signed by key.
func publishWithStep(t *testing.T, cfg *Config, state, build string, files map[string]string, code string, key ed25519.PrivateKey) *PublishResult {
	t.Helper()
	src := filepath.Join(t.TempDir(), "release")
	files[postStep] = postScript(code)
	writeTree(t, src, files, oldTime)
	if err := os.Chmod(filepath.Join(src, filepath.FromSlash(postStep)), 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := Publish(context.Background(), discardLogger(), cfg, state, PublishOptions{OS: "linux", Build: build, Source: src, Key: key, Now: time.Now()})
	if err != nil {
		t.Fatalf("Publish %s: %v", build, err)
	}
	return res
}

// TestSignedRolloutHaltServesFallback: with signed releases and real
// clients, a pilot workstation that verified release 2 and failed to
// install it (its post-install step fails) is served release 1 again when
// the rollout halts, and takes it: release 1 is signed without Rollback,
// and a release verified but not installed does not raise the number a
// release must not go below (README, "When a rollout halts").
func TestSignedRolloutHaltServesFallback(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	// The folder holds the step too: the server checks that it is in
	// its update folders.
	writeTree(t, dir, map[string]string{"keep": "folder", postStep: postScript("0")}, oldTime)
	cfg, _ := loadServerConfig(t, "Enable=1", "PathLinux="+dir, "Build="+srvBuild,
		"PostInstall="+postStep, "PostInstallTimeout=30",
		"[ROLLOUT]", "Pilot=pilot-*", "Delay=0", "MinSuccesses=5", "HaltPercent=50", "MinReports=1")
	state := t.TempDir()
	key := publisherKey(9)
	keyText := releasemeta.PublicKey(key.Public().(ed25519.PublicKey)).String()
	const b1, b2 = "7.00.240601A", "7.00.240701A"

	if r := publishWithStep(t, cfg, state, b1, map[string]string{"app": "one"}, "0", key); r.Statement == nil || r.Statement.Number != 1 {
		t.Fatalf("release 1 published as %+v", r.Statement)
	}
	ts := startServerIn(t, cfg, state, nil, nil)
	client := func(host string) smartclient.Options {
		return smartclient.Options{Dir: filepath.Join(t.TempDir(), host), Server: ts.addr, OS: "linux", Host: host,
			Yes: true, PublisherKeys: []string{keyText}, Timeout: 5 * time.Second}
	}
	pilot, desk := client("pilot-1"), client("desk-1")
	build := func(o smartclient.Options) (string, *smartclient.PublisherStatus) {
		t.Helper()
		st, err := smartclient.Status(context.Background(), o.Dir, nil)
		if err != nil {
			t.Fatalf("status of %s: %v", o.Host, err)
		}
		return st.Build, st.Publisher
	}
	// Release 1 goes to everyone: there is nothing before it.
	for _, o := range []smartclient.Options{pilot, desk} {
		if _, err := smartclient.Sync(context.Background(), o); err != nil {
			t.Fatalf("%s, release 1: %v\n%s", o.Host, err, ts.logs)
		}
		if b, _ := build(o); b != b1 {
			t.Fatalf("%s holds %q after release 1", o.Host, b)
		}
	}

	// Release 2's post-install step fails: the pilot verifies it, the
	// switch is undone, and its failure halts the rollout.
	if r := publishWithStep(t, cfg, state, b2, map[string]string{"app": "two, broken"}, "1", key); r.Statement == nil || r.Statement.Number != 2 {
		t.Fatalf("release 2 published as %+v", r.Statement)
	}
	if _, err := smartclient.Sync(context.Background(), pilot); err == nil {
		t.Fatal("the pilot installed release 2, whose post-install step fails")
	} else if !strings.Contains(err.Error(), postStep) {
		t.Fatalf("the pilot's sync of release 2 failed, but not for its post-install step: %v", err)
	}
	if b, p := build(pilot); b != b1 || p == nil || p.Installed == nil || p.Installed.Number != 1 {
		t.Fatalf("the pilot holds %q (%+v) after the failed install, want %s, release 1", b, p, b1)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(ts.logs.String(), "rollout of release 2 (build "+b2+") halted"); {
		if time.Now().After(deadline) {
			t.Fatalf("the pilot's failure did not halt the rollout:\n%s", ts.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Halted, release 1 is served to the pilot again, signed number 1
	// without Rollback: the pilot takes it and stays on it.
	for i := range 2 {
		res, err := smartclient.Sync(context.Background(), pilot)
		if err != nil {
			t.Fatalf("the pilot's sync %d after the halt: %v", i+1, err)
		}
		if res.Outcome != syncproto.OutcomeUpToDate && res.Outcome != syncproto.OutcomeUpdated {
			t.Errorf("the pilot's sync %d after the halt: outcome %v", i+1, res.Outcome)
		}
		if b, p := build(pilot); b != b1 || p == nil || p.Installed == nil || p.Installed.Number != 1 || p.Highest != 1 {
			t.Fatalf("after the halt the pilot holds %q (%+v), want %s, release 1", b, p, b1)
		}
	}
	got, err := os.ReadFile(filepath.Join(pilot.Dir, "app"))
	if err != nil || string(got) != "one" {
		t.Errorf("the pilot's app after the halt: %q, %v", got, err)
	}
	// The desk never saw release 2 and stays on release 1.
	if _, err := smartclient.Sync(context.Background(), desk); err != nil {
		t.Fatalf("desk-1 during the halt: %v", err)
	}
	if b, _ := build(desk); b != b1 {
		t.Errorf("desk-1 holds %q during the halt, want %s", b, b1)
	}
}
