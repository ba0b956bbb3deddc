package index

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// observedScans records what an Observer is told.
type observedScans struct {
	mu   sync.Mutex
	seen []scanSeen
}

type scanSeen struct {
	os           string
	hits, misses int
}

func (s *observedScans) Scanned(osName string, took time.Duration, hits, misses int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if took <= 0 {
		hits = -1 // a scan that took no time: a fault the test shows
	}
	s.seen = append(s.seen, scanSeen{osName, hits, misses})
}

func (s *observedScans) all() []scanSeen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]scanSeen(nil), s.seen...)
}

// TestIndexObserverHitsAndMisses: the observer is told of the scan Open
// makes, with every file a miss on a cold cache and a hit on a warm one,
// and of a later scan that rehashes only the changed file.
func TestIndexObserverHitsAndMisses(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	files := map[string]string{"a.txt": "alpha", "sub/b.txt": "beta", "sub/c.txt": "gamma"}
	writeTree(t, dir, files, oldTime)
	open := func(obs Observer) *Index {
		t.Helper()
		ix, err := Open(context.Background(), discardLogger(), "linux", dir, state, Release{Build: "7.00.240501A"}, Observe(obs))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ix.Close() })
		return ix
	}
	cold := &observedScans{}
	open(cold)
	if got := cold.all(); len(got) != 1 || got[0] != (scanSeen{"linux", 0, 3}) {
		t.Fatalf("cold cache: observer told %+v; want one scan of linux with 0 hits, 3 misses", got)
	}
	warm := &observedScans{}
	ix := open(warm)
	if got := warm.all(); len(got) != 1 || got[0] != (scanSeen{"linux", 3, 0}) {
		t.Fatalf("warm cache: observer told %+v; want one scan with 3 hits, 0 misses", got)
	}
	change(t, ix, func() {
		writeTree(t, dir, map[string]string{"sub/b.txt": "beta, longer"}, oldTime.Add(time.Hour))
	})
	current(t, ix)
	// The scan of the change hashes the changed file alone; a watch may
	// bring further scans (late events under Wine), all from the cache.
	if got := warm.all(); len(got) < 2 || !slices.Contains(got[1:], scanSeen{"linux", 2, 1}) || slices.ContainsFunc(got[1:], func(s scanSeen) bool { return s.misses > 1 }) {
		t.Fatalf("after a change: observer told %+v; want a scan with 2 hits, 1 miss, and none hashing more", got)
	}
	// Without Observe nobody is told, and nothing breaks.
	plain, err := Open(context.Background(), discardLogger(), "linux", dir, filepath.Join(state, "other"), Release{})
	if err != nil {
		t.Fatal(err)
	}
	plain.Close()
}
