package index

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/releasecheck"
	"github.com/erpupdate/smartsync/internal/testtree"
)

// needCaseSensitive skips a test that writes two names that are one file
// on Windows and macOS: only Linux can hold the folder at all.
func needCaseSensitive(t testing.TB) {
	t.Helper()
	if runtime.GOOS == "windows" || runtime.GOOS == "darwin" {
		t.Skipf("%s takes README.TXT and readme.txt for one file", runtime.GOOS)
	}
}

// badName is a name clients refuse that this OS can hold: a Windows
// device everywhere but on Windows, which would open the device.
func badName() (name, why string) {
	if runtime.GOOS == "windows" {
		return "LIBNEW~1.SO", "8.3 short name"
	}
	return "aux.log", "is the Windows device AUX"
}

// TestIndexRefusesWhatClientsRefuse: Open fails on a folder every client
// would refuse, naming every offending path, where before it served it
// and every client failed on its manifest.
func TestIndexRefusesWhatClientsRefuse(t *testing.T) {
	needCaseSensitive(t)
	dir := t.TempDir()
	bad, why := badName()
	writeTree(t, dir, map[string]string{
		"smartclient": "x", "README.TXT": "upper", "readme.txt": "lower",
		"lib/" + bad: "log", "lib/x.so": "x", "LIB": "a file", "ok/.smartclient/x": "fine below the top",
	}, oldTime)
	ix, err := Open(context.Background(), discardLogger(), "linux", dir, t.TempDir(), Release{Build: "7.00.240501A"})
	if err == nil {
		ix.Close()
		t.Fatal("Open accepted a folder clients refuse")
	}
	var ce *releasecheck.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v holds no *releasecheck.Error", err)
	}
	for _, want := range []string{dir, `"README.TXT" and "readme.txt" are one file on Windows or macOS`, why, `"LIB" is a file, and "lib/x.so" needs it to be a folder`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	var paths []string
	for _, p := range ce.Problems {
		paths = append(paths, p.Path)
	}
	if want := []string{"lib/" + bad, "lib/x.so", "readme.txt"}; strings.Join(paths, ",") != strings.Join(want, ",") {
		t.Errorf("problems at %q, want %q: %q", paths, want, ce.Problems)
	}
}

// waitRefused calls Current until the index has scanned the folder as
// refused, and checks that Current still hands out good, the last good
// manifest.
func waitRefused(t testing.TB, ix *Index, good *Manifest) error {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if m := current(t, ix); m != good {
			t.Fatalf("the manifest changed while the folder is one clients refuse: %d files", len(m.Files))
		}
		if err := ix.Refused(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			t.Fatal("the change was not seen within 5 s")
		}
	}
}

// TestIndexKeepsLastGoodManifest: a folder changed by hand into one that
// clients refuse is not served; the last good manifest is, the log says
// why once for each set of problems, and the folder is served again once
// it is fixed.
func TestIndexKeepsLastGoodManifest(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"smartclient": "v1", "lib/a.so": "a"}
	writeTree(t, dir, files, oldTime)
	var logBuf testtree.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	ix, err := Open(context.Background(), log, "linux", dir, t.TempDir(), Release{Build: "7.00.240501A"})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	good := current(t, ix)
	if ix.Refused() != nil {
		t.Fatalf("Refused() = %v for a good folder", ix.Refused())
	}

	bad, why := badName()
	writeFile(t, filepath.Join(dir, "lib", bad), "new log")
	err = waitRefused(t, ix, good)
	if !strings.Contains(err.Error(), why) || !strings.Contains(err.Error(), bad) {
		t.Errorf("Refused() = %v; want it to name %s", err, bad)
	}
	logged := func() int { return strings.Count(logBuf.String(), "level=ERROR") }
	if n := logged(); n != 1 || !strings.Contains(logBuf.String(), "lib/"+bad) {
		t.Fatalf("%d errors logged, want 1 naming lib/%s:\n%s", n, bad, logBuf.String())
	}

	// Another change, the same problems: still the good manifest, and
	// nothing more in the log.
	waitDirtyAfter(t, ix, func() { writeFile(t, filepath.Join(dir, "new.txt"), "new") })
	if m := current(t, ix); m != good {
		t.Fatal("a new manifest while the folder is still refused")
	}
	if n := logged(); n != 1 {
		t.Errorf("%d errors logged for one set of problems:\n%s", n, logBuf.String())
	}

	// New problems: logged.
	if runtime.GOOS != "windows" {
		waitDirtyAfter(t, ix, func() { writeFile(t, filepath.Join(dir, "com1.txt"), "x") })
		current(t, ix)
		if n := logged(); n != 2 || !strings.Contains(logBuf.String(), "COM1") {
			t.Errorf("%d errors logged, want a second naming com1.txt:\n%s", n, logBuf.String())
		}
		removeFile(t, filepath.Join(dir, "com1.txt"))
	}

	// Fixed: the folder as it is now is served.
	removeFile(t, filepath.Join(dir, "lib", bad))
	files["new.txt"] = "new"
	waitFor(t, ix, "new.txt", func(m *Manifest) bool { return sameFiles(m, files) })
	if err := ix.Refused(); err != nil {
		t.Errorf("Refused() = %v after the fix", err)
	}
	if !strings.Contains(logBuf.String(), "clients accept again") {
		t.Errorf("the log does not say the folder is served again:\n%s", logBuf.String())
	}
}

// waitDirtyAfter runs f, which changes the folder of ix, and waits until
// the index knows it may have changed.
func waitDirtyAfter(t testing.TB, ix *Index, f func()) {
	t.Helper()
	f()
	ix.mu.Lock()
	watching := ix.watching
	ix.mu.Unlock()
	if watching {
		waitDirty(t, ix)
	}
}

func removeFile(t testing.TB, name string) {
	t.Helper()
	if err := os.Remove(name); err != nil {
		t.Fatal(err)
	}
}
