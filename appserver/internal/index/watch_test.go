package index

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/testtree"
	"github.com/fsnotify/fsnotify"
)

// wineKeepsRemovedFolders is why a test that removes a folder the index
// watches is skipped under Wine. Wine 8 refuses
// FILE_DISPOSITION_POSIX_SEMANTICS (STATUS_INVALID_PARAMETER), so
// os.RemoveAll falls back to delete-on-close, and a removed folder on which
// the watch holds a handle stays, marked for deletion, with its parent not
// empty; nor does Wine end the watch's pending ReadDirectoryChangesW when
// the folder is marked for deletion, as Windows does, so the handle is not
// closed. Windows 10 on NTFS takes the name away at once.
const wineKeepsRemovedFolders = "a folder removed while a watch holds a handle on it stays until the handle is closed " +
	"(no FILE_DISPOSITION_POSIX_SEMANTICS: STATUS_INVALID_PARAMETER), so its parent cannot be removed"

// scans returns how many scans ix made.
func scans(ix *Index) int64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.Scans
}

// settle calls Current until it has made no scan for 100 ms, so that the
// index is quiet: a scan that added watches is followed by one more, and
// the events of a change may come a moment apart.
func settle(t testing.TB, ix *Index) {
	t.Helper()
	n, quiet := scans(ix), time.Now()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		current(t, ix)
		if m := scans(ix); m != n {
			n, quiet = m, time.Now()
		} else if time.Since(quiet) >= 100*time.Millisecond {
			return
		}
	}
	t.Fatalf("Current still scans after 5 s on a folder nobody changes")
}

// checkQuiet checks that Current does not scan the unchanged folder.
func checkQuiet(t testing.TB, ix *Index) {
	t.Helper()
	n := scans(ix)
	for range 20 {
		current(t, ix)
	}
	if got := scans(ix) - n; got != 0 {
		t.Errorf("20 calls of Current on an unchanged watched folder made %d scans, want 0", got)
	}
}

// watchedDirs returns the folders ix watches, by slash path, sorted.
func watchedDirs(ix *Index) []string {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return slices.Sorted(maps.Keys(ix.watched))
}

// TestWatchUnchangedFolderIsNotRescanned shows that once the folder is
// watched, Current hands out the manifest without scanning, also while
// sessions read the files it lists.
func TestWatchUnchangedFolderIsNotRescanned(t *testing.T) {
	dir := t.TempDir()
	files := sampleTree()
	writeTree(t, dir, files, oldTime)
	ix := openIndex(t, dir, t.TempDir())
	settle(t, ix)
	want := []string{".", "docs", "lib", "lib/plugins"}
	if got := watchedDirs(ix); !slices.Equal(got, want) {
		t.Errorf("watched folders %q, want %q", got, want)
	}

	m := current(t, ix)
	for _, f := range m.Files {
		fh, err := m.Open(filepath.FromSlash(f.Path))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, fh); err != nil {
			t.Fatal(err)
		}
		fh.Close()
	}
	checkQuiet(t, ix)
	if got := current(t, ix); got != m {
		t.Error("Current made a new manifest for an unchanged folder")
	}
	checkManifest(t, m, files)
}

// TestWatchFolderIdentity shows that the scan records each folder with
// an identity that os.SameFile matches against a stat of the folder, as
// rewatch needs: otherwise every scan takes every subfolder for a new one,
// watches it anew and so asks for one more scan, for ever. On Windows an
// entry of a folder listing carries no file ID where the volume has no
// object IDs (FAT, exFAT, and every drive under Wine), which is what the
// scan used to record.
func TestWatchFolderIdentity(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, sampleTree(), oldTime)
	ix := openIndex(t, dir, t.TempDir())
	m, _, dirs, err := ix.scan(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.root.Close()
	want := []string{".", "docs", "lib", "lib/plugins"}
	if got := slices.Sorted(maps.Keys(dirs)); !slices.Equal(got, want) {
		t.Fatalf("the scan found folders %q, want %q", got, want)
	}
	for rel, fi := range dirs {
		st, err := os.Stat(ix.abs(rel))
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(fi, st) {
			t.Errorf("folder %q: the scan's FileInfo is not os.SameFile with a stat of it; each scan would watch it anew", rel)
		}
	}
}

