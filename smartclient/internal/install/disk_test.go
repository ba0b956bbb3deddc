package install

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

var errInjected = errors.New("injected fault")

func openDisk(t testing.TB, dir string) *Disk {
	t.Helper()
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return &Disk{Root: r}
}

// openCachedDisk is openDisk with the folder cache a sync uses.
func openCachedDisk(t testing.TB, dir string) *Disk {
	t.Helper()
	d := New(openDisk(t, dir).Root)
	t.Cleanup(d.CloseCache)
	return d
}

// writeFile writes file name of the folder dir.
func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
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
	d.Faults.Op = func(op, name string) error {
		ops = append(ops, op+" "+name)
		return nil
	}
	for _, name := range []string{OldDir, OldDir, StagingDir} {
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
	want := []string{"removeall " + OldDir, "removeall " + OldDir, "removeall " + StagingDir}
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
	if err := os.Symlink("../config", filepath.Join(dir, filepath.FromSlash(OldDir))); err != nil {
		t.Fatal(err)
	}
	if err := d.RemoveAll(OldDir); err != nil {
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
	d.Faults.Op = func(op, name string) error { return errors.New("crash") }
	if err := d.RemoveAll(OldDir); err == nil {
		t.Error("RemoveAll went on past a failing hook")
	}
	if _, err := os.Lstat(filepath.Join(tree, "x")); err != nil {
		t.Errorf("the tree went despite the failing hook: %v", err)
	}
}
