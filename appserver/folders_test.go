package appserver

// Helpers for tests of the server that write update folders and look at
// their index, and the tests of the configuration and the index together.
// The index's own tests, with their own helpers, are in internal/index.

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/index"
	"github.com/erpupdate/smartsync/internal/testtree"
	"github.com/zeebo/blake3"
)

// discardLogger is the logger of tests that do not look at the log.
func discardLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// oldTime is an mtime well outside the hash cache's racy window.
var oldTime = testtree.OldTime

// writeTree is testtree.Write.
var writeTree = testtree.Write

func writeFile(t testing.TB, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// openIndex opens dir as the linux update folder with its cache in state.
func openIndex(t testing.TB, dir, state string) *index.Index {
	t.Helper()
	ix, err := index.Open(context.Background(), discardLogger(), "linux", dir, state, index.Release{Build: "7.00.240501A"})
	if err != nil {
		t.Fatalf("index.Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

// current returns the index's manifest, failing the test on error.
func current(t testing.TB, ix *index.Index) *index.Manifest {
	t.Helper()
	m, err := ix.Current(context.Background())
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	return m
}

// change runs f, which changes the folder of ix, and waits until Current
// returns a new manifest: an index need not see a change the moment it is
// made.
func change(t testing.TB, ix *index.Index, f func()) {
	t.Helper()
	before := current(t, ix)
	f()
	for deadline := time.Now().Add(5 * time.Second); current(t, ix) == before; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no manifest with the change after 5 s")
		}
	}
}

// checkManifest checks that m lists exactly files, sorted, each with the
// BLAKE3 hash and size of its content.
func checkManifest(t testing.TB, m *index.Manifest, files map[string]string) {
	t.Helper()
	if len(m.Files) != len(files) {
		t.Fatalf("manifest has %d files, want %d: %+v", len(m.Files), len(files), m.Files)
	}
	var total int64
	for i, f := range m.Files {
		if i > 0 && m.Files[i-1].Path >= f.Path {
			t.Errorf("manifest not sorted: %q before %q", m.Files[i-1].Path, f.Path)
		}
		content, ok := files[f.Path]
		if !ok {
			t.Errorf("manifest lists %q, which was not written", f.Path)
			continue
		}
		if f.Size != int64(len(content)) {
			t.Errorf("%s: size %d, want %d", f.Path, f.Size, len(content))
		}
		if want := blake3.Sum256([]byte(content)); f.Hash != want {
			t.Errorf("%s: hash %x, want %x", f.Path, f.Hash, want)
		}
		total += f.Size
	}
	if m.TotalBytes != total {
		t.Errorf("TotalBytes = %d, want %d", m.TotalBytes, total)
	}
}

// TestIndexFolderThroughSymlink shows that only links inside the folder are
// refused: administrators commonly point PathLinux at a "current" symbolic
// link that is switched between release folders, and LoadConfig accepts it.
func TestIndexFolderThroughSymlink(t *testing.T) {
	testtree.NeedSymlinks(t)
	base := t.TempDir()
	release := filepath.Join(base, "release-240501")
	files := map[string]string{
		"smartclient":            strings.Repeat("binary\x00", 5000),
		"smartclient.ini":        "[TCP]\nServer=erp\nPort=1234\n",
		"lib/liberp.so":          strings.Repeat("lib", 3000),
		"lib/plugins/report.so":  "report plugin",
		"empty":                  "",
		"docs/release notes.txt": "7.00.240501A",
	}
	writeTree(t, release, files, oldTime)
	link := filepath.Join(base, "current")
	if err := os.Symlink(release, link); err != nil {
		t.Skipf("cannot create symbolic links here: %v", err)
	}
	cfg, err := ParseConfig("AppServer.ini", []byte("[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nPathLinux="+link+"\nBuild=7.00.240501A\n"), base)
	if err != nil {
		t.Fatalf("ParseConfig refuses the folder: %v", err)
	}
	ix, err := index.Open(context.Background(), discardLogger(), "linux", cfg.Folders["linux"], t.TempDir(), index.Release{Build: "7.00.240501A"})
	if err != nil {
		t.Fatalf("index.Open refuses the folder %s -> %s: %v", link, release, err)
	}
	defer ix.Close()
	m, err := ix.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkManifest(t, m, files)
}
