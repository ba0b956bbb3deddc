package appserver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/releases"
	"github.com/erpupdate/smartsync/internal/releasemeta"
)

// TestPublishResignsTheServedRelease: the release served, published
// again with the same build and files, is nothing to publish without a
// key; with one it is a new release (the next number, the same files,
// nothing copied) with a new signature, and a rollback's renewal stays
// a rollback.
func TestPublishResignsTheServedRelease(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"keep": "folder"}, oldTime)
	cfg := linuxConfig(t, dir)
	state := t.TempDir()
	src := filepath.Join(t.TempDir(), "release")
	writeTree(t, src, map[string]string{"bin/app": "app v1"}, oldTime)
	key := publisherKey(3)
	t1 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	pub := func(o PublishOptions) (*PublishResult, error) {
		o.OS, o.Source = "linux", src
		return Publish(context.Background(), discardLogger(), cfg, state, o)
	}
	first, err := pub(PublishOptions{Build: pubBuild3, Key: key, Expires: 24 * time.Hour, Now: t1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub(PublishOptions{Build: pubBuild3, Now: t1.Add(time.Hour)}); !errors.Is(err, ErrNothingToPublish) {
		t.Fatalf("the same release without --key: %v, want nothing to publish", err)
	}
	res, err := pub(PublishOptions{Build: pubBuild3, Key: key, Expires: 24 * time.Hour, Now: t1.Add(time.Hour)})
	if err != nil {
		t.Fatalf("the same release with --key: %v", err)
	}
	if !res.Resigned || res.Record.Number != 2 || res.Previous != 1 || res.Added.Objects != 0 {
		t.Errorf("re-signed: %+v, want release 2, re-signed, replacing 1, nothing added", res)
	}
	if !slices.Equal(res.Record.Files, first.Record.Files) {
		t.Errorf("re-signed files differ: %v, want %v", res.Record.Files, first.Record.Files)
	}
	st := res.Statement
	if st == nil || st.Number != 2 || !st.Expires.Equal(t1.Add(25*time.Hour)) || st.Digest != first.Statement.Digest || st.Rollback {
		t.Errorf("new statement %+v, want release 2 expiring a day after the renewal, same digest", st)
	}
	if n, err := releases.At(state).Current("linux"); n != 2 || err != nil {
		t.Errorf("served %d, %v; want the renewal 2", n, err)
	}

	// A rollback's renewal is a rollback still.
	old := filepath.Join(t.TempDir(), "old")
	writeTree(t, old, map[string]string{"bin/app": "app v0"}, oldTime)
	if _, err := Publish(context.Background(), discardLogger(), cfg, state, PublishOptions{OS: "linux", Source: old, Build: pubBuild2, Key: key, Rollback: true, Now: t1.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	res, err = Publish(context.Background(), discardLogger(), cfg, state, PublishOptions{OS: "linux", Source: old, Build: pubBuild2, Key: key, Now: t1.Add(3 * time.Hour)})
	if err != nil || !res.Resigned || res.Statement == nil || !res.Statement.Rollback {
		t.Fatalf("renewing a rollback: %+v, %v; want a re-signed rollback", res, err)
	}
}

// TestRollbackPublishedAfterTheRelease: a --rollback published in the
// same second as the release it undoes (Published has whole seconds) is
// dated a second after it, as the clients require of a rollback.
func TestRollbackPublishedAfterTheRelease(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"keep": "folder"}, oldTime)
	cfg := linuxConfig(t, dir)
	state := t.TempDir()
	now := time.Date(2026, 12, 6, 12, 0, 0, 500e6, time.UTC)
	key := publisherKey(3)
	for i, o := range []PublishOptions{
		{Build: pubBuild3, Now: now},
		{Build: pubBuild2, Rollback: true, Now: now.Add(100 * time.Millisecond)},
		{Build: pubBuild3, Now: now.Add(-time.Hour)}, // the clock set back
	} {
		src := filepath.Join(t.TempDir(), "release")
		writeTree(t, src, map[string]string{"bin/app": o.Build + string(rune('a'+i))}, oldTime)
		o.OS, o.Source, o.Key = "linux", src, key
		res, err := Publish(context.Background(), discardLogger(), cfg, state, o)
		if err != nil {
			t.Fatal(err)
		}
		want := now.Truncate(time.Second).Add(time.Duration(i) * time.Second)
		f, err := releasemeta.Decode(res.Record.Signed)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Record.Published.Equal(want) || !f.Statement.Published.Equal(want) {
			t.Errorf("release %d published %v (signed %v), want %v", res.Record.Number, res.Record.Published, f.Statement.Published, want)
		}
	}
}

// TestPublishWithoutBuild: without a build the release is [UPDATE]
// Build's.
func TestPublishWithoutBuild(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"keep": "folder"}, oldTime)
	cfg := linuxConfig(t, dir)
	res := publishTree(t, cfg, t.TempDir(), "", map[string]string{"app": "x"}, nil)
	if !res.BuildFromConfig || res.Record.Build != cfg.Build.String() {
		t.Errorf("published build %s (from the configuration: %v), want [UPDATE] Build %s", res.Record.Build, res.BuildFromConfig, cfg.Build)
	}
}

// TestPublishDoesNotPruneWithoutTheRolloutState: a rollout state the
// publisher cannot read leaves the history unpruned, says so, and stays
// where it is (the running server's to move aside).
func TestPublishDoesNotPruneWithoutTheRolloutState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"keep": "folder"}, oldTime)
	cfg, _ := loadServerConfig(t, "Enable=1", "PathLinux="+dir, "Build="+srvBuild, "KeepReleases=1")
	state := t.TempDir()
	builds := []string{"7.00.240601A", "7.00.240602A", "7.00.240603A"}
	publishTree(t, cfg, state, builds[0], map[string]string{"own": builds[0]}, nil)
	publishTree(t, cfg, state, builds[1], map[string]string{"own": builds[1]}, nil)
	file := filepath.Join(rolloutDir(state), "linux.json")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	const torn = `{"format": 1, "phase": "pil`
	if err := os.WriteFile(file, []byte(torn), 0o644); err != nil {
		t.Fatal(err)
	}
	res := publishTree(t, cfg, state, builds[2], map[string]string{"own": builds[2]}, nil)
	if res.NotPruned == nil || !strings.Contains(res.NotPruned.Error(), "not pruned") || !strings.Contains(res.NotPruned.Error(), file) {
		t.Errorf("NotPruned = %v, want it to say the history was not pruned, naming %s", res.NotPruned, file)
	}
	if ns, _ := releases.At(state).Numbers("linux"); !slices.Equal(ns, []uint64{1, 2, 3}) || len(res.Pruned.Releases) != 0 {
		t.Errorf("kept %v, pruned %v; want all kept", ns, res.Pruned.Releases)
	}
	if got, err := os.ReadFile(file); err != nil || string(got) != torn {
		t.Errorf("the publisher changed the rollout state: %q, %v", got, err)
	}
	if _, err := os.Stat(file + ".damaged"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the publisher moved the rollout state aside: %v", err)
	}
}
