package index

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/testtree"
	"github.com/erpupdate/smartsync/syncproto"
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

// openIndex opens dir as the linux update folder with its cache in state.
func openIndex(t testing.TB, dir, state string, preserve ...string) *Index {
	t.Helper()
	ix, err := Open(context.Background(), discardLogger(), "linux", dir, state, Release{Build: "7.00.240501A", Preserve: preserve})
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

// current returns the index's manifest, failing the test on error.
func current(t testing.TB, ix *Index) *Manifest {
	t.Helper()
	m, err := ix.Current(context.Background())
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	return m
}

// waitFor calls Current until it returns a manifest for which ok holds, and
// returns it: an index need not see a change the moment it is made, so the
// manifest right after a change may still be the previous one.
func waitFor(t testing.TB, ix *Index, what string, ok func(*Manifest) bool) *Manifest {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := current(t, ix)
		if ok(m) {
			return m
		}
		if time.Now().After(deadline) {
			var paths []string
			for _, f := range m.Files {
				paths = append(paths, f.Path)
			}
			t.Fatalf("no manifest with %s after 5 s; the last lists %q", what, paths)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// change runs f, which changes the folder of ix, and waits until Current
// returns a new manifest.
func change(t testing.TB, ix *Index, f func()) {
	t.Helper()
	before := current(t, ix)
	f()
	waitFor(t, ix, "the change", func(m *Manifest) bool { return m != before })
}

// waitDirty waits until the watcher has marked the index dirty.
func waitDirty(t testing.TB, ix *Index) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		ix.mu.Lock()
		dirty := ix.dirty
		ix.mu.Unlock()
		if dirty {
			return
		}
	}
	t.Fatal("the watcher did not report the change within 5 s")
}

// sameFiles reports whether m lists exactly files with their content. A
// name ending in a slash is an empty folder (see entryName).
func sameFiles(m *Manifest, files map[string]string) bool {
	if len(m.Files) != len(files) {
		return false
	}
	for _, f := range m.Files {
		content, ok := files[entryName(f)]
		if f.Dir && ok {
			continue
		}
		if !ok || f.Size != int64(len(content)) || f.Hash != blake3.Sum256([]byte(content)) {
			return false
		}
	}
	return true
}

// entryName is the name of f in a test's map of files: its path, with a
// slash after it for an empty folder.
func entryName(f File) string {
	if f.Dir {
		return f.Path + "/"
	}
	return f.Path
}

// checkManifest checks that m lists exactly files, sorted, each with the
// BLAKE3 hash and size of its content (an empty folder, named with a
// slash after it, with neither).
func checkManifest(t testing.TB, m *Manifest, files map[string]string) {
	t.Helper()
	if len(m.Files) != len(files) {
		t.Fatalf("manifest has %d files, want %d: %+v", len(m.Files), len(files), m.Files)
	}
	var total int64
	for i, f := range m.Files {
		if i > 0 && m.Files[i-1].Path >= f.Path {
			t.Errorf("manifest not sorted: %q before %q", m.Files[i-1].Path, f.Path)
		}
		content, ok := files[entryName(f)]
		if !ok {
			t.Errorf("manifest lists %q, which was not written", entryName(f))
			continue
		}
		if f.Dir {
			if f.Size != 0 || f.Hash != ([32]byte{}) {
				t.Errorf("folder %s: size %d, hash %x, want neither", f.Path, f.Size, f.Hash)
			}
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

func sampleTree() map[string]string {
	return map[string]string{
		"smartclient":            strings.Repeat("binary\x00", 5000),
		"smartclient.ini":        "[TCP]\nServer=erp\nPort=1234\n",
		"lib/liberp.so":          strings.Repeat("lib", 3000),
		"lib/plugins/report.so":  "report plugin",
		"empty":                  "",
		"docs/release notes.txt": "7.00.240501A",
	}
}

// TestIndexHashCachePersists shows that a restart does not rehash what was
// hashed before, except files modified within the racy window, whose hashes
// are used but deliberately not remembered.
func TestIndexHashCachePersists(t *testing.T) {
	tests := []struct {
		name  string
		fresh []string // files left with the mtime of their writing
	}{
		{name: "all files old", fresh: nil},
		{name: "one file just written is rehashed", fresh: []string{"lib/liberp.so"}},
		{name: "two files just written are rehashed", fresh: []string{"empty", "smartclient"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, state := t.TempDir(), t.TempDir()
			files := sampleTree()
			writeTree(t, dir, files, oldTime)
			for _, name := range tc.fresh {
				// Rewrite so that the mtime is now, inside the racy window.
				writeTree(t, dir, map[string]string{name: files[name]}, time.Time{})
			}

			ix := openIndex(t, dir, state)
			if ix.Hashed != int64(len(files)) {
				t.Errorf("first open: Hashed = %d, want %d", ix.Hashed, len(files))
			}
			first := current(t, ix)
			checkManifest(t, first, files)
			if err := ix.Close(); err != nil {
				t.Fatal(err)
			}

			ix2 := openIndex(t, dir, state)
			if ix2.Hashed != int64(len(tc.fresh)) {
				t.Errorf("second open: Hashed = %d, want %d (only the files inside the racy window)", ix2.Hashed, len(tc.fresh))
			}
			second := current(t, ix2)
			checkManifest(t, second, files)
			for i := range first.Files {
				if first.Files[i] != second.Files[i] {
					t.Errorf("entry %d differs after reopening:\n got %+v\nwant %+v", i, second.Files[i], first.Files[i])
				}
			}
		})
	}
}

// TestIndexCurrentNoticesChange shows that a change to a file is in the
// next manifests, and that the scan that finds it rehashes exactly that file.
func TestIndexCurrentNoticesChange(t *testing.T) {
	tests := []struct {
		name    string
		content string
		mtime   time.Time
	}{
		{name: "new size and mtime", content: "a much longer replacement of the report plugin", mtime: oldTime.Add(time.Minute)},
		{name: "same size, new mtime", content: "REPORT PLUGIN", mtime: oldTime.Add(time.Minute)},
		{name: "new size, same mtime", content: "report plugin v2", mtime: oldTime},
		{name: "modified just now", content: "report plugin 3", mtime: time.Time{}},
	}
	const name = "lib/plugins/report.so"
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := sampleTree()
			writeTree(t, dir, files, oldTime)
			ix := openIndex(t, dir, t.TempDir())
			before := ix.Hashed
			old := current(t, ix)
			if ix.Hashed != before {
				t.Fatalf("Current on an unchanged folder hashed %d files", ix.Hashed-before)
			}

			files[name] = tc.content
			writeTree(t, dir, map[string]string{name: tc.content}, tc.mtime)
			m := waitFor(t, ix, "the changed file", func(m *Manifest) bool { return sameFiles(m, files) })
			if got := ix.Hashed - before; got != 1 {
				t.Errorf("Current hashed %d files, want 1", got)
			}
			checkManifest(t, m, files)
			for i, f := range m.Files {
				if f.Path != name && f != old.Files[i] {
					t.Errorf("unchanged %s changed in the manifest: %+v, was %+v", f.Path, f, old.Files[i])
				}
			}
		})
	}
}

// TestIndexFolderRenamedWhileServed shows that the server does not keep
// the administrator from publishing a release the usual way, the folder
// renamed away and the new one renamed in, while it serves the current
// manifest: on Windows the index held the folder open without
// FILE_SHARE_DELETE (os.OpenRoot), and the rename failed with a sharing
// violation. A session goes on reading the old release.
//
// The release has no subfolders, and on Windows the session opens its
// file only after the rename: Windows refuses to rename a folder while a
// handle is open on anything inside it, a file being read or the watch of
// a subfolder (see watch.go), whatever its sharing mode.
func TestIndexFolderRenamedWhileServed(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "linux")
	files := map[string]string{"smartclient": "release 1", "smartclient.ini": "[TCP]\nServer=erp\n"}
	writeTree(t, dir, files, oldTime)
	ix := openIndex(t, dir, t.TempDir())
	old := current(t, ix)
	var fh *os.File
	openOld := func() {
		var err error
		if fh, err = old.Open("smartclient"); err != nil {
			t.Fatalf("opening a file of the old manifest: %v", err)
		}
	}
	if runtime.GOOS != "windows" {
		openOld()
		defer fh.Close()
	}

	next := map[string]string{"smartclient": "release 2"}
	writeTree(t, filepath.Join(base, "next"), next, oldTime)
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatalf("renaming the served update folder away: %v", err)
	}
	if err := os.Rename(filepath.Join(base, "next"), dir); err != nil {
		t.Fatalf("renaming the new release in: %v", err)
	}
	checkManifest(t, waitFor(t, ix, "the new release", func(m *Manifest) bool { return sameFiles(m, next) }), next)
	if runtime.GOOS == "windows" {
		openOld()
		defer fh.Close()
	}
	if got, err := io.ReadAll(fh); err != nil || string(got) != files["smartclient"] {
		t.Errorf("the session read %q, %v from the old release, want %q", got, err, files["smartclient"])
	}
	// The last session is done with the old manifest: its folder is
	// released (by the finalizer of its os.Root in the server), and the
	// old release can be removed.
	fh.Close()
	old.root.Close()
	if err := os.RemoveAll(dir + ".old"); err != nil {
		t.Errorf("removing the old release: %v", err)
	}
}

