package index

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// benchTree makes n small files in 125 folders, as an installation has.
func benchTree(b *testing.B, n int) string {
	b.Helper()
	dir := b.TempDir()
	old := time.Date(2024, 1, 15, 10, 0, 0, 0, time.UTC)
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("d%03d", i%125), fmt.Sprintf("sub%d", i%3), fmt.Sprintf("file%05d.dll", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(p), 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

// BenchmarkRescan is the server's work before a manifest when the folder
// may have changed (or is not watched): a scan of 20,000 unchanged files
// whose hashes are cached.
func BenchmarkRescan(b *testing.B) {
	ix := benchIndex(b)
	b.ReportAllocs()
	for b.Loop() {
		ix.mu.Lock()
		ix.dirty = true
		ix.mu.Unlock()
		if _, err := ix.Current(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCurrentUnchanged is the server's work before a manifest when
// the watched folder of 20,000 files did not change: no scan.
func BenchmarkCurrentUnchanged(b *testing.B) {
	ix := benchIndex(b)
	settle(b, ix)
	n := scans(ix)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ix.Current(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	if got := scans(ix) - n; got != 0 {
		b.Fatalf("%d scans of the unchanged folder", got)
	}
}

func benchIndex(b *testing.B) *Index {
	dir := benchTree(b, 20000)
	ix, err := Open(context.Background(), slog.New(slog.DiscardHandler), "linux", dir, b.TempDir(), Release{Build: "7.00.240501A"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ix.Close() })
	return ix
}