// TestWatchSeesChanges shows that each kind of change an administrator
// makes inside the folder is in a manifest soon after, and that the index
// is quiet again afterwards.
func TestWatchSeesChanges(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, dir string, files map[string]string)
	}{
		{"file written", func(t *testing.T, dir string, files map[string]string) {
			files["lib/liberp.so"] = "a new library"
			writeTree(t, dir, map[string]string{"lib/liberp.so": files["lib/liberp.so"]}, oldTime.Add(time.Minute))
		}},
		{"file added", func(t *testing.T, dir string, files map[string]string) {
			files["lib/plugins/chart.so"] = "chart"
			writeTree(t, dir, map[string]string{"lib/plugins/chart.so": "chart"}, time.Time{})
		}},
		{"file removed", func(t *testing.T, dir string, files map[string]string) {
			delete(files, "lib/plugins/report.so")
			files["lib/plugins/"] = "" // now an empty folder
			mustDo(t, os.Remove(filepath.Join(dir, "lib", "plugins", "report.so")))
		}},
		{"file renamed", func(t *testing.T, dir string, files map[string]string) {
			files["docs/notes.txt"] = files["docs/release notes.txt"]
			delete(files, "docs/release notes.txt")
			mustDo(t, os.Rename(filepath.Join(dir, "docs", "release notes.txt"), filepath.Join(dir, "docs", "notes.txt")))
		}},
		{"file moved to another folder", func(t *testing.T, dir string, files map[string]string) {
			files["docs/report.so"] = files["lib/plugins/report.so"]
			delete(files, "lib/plugins/report.so")
			files["lib/plugins/"] = "" // now an empty folder
			mustDo(t, os.Rename(filepath.Join(dir, "lib", "plugins", "report.so"), filepath.Join(dir, "docs", "report.so")))
		}},
		{"file renamed over another", func(t *testing.T, dir string, files map[string]string) {
			tmp := filepath.Join(dir, "lib", ".liberp.so.tmp")
			writeFile(t, tmp, "replacement")
			mustDo(t, os.Rename(tmp, filepath.Join(dir, "lib", "liberp.so")))
			files["lib/liberp.so"] = "replacement"
		}},
		{"new subfolders with a file", func(t *testing.T, dir string, files map[string]string) {
			files["plugins/chart/v2/chart.so"] = "chart"
			writeTree(t, dir, map[string]string{"plugins/chart/v2/chart.so": "chart"}, time.Time{})
		}},
		{"subfolder removed", func(t *testing.T, dir string, files map[string]string) {
			delete(files, "lib/liberp.so")
			delete(files, "lib/plugins/report.so")
			mustDo(t, os.RemoveAll(filepath.Join(dir, "lib")))
		}},
		{"subfolder renamed", func(t *testing.T, dir string, files map[string]string) {
			for _, name := range []string{"lib/liberp.so", "lib/plugins/report.so"} {
				files["lib64"+strings.TrimPrefix(name, "lib")] = files[name]
				delete(files, name)
			}
			mustDo(t, os.Rename(filepath.Join(dir, "lib"), filepath.Join(dir, "lib64")))
		}},
		{"subfolder replaced by another", func(t *testing.T, dir string, files map[string]string) {
			next := filepath.Join(dir, "lib.next")
			writeTree(t, next, map[string]string{"liberp.so": "lib 2", "plugins/report.so": "report 2"}, oldTime)
			mustDo(t, os.Rename(filepath.Join(dir, "lib"), filepath.Join(dir, "lib.old")))
			mustDo(t, os.Rename(next, filepath.Join(dir, "lib")))
			mustDo(t, os.RemoveAll(filepath.Join(dir, "lib.old")))
			files["lib/liberp.so"], files["lib/plugins/report.so"] = "lib 2", "report 2"
		}},
	}
	removesWatched := map[string]bool{"subfolder removed": true, "subfolder replaced by another": true}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if removesWatched[tc.name] {
				testtree.SkipUnderWine(t, wineKeepsRemovedFolders)
			}
			dir := t.TempDir()
			files := sampleTree()
			writeTree(t, dir, files, oldTime)
			ix := openIndex(t, dir, t.TempDir())
			settle(t, ix)

			tc.change(t, dir, files)
			checkManifest(t, waitFor(t, ix, "the change", func(m *Manifest) bool { return sameFiles(m, files) }), files)
			settle(t, ix)
			checkQuiet(t, ix)

			// The folders as they are now are watched: a second change
			// anywhere is seen too.
			for rel := range files {
				if strings.HasSuffix(rel, "/") {
					continue // an empty folder stays one
				}
				files[rel] += " again"
				writeTree(t, dir, map[string]string{rel: files[rel]}, time.Time{})
			}
			checkManifest(t, waitFor(t, ix, "the second change", func(m *Manifest) bool { return sameFiles(m, files) }), files)
		})
	}
}

