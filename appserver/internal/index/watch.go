package index

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/fsnotify/fsnotify"
)

// An Index watches its folder so that a client's check costs no scan when
// nothing changed: one watcher per index, with a watch on the folder and on
// every subfolder (inotify is not recursive). Any event and any error of the
// watcher, an overflow of its queue included, marks the index dirty, and the
// next Current scans. The watch is an optimization only: when it cannot be
// set up, the index scans before every manifest, as it would without it.
//
// On Windows fsnotify asks ReadDirectoryChangesW for names and last-write
// times only, so a change of a file's attributes alone (its read-only
// attribute, which is its mode in the manifest) would be seen only by the
// rescan after maxScanAge: one more watch, of the whole tree, asks for
// those (see attrWatch).
//
// On Windows each watch holds an open handle on its folder, and Windows
// refuses to rename a folder while a handle is open on anything inside
// it, whatever its sharing mode: while the server runs, no folder that
// holds subfolders, the update folder and its parents included, can be
// renamed (dotnet/runtime#103383 reports the same of FileSystemWatcher).
// Wine does not enforce that rule. One recursive watch of the update
// folder (ReadDirectoryChangesW with bWatchSubtree), whose only handle is
// on the folder itself, would not be in the way; fsnotify does not offer
// it yet.

// maxScanAge is how long Current trusts a quiet watch: a manifest older
// than this is made again by a scan even when no event came. It is cheap
// insurance against a change the watcher does not report: network file
// systems (NFS, SMB) report only the changes made through this machine, and
// no event is sent for a write through a memory mapping or through a hard
// link outside the watched folders.
const maxScanAge = 5 * time.Minute

// removeByPath says whether fsnotify can remove a watch by the path it
// was added with, whatever that path names now: it can with inotify and
// kqueue. Its Windows backend finds the watch to remove by the file ID of
// the folder the path names now: when a watched folder was replaced, or
// moved away, the removal fails, and the watch, with the open handle it
// holds, would stay on the old folder for as long as the server runs:
// every change to the old release would cost a scan, and the old folders
// could not be removed for good (a folder with an open handle on it is
// only marked for deletion where the volume lacks POSIX delete
// semantics). There rewatch makes a new watcher instead. Tests set it to
// run that way elsewhere too.
var removeByPath = runtime.GOOS != "windows"

// startWatch makes the watcher and the goroutine that reads it. When no
// watcher can be made the index scans before every manifest.
func (ix *Index) startWatch(newWatcher func() (*fsnotify.Watcher, error)) {
	w, err := newWatcher()
	if err != nil {
		ix.warnUnwatched(err)
		return
	}
	ix.newWatcher = newWatcher
	ix.w, ix.watchDone = w, make(chan struct{})
	ix.watched = map[string]fs.FileInfo{}
	ix.watching = true
	go ix.readEvents(w, ix.watchDone)
}

// stopWatch closes the watcher and waits for its goroutine to end.
func (ix *Index) stopWatch() {
	ix.mu.Lock()
	ix.watching = false
	w, done, attr := ix.w, ix.watchDone, ix.attr
	ix.attr = nil
	ix.mu.Unlock()
	attr.close()
	if w != nil {
		w.Close()
		<-done
	}
}

// renewWatcher replaces the watcher by a new one that watches nothing,
// and closes the old one, which frees every watch it had. It returns false
// when the index no longer watches. It is called by the running scan
// only, as rewatch is.
func (ix *Index) renewWatcher() bool {
	clear(ix.watched)
	w, err := ix.newWatcher()
	ix.mu.Lock()
	if !ix.watching {
		// Being closed: stopWatch closes the current watcher.
		ix.mu.Unlock()
		if err == nil {
			w.Close()
		}
		return false
	}
	if err != nil {
		ix.mu.Unlock()
		ix.unwatch(fmt.Errorf("making a new watcher: %w", err))
		return false
	}
	old, oldDone := ix.w, ix.watchDone
	ix.w, ix.watchDone = w, make(chan struct{})
	go ix.readEvents(w, ix.watchDone)
	ix.mu.Unlock()
	old.Close()
	<-oldDone
	return true
}

// dropWatches removes every watch. It returns false when the index no
// longer watches.
func (ix *Index) dropWatches() bool {
	if !removeByPath {
		return ix.renewWatcher()
	}
	for rel := range ix.watched {
		ix.w.Remove(ix.abs(rel)) // an error: the watch is gone already
	}
	clear(ix.watched)
	return true
}

// readEvents marks the index dirty at every event and error of w, until w
// is closed. Which file changed does not matter: the scan finds it.
func (ix *Index) readEvents(w *fsnotify.Watcher, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case _, ok := <-w.Events:
			if !ok {
				return
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			// fsnotify.ErrEventOverflow among others: events were
			// lost, so the next scan looks at everything.
			ix.log.Debug("watching update folder", "dir", ix.Dir, "err", err)
		}
		ix.markDirty()
	}
}

// markDirty makes the next Current scan.
func (ix *Index) markDirty() {
	ix.mu.Lock()
	ix.dirty = true
	ix.mu.Unlock()
}