// indexedOnce writes sampleTree, indexes it once (so that its hash cache
// is saved) and closes the index; it returns the folders, the tree and the
// state of file name before the test changes it. skip says why the test
// cannot run here, given that state ("" when it can).
func indexedOnce(t *testing.T, name string, skip func(path string) string) (dir, state string, files map[string]string, before fs.FileInfo) {
	t.Helper()
	dir, state = t.TempDir(), t.TempDir()
	files = sampleTree()
	writeTree(t, dir, files, oldTime)
	before, err := os.Stat(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	if why := skip(filepath.Join(dir, filepath.FromSlash(name))); why != "" {
		t.Skip(why)
	}
	ix := openIndex(t, dir, state)
	current(t, ix)
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, state, files, before
}

// TestIndexReplacedFileSameSizeAndMtime shows that the inode is part of the
// cache key: a file renamed over another with the same size and mtime, as
// deployment tools do, is rehashed.
func TestIndexReplacedFileSameSizeAndMtime(t *testing.T) {
	const name = "lib/liberp.so"
	dir, state, files, oldInfo := indexedOnce(t, name, func(path string) string {
		if ino, _ := fileID(t, path); ino == 0 {
			return "no inode numbers on this platform; size and mtime key the cache alone"
		}
		return ""
	})
	target := filepath.Join(dir, filepath.FromSlash(name))

	// The replacement is written beside the folder, so that no scan can see
	// it half-written, then renamed over the original.
	replacement := strings.Repeat("LIB", 3000)
	tmp := filepath.Join(t.TempDir(), "liberp.so.new")
	if err := os.WriteFile(tmp, []byte(replacement), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, oldInfo.ModTime(), oldInfo.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, target); err != nil {
		t.Skipf("cannot rename across temporary folders here: %v", err)
	}
	files[name] = replacement
	rehashedOnce(t, dir, state, files, name, oldInfo, false)
}

// fileID is the identity the index keys its hash cache by (besides size
// and mtime), for the file at path: its inode or file index, and its
// change time.
func fileID(t *testing.T, path string) (uint64, int64) {
	t.Helper()
	r, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return statID(r, filepath.Base(path), fi)
}

// rehashedOnce checks the set-up of a test that changed file name of dir
// behind the index's back, keeping its size and mtime, and its inode when
// sameInode; files holds the new content. Then it checks that reopening
// the index rehashes that file, and only it, into the right manifest.
func rehashedOnce(t *testing.T, dir, state string, files map[string]string, name string, oldInfo fs.FileInfo, sameInode bool) {
	t.Helper()
	path := filepath.Join(dir, filepath.FromSlash(name))
	newInfo, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if newInfo.Size() != oldInfo.Size() || !newInfo.ModTime().Equal(oldInfo.ModTime()) {
		t.Fatalf("test setup: changed file has size %d mtime %v; original %d %v", newInfo.Size(), newInfo.ModTime(), oldInfo.Size(), oldInfo.ModTime())
	}
	// Where a FileInfo carries the inode (Unix), the set-up is checked:
	// a rename gives another, a rewrite in place keeps it.
	if inode(oldInfo) != 0 && (inode(newInfo) == inode(oldInfo)) != sameInode {
		t.Fatalf("test setup: changed file has inode %d, original %d; same inode wanted: %v", inode(newInfo), inode(oldInfo), sameInode)
	}
	ix2 := openIndex(t, dir, state)
	if ix2.Hashed != 1 {
		t.Errorf("reopening hashed %d files, want 1 (the changed file)", ix2.Hashed)
	}
	checkManifest(t, current(t, ix2), files)
}

// TestIndexRewrittenInPlace shows that a file rewritten in place while the
// server was down, with the same size and its mtime put back, is rehashed:
// its inode is the same, but its change time moved.
func TestIndexRewrittenInPlace(t *testing.T) {
	const name = "lib/liberp.so"
	dir, state, files, oldInfo := indexedOnce(t, name, func(path string) string {
		if _, ctime := fileID(t, path); ctime == 0 {
			return "change times are not read on this platform; size, mtime and inode key the cache"
		}
		return ""
	})
	target := filepath.Join(dir, filepath.FromSlash(name))

	// The change time has a granularity of its own: the rewrite must
	// come after it moves on.
	time.Sleep(20 * time.Millisecond)
	rewritten := strings.Repeat("NEW", len(files[name])/3) + files[name][:len(files[name])%3]
	f, err := os.OpenFile(target, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(rewritten), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(target, oldInfo.ModTime(), oldInfo.ModTime()); err != nil {
		t.Fatal(err)
	}
	files[name] = rewritten
	rehashedOnce(t, dir, state, files, name, oldInfo, true)
}

// TestIndexIgnoresBadCache shows that a cache that cannot be trusted costs a
// rehash, never an error or a wrong hash.
func TestIndexIgnoresBadCache(t *testing.T) {
	files := sampleTree()
	tests := []struct {
		name string
		// spoil damages the cache written for dir, and returns the folder
		// to open next.
		spoil      func(t *testing.T, cache, dir string) string
		wantHashed int64
	}{
		{
			name: "garbage",
			spoil: func(t *testing.T, cache, dir string) string {
				writeFile(t, cache, "\x00\x01 this is not JSON {{{")
				return dir
			},
			wantHashed: int64(len(files)),
		},
		{
			name: "truncated",
			spoil: func(t *testing.T, cache, dir string) string {
				data, err := os.ReadFile(cache)
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, cache, string(data[:len(data)/2]))
				return dir
			},
			wantHashed: int64(len(files)),
		},
		{
			name: "JSON of another shape",
			spoil: func(t *testing.T, cache, dir string) string {
				writeFile(t, cache, `[1, 2, 3]`)
				return dir
			},
			wantHashed: int64(len(files)),
		},
		{
			name: "another version",
			spoil: func(t *testing.T, cache, dir string) string {
				data, err := os.ReadFile(cache)
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, cache, strings.Replace(string(data), fmt.Sprintf(`"version":%d`, cacheVersion), `"version":99`, 1))
				return dir
			},
			wantHashed: int64(len(files)),
		},
		{
			name: "hash that is not hex",
			spoil: func(t *testing.T, cache, dir string) string {
				data, err := os.ReadFile(cache)
				if err != nil {
					t.Fatal(err)
				}
				h := blake3.Sum256([]byte(files["smartclient.ini"]))
				s := strings.Replace(string(data), hex.EncodeToString(h[:]), strings.Repeat("zz", 32), 1)
				if s == string(data) {
					t.Fatal("test setup: hash of smartclient.ini not found in the cache")
				}
				writeFile(t, cache, s)
				return dir
			},
			wantHashed: 1,
		},
		{
			name: "cache of another folder",
			spoil: func(t *testing.T, cache, dir string) string {
				// A moved folder keeps names, sizes, mtimes and inodes,
				// so only the folder recorded in the cache tells.
				moved := filepath.Join(filepath.Dir(dir), "moved")
				if err := os.Rename(dir, moved); err != nil {
					t.Fatal(err)
				}
				return moved
			},
			wantHashed: int64(len(files)),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "linux")
			state := t.TempDir()
			writeTree(t, dir, files, oldTime)
			ix := openIndex(t, dir, state)
			cache := ix.cache
			if err := ix.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(cache); err != nil {
				t.Fatalf("no cache written: %v", err)
			}
			dir = tc.spoil(t, cache, dir)

			ix2 := openIndex(t, dir, state)
			if ix2.Hashed != tc.wantHashed {
				t.Errorf("Hashed = %d, want %d", ix2.Hashed, tc.wantHashed)
			}
			checkManifest(t, current(t, ix2), files)
			if err := ix2.Close(); err != nil {
				t.Fatal(err)
			}

			// The damaged cache was replaced by a good one.
			ix3 := openIndex(t, dir, state)
			if ix3.Hashed != 0 {
				t.Errorf("after the cache was rewritten: Hashed = %d, want 0", ix3.Hashed)
			}
		})
	}
}

