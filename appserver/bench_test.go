package appserver

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

// BenchmarkRescan is the server's work before each manifest it hands out:
// a scan of 20,000 unchanged files whose hashes are cached.
func BenchmarkRescan(b *testing.B) {
	dir := benchTree(b, 20000)
	ix, err := OpenIndex(context.Background(), slog.New(slog.DiscardHandler), "linux", dir, b.TempDir(), "7.00.240501A", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ix.Current(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
