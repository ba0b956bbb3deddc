package state

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/erpupdate/smartsync/internal/testtree"
	"github.com/zeebo/blake3"
)

// TestSplitCoversEveryFile checks that the runs the check's workers take
// cover every entry once, in order.
func TestSplitCoversEveryFile(t *testing.T) {
	st := benchState(100)
	enc := st.Encoded()
	for k := 1; k <= 7; k++ {
		runs := enc.split(k)
		if len(runs) != k {
			t.Fatalf("split(%d) made %d runs", k, len(runs))
		}
		next := 0
		for _, run := range runs {
			if run.first != next {
				t.Fatalf("split(%d): a run starts at %d, want %d", k, run.first, next)
			}
			r := run.r
			for range run.n {
				e := r.entry()
				if _, ok := st.Files[string(e.path)]; r.err != nil || !ok {
					t.Fatalf("split(%d): entry %d reads %q, %v", k, next, e.path, r.err)
				}
				next++
			}
		}
		if next != enc.n {
			t.Fatalf("split(%d) covers %d of %d entries", k, next, enc.n)
		}
	}
	// Bytes after the last entry: no runs, so the check fails.
	bad := enc
	bad.b = append(slices.Clip(enc.b), 0)
	if runs := bad.split(2); runs != nil {
		t.Errorf("split of entries followed by a stray byte made %d runs", len(runs))
	}
}

// TestCheckInstallWalksFolders checks files taken in order of path, where
// a folder's files are interleaved with its subfolders' ("a/b.txt" comes
// before "a/b/c.txt", which comes before "a/c.txt"), and the cases where
// a lookup must fail: a folder that became a link out of the install, a
// recorded path that climbs out of it, a link whose target changed.
func TestCheckInstallWalksFolders(t *testing.T) {
	names := []string{"a.txt", "a/b.txt", "a/b/c.txt", "a/b/d/e.txt", "a/b/f.txt", "a/c.txt", "a.b/x", "z/y/w.txt"}
	outside := t.TempDir()
	tests := []struct {
		name string
		// change alters the install (dir) after its files were
		// recorded, and the record (files).
		change   func(t *testing.T, dir string, files map[string]FileState)
		ok       bool
		notFound []string // of names, those not found as recorded
	}{
		{name: "as recorded", ok: true},
		{
			name: "a folder now a link out of the install",
			change: func(t *testing.T, dir string, files map[string]FileState) {
				// The same files, reached through a link.
				mustRename(t, filepath.Join(dir, "a", "b"), filepath.Join(outside, "b"))
				mustSymlink(t, filepath.Join(outside, "b"), filepath.Join(dir, "a", "b"))
			},
			notFound: []string{"a/b/c.txt", "a/b/d/e.txt", "a/b/f.txt"},
		},
		{
			name: "a missing folder",
			change: func(t *testing.T, dir string, files map[string]FileState) {
				if err := os.RemoveAll(filepath.Join(dir, "z")); err != nil {
					t.Fatal(err)
				}
			},
			notFound: []string{"z/y/w.txt"},
		},
		{
			name: "a recorded path that climbs out",
			change: func(t *testing.T, dir string, files map[string]FileState) {
				// ../out/x.txt exists, as recorded, beside the
				// install.
				k := writeRecorded(t, filepath.Dir(dir), "out/x.txt", "x")
				files["../out/x.txt"] = k
				files["a/../../out/x.txt"] = k
			},
		},
		{
			name: "a link as recorded",
			change: func(t *testing.T, dir string, files map[string]FileState) {
				mustSymlink(t, "a.txt", filepath.Join(dir, "l"))
				sum := blake3.Sum256([]byte("a.txt"))
				files["l"] = FileState{Hash: hex.EncodeToString(sum[:])}
			},
			ok: true,
		},
		{
			name: "a link to another target",
			change: func(t *testing.T, dir string, files map[string]FileState) {
				mustSymlink(t, "a/c.txt", filepath.Join(dir, "l"))
				sum := blake3.Sum256([]byte("a.txt"))
				files["l"] = FileState{Hash: hex.EncodeToString(sum[:])}
			},
		},
		{
			name: "a preserved file the user changed",
			change: func(t *testing.T, dir string, files map[string]FileState) {
				if err := os.WriteFile(filepath.Join(dir, "a", "b.txt"), []byte("the user's own"), 0o644); err != nil {
					t.Fatal(err)
				}
				k := files["a/b.txt"]
				k.Preserve = true
				files["a/b.txt"] = k
			},
			ok: true,
			// Present, so as recorded, but not a file the plan may
			// take as current.
			notFound: []string{"a/b.txt"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]FileState{}
			for _, name := range names {
				files[name] = writeRecorded(t, dir, name, name)
			}
			if tc.change != nil {
				tc.change(t, dir, files)
			}
			root, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			check := Check(t.Context(), root, (&State{Files: files}).Encoded())
			if check.OK != tc.ok {
				t.Errorf("ok = %v, want %v", check.OK, tc.ok)
			}
			same := check.Same()
			for _, name := range names {
				want := !slices.Contains(tc.notFound, name)
				if same[name] != want {
					t.Errorf("%s found as recorded: %v, want %v", name, same[name], want)
				}
			}
			for name := range same {
				if !slices.Contains(names, name) {
					t.Errorf("%s is found as recorded, and is not one of the install's files", name)
				}
			}
		})
	}
}

func mustRename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, name string) {
	t.Helper()
	// Wine's CreateSymbolicLinkW reports success and makes nothing.
	testtree.NeedSymlinks(t)
	if err := os.Symlink(target, name); err != nil {
		t.Skipf("no symbolic links here: %v", err)
	}
}
