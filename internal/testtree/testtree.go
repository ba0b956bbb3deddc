// Package testtree writes trees of files for the tests of both programs'
// packages: an update folder, an install. It is for tests only and imports
// only the standard library.
package testtree

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// OldTime is an mtime well outside the server's hash cache's racy window.
var OldTime = time.Now().Add(-time.Hour).Truncate(time.Second)

// Write writes files (slash paths relative to dir, to their contents) and
// sets their mtime to mtime, unless mtime is zero.
func Write(t testing.TB, dir string, files map[string]string, mtime time.Time) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if !mtime.IsZero() {
			if err := os.Chtimes(p, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// NeedSymlinks skips t where the system cannot make and read back
// relative symbolic links, through a path or through an os.Root: Wine 8
// cannot (its CreateSymbolicLinkW makes nothing, symlinkat is "not
// supported"), nor can Windows without the privilege to make links. The
// reason names what failed; the test runs wherever links work.
func NeedSymlinks(t testing.TB) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "target"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("target", filepath.Join(dir, "link")); err != nil {
		t.Skipf("this system cannot make symbolic links: %v", err)
	}
	if got, err := os.Readlink(filepath.Join(dir, "link")); err != nil || got != "target" {
		t.Skipf("this system cannot read back a symbolic link: %q, %v", got, err)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Symlink("target", "link2"); err != nil {
		t.Skipf("this system cannot make symbolic links in a folder: %v", err)
	}
}

// UnderWine reports whether the tests run under Wine: scripts/ci-windows
// sets SMARTSYNC_WINE=1. Only limitations of Wine (not of Windows) may be
// skipped on it, so that the test still runs on a real Windows machine.
func UnderWine() bool { return os.Getenv("SMARTSYNC_WINE") == "1" }

// SkipUnderWine skips t under Wine with the reason, which must name the
// limitation of Wine that the test meets; elsewhere it does nothing.
func SkipUnderWine(t testing.TB, reason string) {
	t.Helper()
	if UnderWine() {
		t.Skip("Wine limitation: " + reason)
	}
}

// Buffer is a bytes.Buffer that goroutines may write while the test reads
// it: a server's or a program's log, output written from two places.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