func writeFile(t testing.TB, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestIndexPreserve shows that Preserve matches manifest paths
// case-insensitively, as Windows clients see them, and whole paths only.
func TestIndexPreserve(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"smartclient.ini":      "a",
		"conf/App.INI":         "b",
		"other.ini":            "c",
		"sub/smartclient.ini":  "d",
		"smartclient.ini.bak":  "e",
		"conf/app.ini.example": "f",
	}, oldTime)
	ix := openIndex(t, dir, t.TempDir(), "SmartClient.INI", "conf/app.ini")
	want := map[string]bool{
		"smartclient.ini":      true,
		"conf/App.INI":         true,
		"other.ini":            false,
		"sub/smartclient.ini":  false,
		"smartclient.ini.bak":  false,
		"conf/app.ini.example": false,
	}
	m := current(t, ix)
	if len(m.Files) != len(want) {
		t.Fatalf("manifest has %d files, want %d", len(m.Files), len(want))
	}
	for _, f := range m.Files {
		t.Run(f.Path, func(t *testing.T) {
			if f.Preserve != want[f.Path] {
				t.Errorf("Preserve = %v, want %v", f.Preserve, want[f.Path])
			}
		})
	}
}

// TestIndexSymlinks shows that a relative symbolic link that resolves
// inside the update folder is indexed as a link (macOS bundles hold them
// in their frameworks), and that any other link stops Open with an
// error naming it: following it could serve files from outside the folder.
func TestIndexSymlinks(t *testing.T) {
	testtree.NeedSymlinks(t)
	tests := []struct {
		name   string
		link   string // slash path inside the folder
		target string
		ok     bool
	}{
		{name: "to a file", link: "smartclient.lnk", target: "smartclient", ok: true},
		{name: "to a folder", link: "libs", target: "lib", ok: true},
		{name: "up and back in", link: "lib/plugins/core", target: "../../smartclient", ok: true},
		{name: "absolute", link: "lib/passwd", target: "/etc/passwd"},
		{name: "outside by ..", link: "lib/up", target: "../../x"},
		{name: "dangling", link: "lib/plugins/gone.so", target: "nowhere.so"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, sampleTree(), oldTime)
			link := filepath.Join(dir, filepath.FromSlash(tc.link))
			if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(tc.target, link); err != nil {
				t.Skipf("cannot create symbolic links here: %v", err)
			}
			ix, err := Open(context.Background(), discardLogger(), "linux", dir, t.TempDir(), Release{Build: "7.00.240501A"})
			if !tc.ok {
				if err == nil {
					ix.Close()
					t.Fatal("Open accepted a link that does not resolve inside the folder")
				}
				if !strings.Contains(err.Error(), link) || !strings.Contains(err.Error(), "symbolic link") {
					t.Errorf("error %q does not name the link %s and the problem", err, link)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ix.Close()
			m, _ := ix.Current(context.Background())
			i := slices.IndexFunc(m.Files, func(f File) bool { return f.Path == tc.link })
			if i < 0 {
				t.Fatalf("link %s not in the manifest", tc.link)
			}
			if f := m.Files[i]; f.Target != tc.target || f.Size != int64(len(tc.target)) || f.Hash != blake3.Sum256([]byte(tc.target)) {
				t.Errorf("link entry %+v", f)
			}
		})
	}
}

