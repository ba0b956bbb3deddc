package smartclient

import (
	"fmt"
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
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	d := newDisk(r)
	defer d.close()

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
