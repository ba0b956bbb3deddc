package install

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestDirCacheKeepsHandlesInUse: a handle dropped from a full cache while
// another goroutine uses it stays open until that goroutine puts it back.
func TestDirCacheKeepsHandlesInUse(t *testing.T) {
	dir := t.TempDir()
	const folders = maxCachedDirs + 64
	for i := range folders {
		p := filepath.Join(dir, fmt.Sprintf("d%04d", i))
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := openCachedDisk(t, dir)

	held := d.dirs.get("d0000")
	// Fill the cache past its size from several goroutines, as the
	// download, the writers and the backup do. d0000 is not asked for
	// again, so it is the least recently used, the first dropped.
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 1 + w; i < folders; i += 4 {
				if _, err := d.Lstat(fmt.Sprintf("d%04d/f", i)); err != nil {
					t.Errorf("lstat d%04d/f: %v", i, err)
				}
			}
		})
	}
	wg.Wait()
	if d.dirs.has("d0000") {
		t.Fatal("the cache kept its least recently used folder; the test proves nothing")
	}
	if _, err := held.r.Lstat("f"); err != nil {
		t.Fatalf("a handle in use was closed when the cache dropped it: %v", err)
	}
	d.dirs.put(held)
	if _, err := held.r.Lstat("f"); err == nil {
		t.Fatal("a dropped handle stayed open after its last user put it back")
	}
}

// TestDirCacheAbsentFolders: a lookup below a folder found not to exist
// fails at once, from the cache, and succeeds again once the client makes
// a folder, by MkdirAll or by a rename, whatever it looked up in between.
func TestDirCacheAbsentFolders(t *testing.T) {
	dir := t.TempDir()
	d := openCachedDisk(t, dir)
	create := func(name string) {
		t.Helper()
		f, err := d.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	lookups := []struct {
		op string
		do func(name string) error
	}{
		{"Lstat", func(name string) error { _, err := d.Lstat(name); return err }},
		{"Open", func(name string) error {
			f, err := d.Open(name)
			if err == nil {
				f.Close()
			}
			return err
		}},
		{"ReadFile", func(name string) error { _, err := d.ReadFile(name); return err }},
	}
	expect := func(name string, exists bool) {
		t.Helper()
		for _, l := range lookups {
			err := l.do(name)
			if exists && err != nil {
				t.Errorf("%s(%s): %v, want it found", l.op, name, err)
			}
			if !exists && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s(%s): %v, want it not to exist", l.op, name, err)
			}
		}
	}

	expect("a/b/c/f", false)
	// Now from what the cache knows, without a look at the disk: a
	// folder another program makes meanwhile is not seen until the
	// client makes one itself.
	if err := os.MkdirAll(filepath.Join(dir, "a", "b", "c"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "b", "c", "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	expect("a/b/c/f", false)
	if err := os.Remove(filepath.Join(dir, "a", "b", "c", "f")); err != nil {
		t.Fatal(err)
	}
	if err := d.MkdirAll("a/b/c", 0o755); err != nil {
		t.Fatal(err)
	}
	create("a/b/c/f")
	expect("a/b/c/f", true)

	// A folder made by a rename: staged, then moved into place.
	if err := d.MkdirAll("stage/y", 0o755); err != nil {
		t.Fatal(err)
	}
	create("stage/y/g")
	expect("z/y/g", false)
	if err := d.Rename("stage", "z"); err != nil {
		t.Fatal(err)
	}
	expect("z/y/g", true)
	expect("stage/y/g", false)
}