// TestIndexConcurrentCurrent shows that sessions may ask for the manifest
// at the same time (run with -race): each gets the current manifest, and a
// changed file is hashed once.
func TestIndexConcurrentCurrent(t *testing.T) {
	dir := t.TempDir()
	files := sampleTree()
	writeTree(t, dir, files, oldTime)
	ix := openIndex(t, dir, t.TempDir())
	settle(t, ix)
	before := ix.Hashed
	files["smartclient"] = strings.Repeat("new binary", 4000)
	writeTree(t, dir, map[string]string{"smartclient": files["smartclient"]}, oldTime.Add(time.Minute))
	// The callers below must all find the folder changed.
	waitDirty(t, ix)

	const n = 16
	results := make(chan *Manifest, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			m, err := ix.Current(context.Background())
			results <- m
			errs <- err
		}()
	}
	for range n {
		m, err := <-results, <-errs
		if err != nil {
			t.Fatal(err)
		}
		checkManifest(t, m, files)
	}
	if got := ix.Hashed - before; got != 1 {
		t.Errorf("%d concurrent Current calls hashed %d files, want 1", n, got)
	}
}

// TestIndexEmptyFolders shows that a folder holding nothing is listed as a
// folder entry (macOS bundles hold such folders), and only the innermost
// of nested empty folders; that the hash cache keeps no entry for one, so
// that a restart reads it back as it was; and that a folder that gains a
// file is no longer listed, its file is.
func TestIndexEmptyFolders(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	files := sampleTree()
	writeTree(t, dir, files, oldTime)
	empty := []string{"TOTVS.app/Contents/Frameworks", "Resources/empty/inner"}
	for _, e := range empty {
		if err := os.MkdirAll(filepath.Join(dir, filepath.FromSlash(e)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	folders := func(m *Manifest) []string {
		var out []string
		for _, f := range m.Files {
			if f.Dir {
				out = append(out, f.Path)
			}
		}
		return out
	}
	ix := openIndex(t, dir, state)
	m := current(t, ix)
	if got, want := folders(m), []string{"Resources/empty/inner", "TOTVS.app/Contents/Frameworks"}; !slices.Equal(got, want) {
		t.Fatalf("folder entries %q, want %q", got, want)
	}
	if len(m.Files) != len(files)+len(empty) {
		t.Errorf("manifest has %d entries, want %d files and %d folders", len(m.Files), len(files), len(empty))
	}
	for i, f := range m.Files {
		if i > 0 && m.Files[i-1].Path >= f.Path {
			t.Errorf("manifest not sorted: %q before %q", m.Files[i-1].Path, f.Path)
		}
		if !f.Dir {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f.Path)))
		if err != nil {
			t.Fatal(err)
		}
		if f.Size != 0 || f.MtimeNs != 0 || f.Hash != ([32]byte{}) || f.Target != "" || f.Preserve || f.Mode != fi.Mode().Perm() {
			t.Errorf("folder entry %+v, want only its mode %v", f, fi.Mode().Perm())
		}
		e, err := syncproto.Decode(syncproto.MsgManifestEntry, m.Wire().Entry(i)[syncproto.HeaderSize:])
		if err != nil {
			t.Fatal(err)
		}
		if e := e.(syncproto.ManifestEntry); e.Flags != syncproto.FlagDir || e.Path != f.Path {
			t.Errorf("wire entry %+v, want %s with FlagDir alone", e, f.Path)
		}
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(ix.cache)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range empty {
		if strings.Contains(string(data), e) {
			t.Errorf("the hash cache names the folder %s: %s", e, data)
		}
	}

	ix2 := openIndex(t, dir, state)
	if ix2.Hashed != 0 {
		t.Errorf("reopened: Hashed = %d, want 0", ix2.Hashed)
	}
	if m2 := current(t, ix2); !slices.Equal(m2.Files, m.Files) {
		t.Errorf("reopened: manifest\n%+v\nwant\n%+v", m2.Files, m.Files)
	}
	change(t, ix2, func() {
		writeFile(t, filepath.Join(dir, "TOTVS.app", "Contents", "Frameworks", "Core"), "core")
	})
	m3 := waitFor(t, ix2, "the new file", func(m *Manifest) bool {
		return slices.ContainsFunc(m.Files, func(f File) bool { return f.Path == "TOTVS.app/Contents/Frameworks/Core" })
	})
	if got, want := folders(m3), []string{"Resources/empty/inner"}; !slices.Equal(got, want) {
		t.Errorf("after a file was added: folder entries %q, want %q", got, want)
	}
}
