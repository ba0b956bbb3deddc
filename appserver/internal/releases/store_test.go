package releases

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zeebo/blake3"
)

// files makes entries of contents, and an Opener reading them.
func files(contents map[string]string) ([]Entry, Opener) {
	var es []Entry
	for p, c := range contents {
		es = append(es, Entry{Path: p, Size: int64(len(c)), Mode: 0o644, Hash: blake3.Sum256([]byte(c))})
	}
	slices.SortFunc(es, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	return es, func(e Entry) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(contents[e.Path])), nil
	}
}

func publish(t *testing.T, s *Store, n uint64, contents map[string]string) *Record {
	t.Helper()
	es, open := files(contents)
	if _, err := s.Add(context.Background(), es, open); err != nil {
		t.Fatal(err)
	}
	r := &Record{OS: "linux", Number: n, Build: "1.0", Published: time.Unix(0, 0).UTC(), Files: es}
	if err := s.Commit(r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestAddRefusesAChangedFile: a file whose content is not what was
// hashed is refused, naming it, and leaves no object and no staging.
func TestAddRefusesAChangedFile(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	es, _ := files(map[string]string{"a": "indexed"})
	_, err = s.Add(context.Background(), es, func(Entry) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader("changed")), nil
	})
	if err == nil || !strings.Contains(err.Error(), "a changed while it was being published") {
		t.Fatalf("Add: %v", err)
	}
	// Of the same size, it is its content that changed.
	if !strings.Contains(err.Error(), "its content changed") {
		t.Errorf("Add of a file of the same size, other content: %v, want it to say its content changed", err)
	}
	ents, _ := os.ReadDir(s.ObjectsDir())
	if len(ents) != 0 {
		t.Errorf("the refused publish left %v in the store", ents)
	}
}

// TestCrashedPublishLeavesTheServedRelease: whatever a publish killed
// part way leaves (staging folders, objects no record names, a record
// the pointer does not name), the served release stays whole, and the
// next publish's pruning removes the leftovers.
func TestCrashedPublishLeavesTheServedRelease(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	first := publish(t, s, 1, map[string]string{"a": "one", "b": "bee"})
	// A publish killed after copying: a staging folder, and objects in
	// place that no record names.
	staging := filepath.Join(s.ObjectsDir(), "staging-123")
	if err := os.MkdirAll(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(staging, "half"), []byte("x"), 0o644)
	es, open := files(map[string]string{"c": "orphan"})
	if _, err := s.Add(context.Background(), es, open); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Current("linux"); n != 1 || err != nil {
		t.Fatalf("served %d, %v", n, err)
	}
	r, err := s.Record("linux", 1)
	if err != nil || !slices.Equal(r.Files, first.Files) {
		t.Fatalf("record 1: %+v, %v", r, err)
	}
	for _, e := range first.Files {
		b, err := os.ReadFile(filepath.Join(s.ObjectsDir(), filepath.FromSlash(ObjectName(e.Hash))))
		if err != nil || blake3.Sum256(b) != e.Hash {
			t.Errorf("object of %s: %v", e.Path, err)
		}
	}
	p, err := s.Prune("linux", 5)
	if err != nil {
		t.Fatal(err)
	}
	if p.Objects != 1 || len(p.Releases) != 0 {
		t.Errorf("Prune: %+v, want the orphan object removed", p)
	}
	if _, err := os.Stat(staging); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the staging folder is still there: %v", err)
	}
}

// TestRecordErrorsNameTheFile: a damaged record or pointer is an error
// naming its file, and pruning stops rather than remove what a release
// may need.
func TestRecordErrorsNameTheFile(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	publish(t, s, 1, map[string]string{"a": "one"})
	publish(t, s, 2, map[string]string{"a": "two"})
	path := s.recordFile("linux", 1)
	if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Record("linux", 1); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Record of a damaged file: %v", err)
	}
	if _, err := s.Prune("linux", 5); err == nil || !strings.Contains(err.Error(), "not pruning") {
		t.Errorf("Prune with a damaged record: %v", err)
	}
	if err := os.WriteFile(s.PointerFile("linux"), []byte("[]"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Current("linux"); err == nil || !strings.Contains(err.Error(), s.PointerFile("linux")) {
		t.Errorf("Current of a damaged pointer: %v", err)
	}
	if _, err := s.Record("linux", 7); !errors.Is(err, ErrNoRelease) {
		t.Errorf("Record of a missing release: %v", err)
	}
}

// TestLockWaits: a second publish waits for the first, and gives up
// with its context.
func TestLockWaits(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := s.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := s.Lock(ctx); err == nil || !strings.Contains(err.Error(), "another publish") {
		t.Errorf("a second Lock while held: %v", err)
	}
	unlock()
	u2, err := s.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	u2()
}

// TestPruneGoesOnPastAFailedRemove: an object that cannot be removed (on
// Windows, one the server has open; here a folder that is not empty in
// its place) is an error naming it, and Prune still removes the other
// objects no release uses.
func TestPruneGoesOnPastAFailedRemove(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	publish(t, s, 1, map[string]string{"a": "one"})
	es, open := files(map[string]string{"c": "orphan", "d": "another orphan"})
	if _, err := s.Add(context.Background(), es, open); err != nil {
		t.Fatal(err)
	}
	var stuck Hash // sorts before every object
	held := filepath.Join(s.ObjectsDir(), filepath.FromSlash(ObjectName(stuck)))
	if err := os.MkdirAll(filepath.Join(held, "open"), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := s.Prune("linux", 5)
	if err == nil || !strings.Contains(err.Error(), "removing an object no release uses") || !strings.Contains(err.Error(), stuck.String()) {
		t.Errorf("Prune with an object that cannot be removed: %v", err)
	}
	if p.Objects != 2 {
		t.Errorf("Prune removed %d objects, want the 2 orphans past the stuck one", p.Objects)
	}
	for _, e := range es {
		if _, err := os.Stat(filepath.Join(s.ObjectsDir(), filepath.FromSlash(ObjectName(e.Hash)))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("orphan %s still there: %v", e.Path, err)
		}
	}
}

// TestOSesAreOnlyOSes: the store's other folders (objects, the patch
// and hash caches) are never listed as OSes.
func TestOSesAreOnlyOSes(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	publish(t, s, 1, map[string]string{"a": "one"})
	for _, d := range []string{"patches", "hashcache", "windows"} {
		if err := os.MkdirAll(filepath.Join(s.Dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.OSes()
	if err != nil || !slices.Equal(got, []string{"linux", "windows"}) {
		t.Errorf("OSes() = %v, %v; want [linux windows]", got, err)
	}
}