func mustDo(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestWatchFileInNewSubfolderAfterScan shows that a file created in a new
// subfolder between the scan that found the folder and the watch on it,
// which no event reports, is still in the next manifest.
func TestWatchFileInNewSubfolderAfterScan(t *testing.T) {
	dir := t.TempDir()
	files := sampleTree()
	writeTree(t, dir, files, oldTime)
	ix := openIndex(t, dir, t.TempDir())
	settle(t, ix)

	t.Run("right after the scan", func(t *testing.T) {
		for i := range 10 {
			sub := "new" + string(rune('a'+i))
			files[sub+"/first"] = "first"
			writeTree(t, dir, map[string]string{sub + "/first": "first"}, time.Time{})
			waitFor(t, ix, sub+"/first", func(m *Manifest) bool { return sameFiles(m, files) })
			files[sub+"/second"] = "second"
			writeTree(t, dir, map[string]string{sub + "/second": "second"}, time.Time{})
			waitFor(t, ix, sub+"/second", func(m *Manifest) bool { return sameFiles(m, files) })
		}
	})

	t.Run("before the watch is added", func(t *testing.T) {
		settle(t, ix)
		// The file is created after the scan listed the new folder and
		// before its watch exists: only the rescan that adding a
		// watch asks for can find it.
		created := false
		ix.afterScan = func() {
			if _, err := os.Stat(filepath.Join(dir, "late")); err == nil && !created {
				created = true
				writeFile(t, filepath.Join(dir, "late", "second"), "second")
			}
		}
		defer func() { ix.afterScan = nil }()
		files["late/first"] = "first"
		writeTree(t, dir, map[string]string{"late/first": "first"}, time.Time{})
		files["late/second"] = "second"
		checkManifest(t, waitFor(t, ix, "late/second", func(m *Manifest) bool { return sameFiles(m, files) }), files)
		if !created {
			t.Fatal("test setup: the file was not created after the scan")
		}
	})
	settle(t, ix)
	checkQuiet(t, ix)
}

// TestWatchChangeDuringScan shows that a change made while a scan runs,
// which the scan may have missed, makes the next Current scan again.
func TestWatchChangeDuringScan(t *testing.T) {
	dir := t.TempDir()
	files := sampleTree()
	writeTree(t, dir, files, oldTime)
	ix := openIndex(t, dir, t.TempDir())
	settle(t, ix)

	done := false
	ix.afterScan = func() {
		if done {
			return
		}
		done = true
		// The scan has listed the folder: this change comes too late
		// for it, and only its event tells.
		files["lib/liberp.so"] = "changed during the scan"
		writeTree(t, dir, map[string]string{"lib/liberp.so": files["lib/liberp.so"]}, time.Time{})
		// Its event is handled before the scan ends, so that an index
		// that forgot events once its scan ends would miss it.
		waitDirty(t, ix)
		time.Sleep(50 * time.Millisecond)
	}
	files["smartclient.ini"] = "[TCP]\nServer=erp2\n"
	writeTree(t, dir, map[string]string{"smartclient.ini": files["smartclient.ini"]}, time.Time{})
	checkManifest(t, waitFor(t, ix, "both changes", func(m *Manifest) bool { return sameFiles(m, files) }), files)
	if !done {
		t.Fatal("test setup: no scan after the first change")
	}
}

// TestWatchFolderReplaced shows the usual ways to publish a release, where
// the path of the update folder names a new folder: the new release is in
// a manifest soon after, its tree is watched, and the old one is not.
func TestWatchFolderReplaced(t *testing.T) {
	release2 := map[string]string{
		"smartclient":       "release 2",
		"lib/liberp.so":     "lib 2",
		"lib/new/plugin.so": "new plugin",
		"share/data.bin":    "data",
	}
	tests := []struct {
		name string
		// setup makes the folder to index, and returns its path.
		setup func(t *testing.T, base string) string
		// replace puts the release in next at the folder's path and
		// returns where the old release is now.
		replace func(t *testing.T, base, folder, next string) string
	}{
		{
			name:  "old renamed away, new renamed in",
			setup: func(t *testing.T, base string) string { return filepath.Join(base, "linux") },
			replace: func(t *testing.T, base, folder, next string) string {
				mustDo(t, os.Rename(folder, folder+".old"))
				mustDo(t, os.Rename(next, folder))
				return folder + ".old"
			},
		},
		{
			name:  "old removed, new renamed in",
			setup: func(t *testing.T, base string) string { return filepath.Join(base, "linux") },
			replace: func(t *testing.T, base, folder, next string) string {
				testtree.SkipUnderWine(t, wineKeepsRemovedFolders)
				mustDo(t, os.RemoveAll(folder))
				mustDo(t, os.Rename(next, folder))
				return ""
			},
		},
		{
			name: "parent folder replaced",
			setup: func(t *testing.T, base string) string {
				return filepath.Join(base, "erp", "linux")
			},
			replace: func(t *testing.T, base, folder, next string) string {
				parent := filepath.Join(base, "erp.next")
				mustDo(t, os.MkdirAll(parent, 0o755))
				mustDo(t, os.Rename(next, filepath.Join(parent, "linux")))
				mustDo(t, os.Rename(filepath.Join(base, "erp"), filepath.Join(base, "erp.old")))
				mustDo(t, os.Rename(parent, filepath.Join(base, "erp")))
				return filepath.Join(base, "erp.old", "linux")
			},
		},
		{
			name: "symbolic link switched",
			setup: func(t *testing.T, base string) string {
				testtree.NeedSymlinks(t)
				link := filepath.Join(base, "current")
				mustDo(t, os.Symlink("release1", link))
				return link
			},
			replace: func(t *testing.T, base, folder, next string) string {
				mustDo(t, os.Rename(next, filepath.Join(base, "release2")))
				tmp := filepath.Join(base, "current.tmp")
				mustDo(t, os.Symlink("release2", tmp))
				mustDo(t, os.Rename(tmp, folder)) // as ln -sfn does
				return filepath.Join(base, "release1")
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			folder := tc.setup(t, base)
			files := sampleTree()
			if target, err := os.Readlink(folder); err == nil {
				writeTree(t, filepath.Join(base, target), files, oldTime)
			} else {
				writeTree(t, folder, files, oldTime)
			}
			next := filepath.Join(base, "next")
			writeTree(t, next, release2, oldTime)
			ix := openIndex(t, folder, t.TempDir())
			settle(t, ix)
			// The last session is done with the old release at the end:
			// its folder is released (by the finalizer of its os.Root in
			// the server), and the old release can be removed.
			prev := current(t, ix)
			t.Cleanup(func() { prev.root.Close() })

			old := tc.replace(t, base, folder, next)
			files = maps.Clone(release2)
			checkManifest(t, waitFor(t, ix, "the new release", func(m *Manifest) bool { return sameFiles(m, files) }), files)
			settle(t, ix)
			checkQuiet(t, ix)

			// The new tree is watched.
			files["lib/new/plugin.so"] = "new plugin, fixed"
			writeTree(t, folder, map[string]string{"lib/new/plugin.so": files["lib/new/plugin.so"]}, time.Time{})
			checkManifest(t, waitFor(t, ix, "a change in the new release", func(m *Manifest) bool { return sameFiles(m, files) }), files)
			settle(t, ix)

			// The old tree is not: changing it costs no scan.
			if old == "" {
				return
			}
			// A stray late event of the change above may cost one scan;
			// a watch left on the old tree costs one every time.
			for i := range 3 {
				settle(t, ix)
				n := scans(ix)
				writeTree(t, old, map[string]string{"lib/plugins/report.so": "changed", "lib/x": "x", "y": "y"}, time.Time{})
				time.Sleep(100 * time.Millisecond) // a watch on the old tree would have reported by then
				for range 20 {
					current(t, ix)
				}
				if scans(ix) == n {
					break
				}
				if i == 2 {
					t.Errorf("each change to the old tree costs a scan: it is still watched")
				}
			}
		})
	}
}

// TestWatchNewWatcher runs the tests of changed and replaced folders the
// way the index works where fsnotify cannot remove a watch by its path (on
// Windows): each folder gone or replaced costs a new watcher. Elsewhere it
// shows that way works too, under the race detector.
func TestWatchNewWatcher(t *testing.T) {
	defer func(v bool) { removeByPath = v }(removeByPath)
	removeByPath = false
	t.Run("SeesChanges", TestWatchSeesChanges)
	t.Run("FolderReplaced", TestWatchFolderReplaced)
}

// TestWatchNewWatcherWhileClosing shows that a scan that makes a new
// watcher while the index is being closed leaves no watcher running.
func TestWatchNewWatcherWhileClosing(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, sampleTree(), oldTime)
	for range 20 {
		ix, err := Open(context.Background(), discardLogger(), "linux", dir, t.TempDir(), Release{Build: "7.00.240501A"})
		if err != nil {
			t.Fatal(err)
		}
		ix.mu.Lock()
		first := ix.watchDone
		ix.mu.Unlock()
		renewed := make(chan struct{})
		go func() {
			defer close(renewed)
			ix.renewWatcher() // as the running scan does
		}()
		ix.Close()
		<-renewed
		ix.mu.Lock()
		last := ix.watchDone
		ix.mu.Unlock()
		for _, done := range []chan struct{}{first, last} {
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("a watcher's goroutine still runs after Close and a new watcher")
			}
		}
	}
}

