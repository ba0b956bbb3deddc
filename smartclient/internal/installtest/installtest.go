// Package installtest holds what the tests of the client's packages share
// about install folders: writing and reading trees of files, the fixture
// of a switch (an old release installed, a new one staged, three older
// backups), and child processes that exit at the k-th operation of an
// install.Disk, as a kill or a power cut would stop the client.
//
// It is for tests only. It imports the install and backup packages, so
// their own tests cannot use it; the tests of the journal and of
// smartclient do.
package installtest

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/erpupdate/smartsync/smartclient/internal/backup"
	"github.com/erpupdate/smartsync/smartclient/internal/install"
)

// The switch fixture: an install holding the old release (a, b, lib/c,
// config.ini, the empty folder f) and a file of the user's, three backups
// of older releases, and staging holding the new release: a, lib/c and
// config.ini changed, b removed, d/e and f/g added, and the empty folders
// d/empty (in a new folder) and lib/empty (in one the install has) made.
// A path ending in a slash is an empty folder. Tests must not change these
// maps.
var (
	OldRelease = map[string]string{"a": "old a", "b": "old b", "lib/c": "old c", "config.ini": "[old]", "mine.txt": "user", "f/": ""}
	NewRelease = map[string]string{"a": "new a", "lib/c": "new c", "config.ini": "[new]", "d/e": "new e", "mine.txt": "user",
		"d/empty/": "", "lib/empty/": "", "f/g": "new g"}
	Staged = map[string]string{"a": "new a", "lib/c": "new c", "config.ini": "[new]", "d/e": "new e",
		"d/empty/": "", "lib/empty/": "", "f/g": "new g"}
	OlderOnes = []map[string]string{{"a": "v1"}, {"a": "v2", "b": "v2"}, {"a": "v3", "lib/c": "v3"}}
)

// SwitchFixture makes the switch fixture in a new folder and returns it.
func SwitchFixture(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	WriteFiles(t, dir, OldRelease)
	WriteFiles(t, filepath.Join(dir, filepath.FromSlash(install.StagingDir)), Staged)
	for i, files := range OlderOnes {
		WriteFiles(t, filepath.Join(dir, backup.Name(i+1)), files)
	}
	return dir
}

// WriteFiles writes files, slash paths to contents, under dir; a path
// ending in a slash is made an empty folder.
func WriteFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// ReadTree reads the files of an install (without bookkeeping and
// backups), or of one backup folder, as slash paths to contents, and its
// empty folders as their paths with a slash after them, to "".
func ReadTree(t testing.TB, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel != "." && install.Reserved(rel) {
			if e.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if e.IsDir() {
			if entries, err := os.ReadDir(p); err == nil && len(entries) == 0 && rel != "." {
				m[rel+"/"] = ""
			}
			return nil
		}
		b, err := os.ReadFile(p)
		m[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// OpenDisk returns the seam over dir without a folder cache, closed when
// the test ends.
func OpenDisk(t testing.TB, dir string) *install.Disk {
	t.Helper()
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return &install.Disk{Root: r}
}

// OpenCachedDisk is OpenDisk with the folder cache a sync uses.
func OpenCachedDisk(t testing.TB, dir string) *install.Disk {
	t.Helper()
	d := install.New(OpenDisk(t, dir).Root)
	t.Cleanup(d.CloseCache)
	return d
}

// Crash children. A test runs an action in a child process, this test
// binary run with -test.run=^TestCrashChild$, which exits at the k-th
// operation of the install.Disk it works on: every package that crashes
// children has a TestCrashChild that reads ChildEnv and does the action.
const (
	envCrashDir    = "SMARTCLIENT_CRASH_DIR"
	envCrashAction = "SMARTCLIENT_CRASH_ACTION"
	envCrashAt     = "SMARTCLIENT_CRASH_AT"
	crashExit      = 77
)

// ChildEnv returns what the parent asked the child to do: the folder,
// the action and the operation to exit at; ok is false in a normal run of
// the tests, where TestCrashChild does nothing.
func ChildEnv() (dir, action string, at int, ok bool) {
	dir = os.Getenv(envCrashDir)
	if dir == "" {
		return "", "", 0, false
	}
	at, _ = strconv.Atoi(os.Getenv(envCrashAt))
	return dir, os.Getenv(envCrashAction), at, true
}

// CrashAt returns a fault hook (install.Faults.Op) that exits the process
// at the at-th operation.
func CrashAt(at int) func(op, name string) error {
	count := 0
	return func(string, string) error {
		count++
		if count == at {
			os.Exit(crashExit)
		}
		return nil
	}
}

// CrashChild runs action on dir in a child process that exits at
// operation at; it reports whether the child crashed (false: it finished
// first).
func CrashChild(t *testing.T, dir, action string, at int) bool {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashDir+"="+dir, envCrashAction+"="+action, envCrashAt+"="+strconv.Itoa(at))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return false
	case errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).ExitStatus() == crashExit:
		return true
	}
	t.Fatalf("child %s at %d: %v\n%s", action, at, err, out)
	return false
}
