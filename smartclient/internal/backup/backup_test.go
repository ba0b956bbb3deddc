package backup

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/testtree"
	"github.com/erpupdate/smartsync/smartclient/internal/install"
)

// TestSnapshotCopiesINIFiles: the backup holds the install's INI files as
// copies of their own (users and programs edit those in place), with
// their content, permission bits and modification time, and every other
// file as a hard link; a copy never writes through what the backup
// folder already holds.
func TestSnapshotCopiesINIFiles(t *testing.T) {
	dir := t.TempDir()
	mtime := time.Date(2024, 1, 22, 19, 34, 23, 500, time.UTC)
	files := []struct {
		path string
		mode os.FileMode
		data string
		copy bool
	}{
		{"smartclient.ini", 0o640, "[TCP]\nServer=erp\n", true},
		{"config/Deep/App.INI", 0o600, "[App]\nTheme=dark\n", true},
		{"config/Deep/empty.ini", 0o644, "", true},
		{"bin/app.exe", 0o755, "MZ binary", false},
		{"config/Deep/data.bin", 0o644, "data", false},
	}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	d := install.New(openRoot(t, dir))
	t.Cleanup(d.CloseCache)
	if err := d.MkdirAll(install.NewBackupDir, 0o755); err != nil {
		t.Fatal(err)
	}
	n, err := snapshot(context.Background(), d, install.NewBackupDir)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(files) {
		t.Errorf("snapshot copied %d files; want %d", n, len(files))
	}
	for _, f := range files {
		live := filepath.Join(dir, filepath.FromSlash(f.path))
		kept := filepath.Join(dir, filepath.FromSlash(install.NewBackupDir+"/"+f.path))
		li, err := os.Stat(live)
		if err != nil {
			t.Fatal(err)
		}
		ki, err := os.Stat(kept)
		if err != nil {
			t.Fatalf("%s: not in the backup: %v", f.path, err)
		}
		if same := os.SameFile(li, ki); same == f.copy {
			t.Errorf("%s: backup is the same file as the install's: %v; want %v", f.path, same, !f.copy)
		}
		data, err := os.ReadFile(kept)
		if err != nil || string(data) != f.data {
			t.Errorf("%s: backup holds %q, %v; want %q", f.path, data, err, f.data)
		}
		// Windows keeps no Unix modes but read-only.
		if runtime.GOOS != "windows" && ki.Mode().Perm() != f.mode || !ki.ModTime().Equal(mtime) {
			t.Errorf("%s: backup has mode %v and mtime %v; want %v and %v", f.path, ki.Mode().Perm(), ki.ModTime(), f.mode, mtime)
		}
	}
	// An edit in place of the live INI leaves the backup as it was.
	if err := os.WriteFile(filepath.Join(dir, "smartclient.ini"), []byte("[TCP]\nServer=other\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, filepath.FromSlash(install.NewBackupDir), "smartclient.ini")); string(data) != files[0].data {
		t.Errorf("an edit of the install's INI changed its backup: %q", data)
	}

	// A file already in the backup folder (planted there, or left by
	// something else) is not written through: the copy fails.
	t.Run("planted link", func(t *testing.T) {
		// Wine's CreateSymbolicLinkW reports success and makes nothing.
		testtree.NeedSymlinks(t)
		if err := d.RemoveAll(install.NewBackupDir); err != nil {
			t.Fatal(err)
		}
		if err := d.MkdirAll(install.NewBackupDir, 0o755); err != nil {
			t.Fatal(err)
		}
		outside := filepath.Join(t.TempDir(), "outside")
		if err := os.WriteFile(outside, []byte("not the install's"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, filepath.Join(dir, filepath.FromSlash(install.NewBackupDir), "smartclient.ini")); err != nil {
			t.Fatal(err)
		}
		if _, err := snapshot(context.Background(), d, install.NewBackupDir); err == nil {
			t.Error("snapshot over a planted link succeeded")
		}
		if data, _ := os.ReadFile(outside); string(data) != "not the install's" {
			t.Errorf("the copy wrote through a link: %q", data)
		}
	})
}

func openRoot(t testing.TB, dir string) *os.Root {
	t.Helper()
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}
