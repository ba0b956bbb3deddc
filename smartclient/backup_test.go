package smartclient

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
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
	d := openCachedDisk(t, dir)
	if err := d.MkdirAll(newBackupDir, 0o755); err != nil {
		t.Fatal(err)
	}
	n, err := snapshot(context.Background(), d, newBackupDir)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(files) {
		t.Errorf("snapshot copied %d files; want %d", n, len(files))
	}
	for _, f := range files {
		live := filepath.Join(dir, filepath.FromSlash(f.path))
		kept := filepath.Join(dir, filepath.FromSlash(newBackupDir+"/"+f.path))
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
		if ki.Mode().Perm() != f.mode || !ki.ModTime().Equal(mtime) {
			t.Errorf("%s: backup has mode %v and mtime %v; want %v and %v", f.path, ki.Mode().Perm(), ki.ModTime(), f.mode, mtime)
		}
	}
	// An edit in place of the live INI leaves the backup as it was.
	if err := os.WriteFile(filepath.Join(dir, "smartclient.ini"), []byte("[TCP]\nServer=other\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, filepath.FromSlash(newBackupDir), "smartclient.ini")); string(data) != files[0].data {
		t.Errorf("an edit of the install's INI changed its backup: %q", data)
	}

	// A file already in the backup folder (planted there, or left by
	// something else) is not written through: the copy fails.
	if err := d.RemoveAll(newBackupDir); err != nil {
		t.Fatal(err)
	}
	if err := d.MkdirAll(newBackupDir, 0o755); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, []byte("not the install's"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, filepath.FromSlash(newBackupDir), "smartclient.ini")); err != nil {
		t.Fatal(err)
	}
	if _, err := snapshot(context.Background(), d, newBackupDir); err == nil {
		t.Error("snapshot over a planted link succeeded")
	}
	if data, _ := os.ReadFile(outside); string(data) != "not the install's" {
		t.Errorf("the copy wrote through a link: %q", data)
	}
}

// TestRemoveAll: the client's own trees go whole, with their nested
// folders and files, in one operation for the fault hook; a link inside
// goes, never what it points to; a tree that is not there is no error.
func TestRemoveAll(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("not the client's"), 0o644); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(dir, ".smartclient", "old")
	for i := range 40 {
		p := filepath.Join(tree, fmt.Sprintf("d%d", i%7), fmt.Sprintf("e%d", i%3), fmt.Sprintf("f%d.dll", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("old"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(tree, "top.ini"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(tree, "d1", "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(tree, "link")); err != nil {
		t.Fatal(err)
	}
	d := openCachedDisk(t, dir)
	var ops []string
	faultHook = func(op, name string) error {
		ops = append(ops, op+" "+name)
		return nil
	}
	defer func() { faultHook = nil }()
	for _, name := range []string{oldDir, oldDir, stagingDir} {
		if err := d.RemoveAll(name); err != nil {
			t.Fatalf("RemoveAll(%s): %v", name, err)
		}
	}
	if _, err := os.Lstat(tree); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the tree is still there: %v", err)
	}
	if data, err := os.ReadFile(filepath.Join(outside, "keep")); err != nil || string(data) != "not the client's" {
		t.Errorf("what a link in the tree pointed to: %q, %v", data, err)
	}
	want := []string{"removeall " + oldDir, "removeall " + oldDir, "removeall " + stagingDir}
	if !slices.Equal(ops, want) {
		t.Errorf("fault hook saw %q; want %q", ops, want)
	}
	// A tree that is a link to a folder of the install: the link goes,
	// the folder and its files stay.
	kept := filepath.Join(dir, "config")
	for _, f := range []string{"a.ini", "b.ini"} {
		if err := os.MkdirAll(kept, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(kept, f), []byte("user's"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../config", filepath.Join(dir, filepath.FromSlash(oldDir))); err != nil {
		t.Fatal(err)
	}
	if err := d.RemoveAll(oldDir); err != nil {
		t.Fatalf("RemoveAll of a link: %v", err)
	}
	if _, err := os.Lstat(tree); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the link is still there: %v", err)
	}
	if entries, err := os.ReadDir(kept); err != nil || len(entries) != 2 {
		t.Errorf("the folder the link named holds %v, %v; want a.ini and b.ini", entries, err)
	}
	// A failing operation removes nothing.
	if err := os.MkdirAll(filepath.Join(tree, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	faultHook = func(op, name string) error { return errors.New("crash") }
	if err := d.RemoveAll(oldDir); err == nil {
		t.Error("RemoveAll went on past a failing hook")
	}
	if _, err := os.Lstat(filepath.Join(tree, "x")); err != nil {
		t.Errorf("the tree went despite the failing hook: %v", err)
	}
}
