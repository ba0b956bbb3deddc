package releases

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/zeebo/blake3"
)

// The crash test's child: it publishes release 3 over the state folder
// named by SMARTSYNC_CRASH_STATE and exits at the Nth step that writes
// (SMARTSYNC_CRASH_AT), as a publish killed there would.
func init() {
	at, state := os.Getenv("SMARTSYNC_CRASH_AT"), os.Getenv("SMARTSYNC_CRASH_STATE")
	if at == "" || state == "" {
		return
	}
	n, _ := strconv.Atoi(at)
	seen := 0
	crashHook = func(point string) {
		if seen++; seen == n {
			fmt.Printf("crashed at %s\n", point)
			os.Exit(3)
		}
	}
	s := &Store{Dir: filepath.Join(state, "releases")}
	if err := publishThird(s); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	os.Exit(0)
}

// crashReleases are the releases of the crash test: 1 and 2 are
// published before, 3 is the one killed.
var crashReleases = []map[string]string{
	{"a": "one", "b": "bee", "c": "sea"},
	{"a": "two", "b": "bee", "d": "dee"},
	{"a": "three", "b": "bee", "e": "eee", "f": "eff"},
}

// publishThird publishes release 3 as Publish does: add, commit, prune
// with KeepReleases=1 (releases 1's record and its objects go).
func publishThird(s *Store) error {
	es, open := files(crashReleases[2])
	if _, err := s.Add(context.Background(), es, open); err != nil {
		return err
	}
	if err := s.Commit(&Record{OS: "linux", Number: 3, Build: "3", Files: es}); err != nil {
		return err
	}
	_, err := s.Prune("linux", 1, 2)
	return err
}

// TestCrashPoints kills a publish at every step that writes, one after
// the other, and checks what it leaves: the release served is release 2
// or release 3, whole (every object it names is there with its hash);
// and a publish after it, then pruning, leaves the store as one that
// was never killed.
func TestCrashPoints(t *testing.T) {
	base := t.TempDir()
	s, err := Open(base)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, s, 1, crashReleases[0])
	publish(t, s, 2, crashReleases[1])

	for n := 1; ; n++ {
		state := filepath.Join(t.TempDir(), "state")
		if err := os.CopyFS(state, os.DirFS(base)); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "SMARTSYNC_CRASH_AT="+strconv.Itoa(n), "SMARTSYNC_CRASH_STATE="+state)
		out, err := cmd.CombinedOutput()
		code := cmd.ProcessState.ExitCode()
		if code != 0 && code != 3 {
			t.Fatalf("crash point %d: the child failed (%v): %s", n, err, out)
		}
		st := &Store{Dir: filepath.Join(state, "releases")}
		cur, err := st.Current("linux")
		if err != nil || (cur != 2 && cur != 3) {
			t.Fatalf("crash point %d (%s): release %d served (%v), want 2 or 3", n, out, cur, err)
		}
		checkWhole(t, st, cur, crashReleases[cur-1])
		if code == 0 {
			if n < 8 {
				t.Fatalf("the publish ran to its end after only %d steps", n-1)
			}
			t.Logf("%d crash points", n-1)
			return
		}
		// The next publish goes through and leaves nothing behind.
		if err := publishThird(st); err != nil {
			t.Fatalf("crash point %d (%s): publishing again: %v", n, out, err)
		}
		checkWhole(t, st, 3, crashReleases[2])
		if ns, _ := st.Numbers("linux"); len(ns) != 2 || ns[0] != 2 || ns[1] != 3 {
			t.Errorf("crash point %d (%s): releases kept %v, want 2 and 3", n, out, ns)
		}
		used, _ := st.used()
		ents, _ := os.ReadDir(st.ObjectsDir())
		for _, d := range ents {
			objs, _ := os.ReadDir(filepath.Join(st.ObjectsDir(), d.Name()))
			for _, o := range objs {
				var h Hash
				if h.UnmarshalText([]byte(o.Name())) != nil || !used[h] {
					t.Errorf("crash point %d (%s): %s/%s is left in the store", n, out, d.Name(), o.Name())
				}
			}
		}
	}
}

// checkWhole checks that release n is recorded with the files of want
// and that every object it names holds its content.
func checkWhole(t *testing.T, s *Store, n uint64, want map[string]string) {
	t.Helper()
	r, err := s.Record("linux", n)
	if err != nil {
		t.Fatalf("release %d: %v", n, err)
	}
	if len(r.Files) != len(want) {
		t.Fatalf("release %d has %d files, want %d", n, len(r.Files), len(want))
	}
	for _, e := range r.Files {
		b, err := os.ReadFile(filepath.Join(s.ObjectsDir(), filepath.FromSlash(ObjectName(e.Hash))))
		if err != nil || blake3.Sum256(b) != e.Hash || string(b) != want[e.Path] {
			t.Fatalf("release %d: the object of %s is not whole: %v", n, e.Path, err)
		}
	}
}