// TestWatchErrorsMarkDirty shows that an error of the watcher, such as the
// overflow of its queue that loses events, makes the next Current scan.
func TestWatchErrorsMarkDirty(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, sampleTree(), oldTime)
	ix := openIndex(t, dir, t.TempDir())
	settle(t, ix)
	ix.w.Errors <- fsnotify.ErrEventOverflow
	waitDirty(t, ix)
	n := scans(ix)
	current(t, ix)
	if got := scans(ix) - n; got != 1 {
		t.Errorf("Current after an overflow made %d scans, want 1", got)
	}
	checkQuiet(t, ix)
}

// wineSubtreeNoAttributes is why a change of attributes in a subfolder
// is not tested under Wine: Wine 8 reports a change of attributes (of a
// SetFileTime too) to a ReadDirectoryChangesW with bWatchSubtree for the
// folder's own files only, not for those of its subfolders, though it
// reports their names there. Windows reports the whole tree.
const wineSubtreeNoAttributes = "a ReadDirectoryChangesW with bWatchSubtree gets no FILE_NOTIFY_CHANGE_ATTRIBUTES " +
	"for a file in a subfolder (nor one for a SetFileTime, which Wine reports there and not under _LAST_WRITE)"

// TestWatchSeesMetadataChanges shows that a change of a file's mtime
// alone, or of its mode alone, reaches the manifest, in a subfolder too:
// an administrator who copies a release with its times kept, or makes a
// program executable, changes nothing else. On Linux both come as inotify
// IN_ATTRIB (fsnotify's Chmod). On Windows the mode is the read-only
// attribute, which fsnotify's watches do not report (they ask for no
// FILE_NOTIFY_CHANGE_ATTRIBUTES): the attrWatch does. Windows reports an
// mtime set under FILE_NOTIFY_CHANGE_LAST_WRITE, which fsnotify asks for;
// Wine under FILE_NOTIFY_CHANGE_ATTRIBUTES, which the attrWatch asks for.
func TestWatchSeesMetadataChanges(t *testing.T) {
	when := oldTime.Add(time.Hour)
	// The mode Windows has is the read-only attribute.
	mode := fs.FileMode(0o755)
	if runtime.GOOS == "windows" {
		mode = 0o444
	}
	tests := []struct {
		name   string
		change func(p string) error
		seen   func(f File) bool
	}{
		{"mtime only", func(p string) error { return os.Chtimes(p, when, when) },
			func(f File) bool { return f.MtimeNs == when.UnixNano() }},
		{"mode only", func(p string) error { return os.Chmod(p, mode) },
			func(f File) bool { return f.Mode == mode }},
	}
	for _, tc := range tests {
		for _, rel := range []string{"smartclient", "lib/plugins/report.so"} {
			t.Run(tc.name+" of "+rel, func(t *testing.T) {
				if strings.Contains(rel, "/") {
					testtree.SkipUnderWine(t, wineSubtreeNoAttributes)
				}
				dir := t.TempDir()
				writeTree(t, dir, sampleTree(), oldTime)
				ix := openIndex(t, dir, t.TempDir())
				settle(t, ix)
				p := filepath.Join(dir, filepath.FromSlash(rel))
				mustDo(t, tc.change(p))
				t.Cleanup(func() { os.Chmod(p, 0o644) }) // so that TempDir can remove it
				waitFor(t, ix, "the change", func(m *Manifest) bool {
					f, ok := fileOf(m, rel)
					return ok && tc.seen(f)
				})
				settle(t, ix)
				checkQuiet(t, ix)
			})
		}
	}
}

