package smartclient_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/smartclient/internal/hostiletest"
	"github.com/erpupdate/smartsync/syncproto"
)

const keptFile = ".smartclient/manifest.cache"

// keepManifest writes, as the client keeps it, the manifest of files.
func keepManifest(t *testing.T, dir string, files []hostiletest.File) {
	t.Helper()
	es := hostiletest.Entries(files)
	h := syncproto.ManifestHeader{Build: "7.00.240101A", Count: uint32(len(es))}
	b := syncproto.AppendFrame(nil, h)
	for _, e := range es {
		b = syncproto.AppendFrame(b, e)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(keptFile)), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestManifestBySketch: a client keeps the last manifest it received, and
// the next sync gets only the entries that changed; a kept manifest that
// is damaged, cut short or missing costs only the whole manifest.
func TestManifestBySketch(t *testing.T) {
	s := newServer(t, defaultConf)
	for i := range 300 {
		s.write("linux", fmt.Sprintf("assets/tex%03d.png", i), fmt.Sprint("texture ", i))
	}
	dir := t.TempDir()
	mustSync(t, s, dir, yes)
	kept := filepath.Join(dir, filepath.FromSlash(keptFile))
	whole, err := os.ReadFile(kept)
	if err != nil {
		t.Fatalf("no manifest kept after the first sync: %v", err)
	}
	release := 0
	next := func() {
		release++
		s.write("linux", "assets/tex007.png", fmt.Sprint("texture 7, release ", release))
	}
	tests := []struct {
		name string
		// spoil changes the kept manifest before the sync.
		spoil func(t *testing.T)
		// maxManifest bounds the bytes received beyond the file's.
		maxManifest int64
	}{
		{"kept as it was", func(*testing.T) {}, 1 << 10},
		{"kept manifest missing", func(t *testing.T) {
			if err := os.Remove(kept); err != nil {
				t.Fatal(err)
			}
		}, int64(len(whole)) + 1<<10},
		{"kept manifest of garbage", func(t *testing.T) {
			if err := os.WriteFile(kept, []byte("garbage, not frames"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, int64(len(whole)) + 1<<10},
		{"kept entry that does not decode", func(t *testing.T) {
			// Its frame is whole, its path is not a path: it is named
			// by its sketch all the same, which no entry of the
			// server's has, so it comes whole, and nothing else does.
			b, err := os.ReadFile(kept)
			if err != nil {
				t.Fatal(err)
			}
			at := bytes.Index(b, []byte("assets/tex100.png"))
			if at < 0 {
				t.Fatal("assets/tex100.png is not in the kept manifest")
			}
			b[at+len("assets/tex100")] = 0
			if err := os.WriteFile(kept, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}, 1 << 10},
		{"kept manifest cut in half", func(t *testing.T) {
			b, err := os.ReadFile(kept)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(kept, b[:len(b)/2], 0o644); err != nil {
				t.Fatal(err)
			}
		}, int64(len(whole))/2 + 2<<10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			next()
			tc.spoil(t)
			res := mustSync(t, s, dir, nil)
			if res.Fetched != 1 {
				t.Errorf("fetched %d files, want 1", res.Fetched)
			}
			if m := res.Received - res.WireBytes; m > tc.maxManifest {
				t.Errorf("%d bytes received beyond the file's; want at most %d (a whole manifest is %d)", m, tc.maxManifest, len(whole))
			}
			sameTree(t, tree(t, dir), tree(t, s.folders["linux"]), "after the sync")
			// The manifest received is kept whole for the next sync.
			b, err := os.ReadFile(kept)
			if err != nil || len(b) < len(whole)-100 || len(b) > len(whole)+100 {
				t.Errorf("kept manifest after the sync: %d bytes, %v; want about %d", len(b), err, len(whole))
			}
		})
	}
}

// sketchLies are lies about a manifest sent by difference, told to a
// client that keeps the old release's manifest.
func sketchLies() []hostiletest.Lie {
	whole := func(w *syncproto.Writer, es []syncproto.ManifestEntry) {
		for _, e := range es {
			w.Write(e)
		}
	}
	digest := func(h syncproto.ManifestHeader, es []syncproto.ManifestEntry) [32]byte {
		d := syncproto.NewDigester(h)
		for _, e := range es {
			d.Add(e)
		}
		return d.Sum()
	}
	return []hostiletest.Lie{
		{Name: "a run that goes back", Want: smartclient.ErrBadManifest, WantMsg: []string{"a run of 1 kept entries from 0"},
			BySketch: func(w *syncproto.Writer, h syncproto.ManifestHeader, es []syncproto.ManifestEntry, _ []uint64) {
				w.Write(syncproto.ManifestSame{From: 1, Count: 1})
				w.Write(syncproto.ManifestSame{From: 0, Count: 1})
				whole(w, es[2:])
				w.Write(syncproto.ManifestEnd{Digest: digest(h, es)})
			}},
		{Name: "a run past the sketch", Want: smartclient.ErrBadManifest, WantMsg: []string{"a run of 2 kept entries from 3, with 4 named"},
			BySketch: func(w *syncproto.Writer, h syncproto.ManifestHeader, es []syncproto.ManifestEntry, sketch []uint64) {
				w.Write(syncproto.ManifestSame{From: uint32(len(sketch)) - 1, Count: 2})
			}},
		{Name: "a run longer than the manifest", Want: smartclient.ErrBadManifest, WantMsg: []string{"a run of 5 kept entries at entry 0 of 4"},
			BySketch: func(w *syncproto.Writer, h syncproto.ManifestHeader, es []syncproto.ManifestEntry, _ []uint64) {
				w.Write(syncproto.ManifestSame{From: 0, Count: uint32(len(es)) + 1})
			}},
		{Name: "a digest that is not the manifest's", Want: smartclient.ErrBadManifest, DropsKept: true,
			WantMsg: []string{"the manifest rebuilt from the kept one has digest", "the kept one is dropped"},
			BySketch: func(w *syncproto.Writer, h syncproto.ManifestHeader, es []syncproto.ManifestEntry, _ []uint64) {
				whole(w, es)
				w.Write(syncproto.ManifestEnd{Digest: [32]byte{1}})
			}},
		{Name: "no digest after the entries", Want: syncproto.ErrUnexpected, WantMsg: []string{"reading the manifest's digest"},
			BySketch: func(w *syncproto.Writer, h syncproto.ManifestHeader, es []syncproto.ManifestEntry, _ []uint64) {
				whole(w, es)
				w.Write(syncproto.FileStart{Index: 0, Size: 1})
			}},
	}
}

// TestHostileSketchLies: a server that sends a manifest by difference
// wrongly costs the update, with the reason, and nothing else; a kept
// manifest that gave a wrong one is dropped.
func TestHostileSketchLies(t *testing.T) {
	sc := classic
	sc.kept = true
	for _, l := range sketchLies() {
		t.Run(l.Name, func(t *testing.T) {
			_, dir := hostileRunIn(t, l, sc)
			_, err := os.Stat(filepath.Join(dir, filepath.FromSlash(keptFile)))
			if l.DropsKept != errors.Is(err, os.ErrNotExist) {
				t.Errorf("kept manifest after the lie: %v; want it dropped: %v", err, l.DropsKept)
			}
		})
	}
	t.Run("a run to a client that sent no sketch", func(t *testing.T) {
		hostileRunIn(t, hostiletest.Lie{Want: syncproto.ErrUnexpected, WantMsg: []string{"a run of kept entries, but the client sent no sketch"},
			BySketch: func(w *syncproto.Writer, h syncproto.ManifestHeader, es []syncproto.ManifestEntry, sketch []uint64) {
				w.Write(syncproto.ManifestSame{From: 0, Count: 1})
			}}, classic)
	})
	t.Run("honest runs", func(t *testing.T) {
		// The entries the install keeps as runs, the others whole: the
		// update installs.
		saw, dir := hostileRunIn(t, hostiletest.Lie{BySketch: func(w *syncproto.Writer, h syncproto.ManifestHeader, es []syncproto.ManifestEntry, sketch []uint64) {
			at := map[uint64]uint32{}
			for i, v := range sketch {
				at[v] = uint32(i)
			}
			for _, e := range es {
				v, _ := syncproto.EntrySketch(e, nil)
				if i, ok := at[v]; ok {
					w.Write(syncproto.ManifestSame{From: i, Count: 1})
				} else {
					w.Write(e)
				}
			}
			d := syncproto.NewDigester(h)
			for _, e := range es {
				d.Add(e)
			}
			w.Write(syncproto.ManifestEnd{Digest: d.Sum()})
		}}, sc)
		if saw.Report == nil || saw.Report.Outcome != syncproto.OutcomeUpdated {
			t.Fatalf("report %+v; want an update", saw.Report)
		}
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(keptFile))); err != nil {
			t.Errorf("the manifest received is not kept: %v", err)
		}
	})
}
