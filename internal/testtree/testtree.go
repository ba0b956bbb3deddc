// Package testtree writes trees of files for the tests of both programs'
// packages: an update folder, an install. It is for tests only and imports
// only the standard library.
package testtree

import (
	"os"
	"path/filepath"
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
