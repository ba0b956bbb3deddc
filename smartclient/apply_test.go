package smartclient

import (
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

var errCrash = errors.New("simulated crash")

// switchFixture is an install holding the old release (a, b, lib/c) with a
// file of the user's, and staging holding the new one: a and lib/c
// changed, b removed, d/e added.
func switchFixture(t *testing.T) (dir string, root *os.Root, j *journal, oldTree, newTree map[string]string) {
	t.Helper()
	dir = t.TempDir()
	oldTree = map[string]string{"a": "old a", "b": "old b", "lib/c": "old c", "mine.txt": "user"}
	newTree = map[string]string{"a": "new a", "lib/c": "new c", "d/e": "new e", "mine.txt": "user"}
	write := func(files map[string]string, prefix string) {
		for p, c := range files {
			full := filepath.Join(dir, filepath.FromSlash(prefix+p))
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(oldTree, "")
	write(map[string]string{"a": "new a", "lib/c": "new c", "d/e": "new e"}, stagingDir+"/")
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	st := &State{Version: stateVersion, ClientID: "x", Build: "7.00.240501A", Files: map[string]FileState{
		"a": {Size: 5}, "lib/c": {Size: 5}, "d/e": {Size: 5},
	}}
	j = &journal{Install: []string{"a", "d/e", "lib/c"}, Remove: []string{"b"}, State: st}
	return dir, root, j, oldTree, newTree
}

func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == metaDir {
			return fs.SkipDir
		}
		if d.IsDir() {
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

// crashAt makes the n-th step of a switch (counting from 1) fail.
func crashAt(t *testing.T, n int) *int {
	count := 0
	testHookStep = func(op, p string) error {
		count++
		if count == n {
			return errCrash
		}
		return nil
	}
	t.Cleanup(func() { testHookStep = nil })
	return &count
}

// steps counts the steps of a whole switch of the fixture.
func steps(t *testing.T) int {
	dir, root, j, _, _ := switchFixture(t)
	count := crashAt(t, -1)
	if err := writeJournal(root, dir, j); err != nil {
		t.Fatal(err)
	}
	if err := play(root, dir, j, discard); err != nil {
		t.Fatal(err)
	}
	testHookStep = nil
	return *count
}

// TestCrashAtEveryStep kills the switch at each of its steps, as Mender's
// state-machine tests do, and checks that the next start leaves exactly
// the new release, with no journal, staging or old files behind.
func TestCrashAtEveryStep(t *testing.T) {
	n := steps(t)
	if n < 6 {
		t.Fatalf("only %d steps in the switch", n)
	}
	for at := 1; at <= n; at++ {
		dir, root, j, _, newTree := switchFixture(t)
		crashAt(t, at)
		if err := writeJournal(root, dir, j); err != nil {
			t.Fatal(err)
		}
		if err := play(root, dir, j, discard); !errors.Is(err, errCrash) {
			t.Fatalf("step %d: play: %v", at, err)
		}
		testHookStep = nil
		// The crash may have left a mix; that is what recovery is for.
		if err := recoverJournal(root, dir, discard); err != nil {
			t.Fatalf("step %d: recovery: %v", at, err)
		}
		if got := readTree(t, dir); !maps.Equal(got, newTree) {
			t.Errorf("crash at step %d: after recovery %v, want %v", at, got, newTree)
		}
		for _, p := range []string{journalFile, stagingDir, oldDir} {
			if exists(root, p) {
				t.Errorf("crash at step %d: %s left behind", at, p)
			}
		}
		st, err := loadState(dir)
		if err != nil || st.Build != "7.00.240501A" || len(st.Files) != 3 {
			t.Errorf("crash at step %d: state %+v, %v", at, st, err)
		}
	}
}

// TestFailureAtEveryStepRollsBack makes each step fail in the running
// client (a locked file, a full disk): the switch is undone and the
// install is exactly the old release.
func TestFailureAtEveryStepRollsBack(t *testing.T) {
	n := steps(t)
	for at := 1; at <= n; at++ {
		dir, root, j, oldTree, _ := switchFixture(t)
		crashAt(t, at)
		err := commit(t.Context(), root, dir, j, discard)
		testHookStep = nil
		if !errors.Is(err, ErrRolledBack) || !errors.Is(err, errCrash) {
			t.Fatalf("step %d: commit: %v; want a rollback", at, err)
		}
		if got := readTree(t, dir); !maps.Equal(got, oldTree) {
			t.Errorf("failure at step %d: %v, want the old release %v", at, got, oldTree)
		}
		if exists(root, journalFile) || exists(root, stateFile) {
			t.Errorf("failure at step %d: journal or new state left behind", at)
		}
		if exists(root, "d") {
			t.Errorf("failure at step %d: folder d created by the update left behind", at)
		}
	}
}

func TestDamagedJournalIsReported(t *testing.T) {
	dir, root, _, oldTree, _ := switchFixture(t)
	for name, content := range map[string]string{"garbage": "{not json", "torn": `{"version":1,"install":["a"`, "no state": `{"version":1}`} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, journalFile), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			err := recoverJournal(root, dir, discard)
			if err == nil || !strings.Contains(err.Error(), "damaged") {
				t.Fatalf("got %v, want a damaged-journal error", err)
			}
			if got := readTree(t, dir); !maps.Equal(got, oldTree) {
				t.Errorf("install changed: %v", got)
			}
		})
	}
}