// TestWatchAttributesOfReplacedFolder shows that once the update folder is
// replaced, a change of mode alone in the new folder is seen, and that
// nothing of the index is left on the old folder, which can be removed for
// good. On Windows the watch of attributes (see attrWatch) is on the folder
// itself, so it has to follow. The folder has no subfolders: Windows
// refuses to rename a folder with a watched subfolder (see watch.go).
func TestWatchAttributesOfReplacedFolder(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "linux")
	writeTree(t, dir, map[string]string{"smartclient": "release 1"}, oldTime)
	ix := openIndex(t, dir, t.TempDir())
	settle(t, ix)
	old := current(t, ix)
	next := map[string]string{"smartclient": "release 2"}
	writeTree(t, filepath.Join(base, "next"), next, oldTime)
	mustDo(t, os.Rename(dir, dir+".old"))
	mustDo(t, os.Rename(filepath.Join(base, "next"), dir))
	waitFor(t, ix, "the new release", func(m *Manifest) bool { return sameFiles(m, next) })
	settle(t, ix)

	mode := fs.FileMode(0o755)
	if runtime.GOOS == "windows" {
		mode = 0o444 // the read-only attribute
	}
	p := filepath.Join(dir, "smartclient")
	mustDo(t, os.Chmod(p, mode))
	t.Cleanup(func() { os.Chmod(p, 0o644) })
	waitFor(t, ix, "the new mode", func(m *Manifest) bool {
		f, ok := fileOf(m, "smartclient")
		return ok && f.Mode == mode
	})

	// What the server releases once no session uses the old manifest.
	old.root.Close()
	mustDo(t, os.RemoveAll(dir+".old"))
	if _, err := os.Lstat(dir + ".old"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the old folder is still there after its removal (a handle left open on it?): %v", err)
	}
}