// renewAttrWatch replaces the watch of attributes (see attrWatch) by one
// of the folder as it is now. When none can be made, attributes changed
// alone are seen by the scan after maxScanAge. It is called by the running
// scan only.
func (ix *Index) renewAttrWatch() {
	a, err := startAttrWatch(ix.Dir, ix.markDirty)
	if err != nil {
		ix.log.Warn("cannot watch the update folder for changes of attributes; they are seen within "+maxScanAge.String(),
			"dir", ix.Dir, "err", err)
	}
	ix.mu.Lock()
	if !ix.watching {
		// Being closed, or no longer watching: stopWatch or unwatch
		// closes ix.attr.
		ix.mu.Unlock()
		a.close()
		return
	}
	old := ix.attr
	ix.attr = a
	if a != nil {
		// Changes made before it started are not reported.
		ix.dirty = true
	}
	ix.mu.Unlock()
	old.close()
}

// unwatch gives up watching after err, for good: the index then scans
// before every manifest. It logs the reason once.
func (ix *Index) unwatch(err error) {
	ix.mu.Lock()
	was := ix.watching
	ix.watching = false
	attr := ix.attr
	ix.attr = nil
	ix.mu.Unlock()
	attr.close()
	if was {
		ix.warnUnwatched(err)
	}
	// Frees the watches; the goroutine ends, and Close waits for it.
	ix.w.Close()
}

func (ix *Index) warnUnwatched(err error) {
	ix.log.Warn("cannot watch the update folder for changes; it is rescanned before every manifest instead",
		"dir", ix.Dir, "err", err)
}

// fresh reports whether the current manifest may be handed out without a
// scan: the folder is watched, nothing was reported since the last scan
// began, that scan is recent, and the path still names the folder watched
// (root is its stat, nil if it failed). It is called with mu held.
func (ix *Index) fresh(root fs.FileInfo) bool {
	return ix.watching && !ix.dirty && ix.cur != nil &&
		time.Since(ix.scannedAt) < maxScanAge &&
		root != nil && ix.rootID != nil && os.SameFile(root, ix.rootID)
}

// rewatch brings the watches in line with the folders a scan found (dirs,
// by slash path, "." the folder itself): it drops the watches of folders
// that are gone or were replaced and watches the new ones. When the folder
// itself was replaced, as a release is published, every watch is on the
// old tree, and the new tree is watched from scratch. Where a watch cannot
// be removed by its path (see removeByPath), any folder gone or replaced
// costs a new watcher, and the tree is watched from scratch.
//
// A folder the scan listed before its watch was added may have gained a
// file in between that no event reports, so adding any watch marks the
// index dirty: the next Current scans once more, with the watch in place.
// rewatch is called by the running scan only.
func (ix *Index) rewatch(dirs map[string]fs.FileInfo) {
	ix.mu.Lock()
	watching := ix.watching
	ix.mu.Unlock()
	if !watching {
		return
	}
	old, ok := ix.watched["."]
	rootChanged := !ok || !os.SameFile(old, dirs["."])
	if rootChanged {
		if len(ix.watched) > 0 && !ix.dropWatches() {
			return
		}
	}
	for rel, old := range ix.watched {
		if fi, ok := dirs[rel]; !ok || !os.SameFile(old, fi) {
			// Removed first, so that the watch of the old folder never
			// stands for the new one at the same path.
			if !removeByPath {
				// Every watch goes, and the folders are watched
				// anew below.
				if !ix.dropWatches() {
					return
				}
				break
			}
			ix.w.Remove(ix.abs(rel))
			delete(ix.watched, rel)
		}
	}
	changed := false
	for rel := range dirs {
		if _, ok := ix.watched[rel]; ok {
			continue
		}
		changed = true
		p := ix.abs(rel)
		// The identity is taken before the watch is added: should the
		// path change in between, the next scan sees a folder that
		// differs from the recorded one and watches it again.
		var fi fs.FileInfo
		var err error
		if rel == "." {
			fi, err = os.Stat(p) // the folder may be a symbolic link
		} else {
			fi, err = os.Lstat(p)
		}
		if err == nil {
			err = ix.w.Add(p)
		}
		switch {
		case err == nil:
			ix.watched[rel] = fi
		case errors.Is(err, fs.ErrNotExist):
			// Gone since the scan: the next scan sees that.
		case errors.Is(err, fsnotify.ErrClosed):
			return // the index is being closed
		default:
			// Out of inotify watches (fs.inotify.max_user_watches),
			// or no support for watching here.
			ix.unwatch(fmt.Errorf("watching %s: %w", p, err))
			return
		}
	}
	ix.mu.Lock()
	attrEnded := ix.attr.isEnded()
	ix.mu.Unlock()
	if rootChanged || attrEnded {
		ix.renewAttrWatch()
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.rootID = ix.watched["."]
	if changed {
		ix.dirty = true
	}
}

// abs returns the path of the folder rel (slash-separated) of the index.
func (ix *Index) abs(rel string) string {
	return filepath.Join(ix.Dir, filepath.FromSlash(rel))
}
