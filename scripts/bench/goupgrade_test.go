//go:build linux

package main

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeZip writes a zip of the given entries (name -> mode) with one mtime.
func writeZip(t *testing.T, path string, mtime time.Time, entries map[string]os.FileMode) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, mode := range entries {
		h := &zip.FileHeader{Name: name, Method: zip.Deflate, Modified: mtime}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("content of " + name))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestExtractZip(t *testing.T) {
	const prefix = "golang.org/toolchain@v0.0.1-go1.25.0.linux-amd64/"
	mtime := time.Date(2025, 8, 8, 19, 33, 32, 0, time.UTC)
	dir := t.TempDir()
	zp := filepath.Join(dir, "m.zip")
	writeZip(t, zp, mtime, map[string]os.FileMode{
		prefix + "bin/go":            0o755,
		prefix + "src/fmt/print.go":  0o644,
		prefix + "pkg/tool/x/vet":    0o755,
		prefix + "README.md":         0o644,
		prefix + "misc/deep/a/b/c.t": 0o644,
	})
	dest := filepath.Join(dir, "go1.25.0")
	files, size, err := extractZip(zp, prefix, dest)
	if err != nil {
		t.Fatal(err)
	}
	if files != 5 || size == 0 {
		t.Errorf("extracted %d files, %d bytes; want 5 files", files, size)
	}
	for name, want := range map[string]os.FileMode{"bin/go": 0o755, "pkg/tool/x/vet": 0o755, "src/fmt/print.go": 0o644, "README.md": 0o644} {
		fi, err := os.Stat(filepath.Join(dest, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), want)
		}
		if !fi.ModTime().Equal(mtime) {
			t.Errorf("%s: mtime %v, want the zip's %v", name, fi.ModTime(), mtime)
		}
	}
	if fi, err := os.Stat(filepath.Join(dest, "misc", "deep")); err != nil || !fi.ModTime().Equal(mtime) {
		t.Errorf("a folder's mtime: %v, %v; want %v", fi, err, mtime)
	}
	if _, err := os.Stat(dest + ".tmp"); err == nil {
		t.Errorf("%s.tmp left behind", dest)
	}
}

func TestExtractZipRefuses(t *testing.T) {
	const prefix = "golang.org/toolchain@v0.0.1-go1.25.0.linux-amd64/"
	for _, tc := range []struct {
		name    string
		entries map[string]os.FileMode
		want    string
	}{
		{"outside the prefix", map[string]os.FileMode{"other@v1/bin/go": 0o755}, "is not under " + prefix},
		{"leaving the tree", map[string]os.FileMode{prefix + "../../etc/x": 0o644}, "leaves the tree"},
		{"a symlink", map[string]os.FileMode{prefix + "bin/link": os.ModeSymlink | 0o777}, "is not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			zp := filepath.Join(dir, "m.zip")
			writeZip(t, zp, time.Now(), tc.entries)
			dest := filepath.Join(dir, "tree")
			_, _, err := extractZip(zp, prefix, dest)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			for _, p := range []string{dest, dest + ".tmp"} {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("%s exists after a refused zip", p)
				}
			}
		})
	}
}

// TestGoTreesWithoutNetwork: with no proxy and an empty module cache, the
// download fails with an error naming the module (the caller then skips
// the scenarios); with a tree extracted before, that tree is used.
func TestGoTreesWithoutNetwork(t *testing.T) {
	t.Setenv("GOPROXY", "off")
	t.Setenv("GOMODCACHE", t.TempDir())
	t.Setenv("GOFLAGS", "")
	top := t.TempDir()
	b := &bench{top: top, dirs: map[string]string{}, goDesc: map[string]string{}}
	err := b.goTrees(t.Context())
	if err == nil || !strings.Contains(err.Error(), "go mod download golang.org/toolchain@v0.0.1-go1.25.0.linux-amd64") {
		t.Fatalf("got %v, want the download's error naming the module", err)
	}
	for _, r := range goReleases {
		dir := filepath.Join(top, r.tree)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		flags := toolchainModule + "@" + r.version + " h1:x=\n" + extractFormat + "\n"
		if err := os.WriteFile(dir+".flags", []byte(flags), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.goTrees(t.Context()); err != nil {
		t.Fatalf("with the trees extracted before: %v", err)
	}
	for _, r := range goReleases {
		if b.dirs[r.tree] != filepath.Join(top, r.tree) {
			t.Errorf("tree %s: folder %q", r.tree, b.dirs[r.tree])
		}
	}
}