// fileOf returns the entry of m for the slash path rel.
func fileOf(m *Manifest, rel string) (File, bool) {
	for _, f := range m.Files {
		if f.Path == rel {
			return f, true
		}
	}
	return File{}, false
}

// TestWatchMaxAge shows that a quiet watch is not trusted forever.
func TestWatchMaxAge(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, sampleTree(), oldTime)
	ix := openIndex(t, dir, t.TempDir())
	settle(t, ix)
	ix.mu.Lock()
	ix.scannedAt = ix.scannedAt.Add(-maxScanAge)
	ix.mu.Unlock()
	n := scans(ix)
	current(t, ix)
	if got := scans(ix) - n; got != 1 {
		t.Errorf("Current after %v without a scan made %d scans, want 1", maxScanAge, got)
	}
	checkQuiet(t, ix)
}

// TestWatchFallback shows that an index that cannot watch its folder says
// so once, with the reason, and scans before every manifest, as it did
// before it watched; its manifests stay correct.
func TestWatchFallback(t *testing.T) {
	tests := []struct {
		name   string
		reason string
		open   func(t *testing.T, log *slog.Logger, dir string) *Index
	}{
		{
			name:   "no watcher",
			reason: "too many open files",
			open: func(t *testing.T, log *slog.Logger, dir string) *Index {
				ix, err := openWith(context.Background(), log, "linux", dir, t.TempDir(), Release{Build: "7.00.240501A"},
					func() (*fsnotify.Watcher, error) { return nil, errors.New("inotify_init1: too many open files") })
				if err != nil {
					t.Fatal(err)
				}
				return ix
			},
		},
		{
			name:   "watch failed later",
			reason: "no space left on device",
			open: func(t *testing.T, log *slog.Logger, dir string) *Index {
				ix, err := Open(context.Background(), log, "linux", dir, t.TempDir(), Release{Build: "7.00.240501A"})
				if err != nil {
					t.Fatal(err)
				}
				settle(t, ix)
				// What rewatch does when a watch cannot be added.
				ix.unwatch(errors.New("watching " + dir + "/lib: no space left on device"))
				ix.unwatch(errors.New("watching " + dir + "/docs: no space left on device"))
				return ix
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := sampleTree()
			writeTree(t, dir, files, oldTime)
			var logs testtree.Buffer
			ix := tc.open(t, slog.New(slog.NewTextHandler(&logs, nil)), dir)
			defer ix.Close()

			for range 3 {
				n := scans(ix)
				checkManifest(t, current(t, ix), files)
				if got := scans(ix) - n; got != 1 {
					t.Errorf("Current made %d scans, want 1", got)
				}
			}
			// A change is in the very next manifest: no event to wait for.
			files["lib/liberp.so"] = "changed"
			writeTree(t, dir, map[string]string{"lib/liberp.so": "changed"}, time.Time{})
			checkManifest(t, current(t, ix), files)

			if got := strings.Count(logs.String(), "level=WARN"); got != 1 {
				t.Errorf("%d warnings, want 1:\n%s", got, logs.String())
			}
			if !strings.Contains(logs.String(), tc.reason) || !strings.Contains(logs.String(), "rescanned before every manifest") {
				t.Errorf("the warning does not give the reason %q and the consequence:\n%s", tc.reason, logs.String())
			}
		})
	}
}

// TestWatchClose shows that Close stops the goroutine that reads the
// watcher, and may be called twice.
func TestWatchClose(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, sampleTree(), oldTime)
	ix, err := Open(context.Background(), discardLogger(), "linux", dir, t.TempDir(), Release{Build: "7.00.240501A"})
	if err != nil {
		t.Fatal(err)
	}
	settle(t, ix)
	ix.Close()
	select {
	case <-ix.watchDone:
	default:
		t.Fatal("the watcher's goroutine still runs after Close")
	}
	ix.Close()
}
