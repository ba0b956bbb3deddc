package smartclient

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/internal/atomicfile"
)

// disk is the client's file-system seam: every change that staging, the
// backup and the switch make to the install folder goes through it, so
// tests can count the operations, crash the process at any one of them,
// or make one fail as a full disk, an I/O error or a locked file would.
// It is an os.Root, so nothing it does leaves the install folder.
type disk struct {
	*os.Root
	dirs *dirCache // nil: every operation resolves its path from the root
}

// faultHook, when a test sets it, runs before every operation with the
// operation's name and the path it changes; an error it returns is the
// operation's error.
var faultHook func(op, name string) error

// writeFault, when a test sets it, is asked before each chunk written to a
// staged file: it returns how many of the n bytes at offset off may be
// written before the write fails with its error (a full disk, an I/O
// error), or a nil error to let the chunk through.
var writeFault func(name string, off int64, n int) (int, error)

func (d disk) hook(op, name string) error {
	if faultHook != nil {
		return faultHook(op, name)
	}
	return nil
}

// lockedBackoff is how long a rename waits for a file another program
// holds (on Windows a running program or an antivirus scan) before it
// tries again; after the last wait the update is rolled back.
var lockedBackoff = []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond,
	400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond}

// ErrLocked marks a file that stayed in use by another program.
var ErrLocked = fmt.Errorf("smartclient: file in use by another program")

// Rename renames, retrying while the file is locked.
func (d disk) Rename(oldname, newname string) error {
	for i := 0; ; i++ {
		err := d.hook("rename", newname)
		if err == nil {
			d.dirs.forget(oldname)
			d.dirs.forget(newname)
			var done bool
			if done, err = d.renameAt(oldname, newname); !done {
				err = d.Root.Rename(oldname, newname)
			}
			// A lookup beside the rename may have found its
			// folder absent before it was in place.
			d.dirs.made()
		}
		if err == nil || !isLocked(err) {
			return err
		}
		if i == len(lockedBackoff) {
			return fmt.Errorf("%s stayed in use by another program (close it and retry): %w: %w", localName(oldname, newname), ErrLocked, err)
		}
		time.Sleep(lockedBackoff[i])
	}
}

// localName is the install file a rename is about, not the bookkeeping
// side of it.
func localName(oldname, newname string) string {
	if reserved(newname) {
		return oldname
	}
	return newname
}

func (d disk) Remove(name string) error {
	if err := d.hook("remove", name); err != nil {
		return err
	}
	d.dirs.forget(name)
	r, n, h := d.in(name)
	defer d.dirs.put(h)
	return r.Remove(n)
}

// removeWorkers is how many of a folder's entries RemoveAll removes at
// once.
const removeWorkers = 4

// RemoveAll removes name and everything under it. The entries of a folder
// (the files an update replaced, the staging folders, a dropped backup of
// 20,000 files) are removed by removeWorkers goroutines at once, then the
// folder; a link is removed, never what it points to, and what cannot be
// listed is left to os.Root's RemoveAll.
func (d disk) RemoveAll(name string) error {
	if err := d.hook("removeall", name); err != nil {
		return err
	}
	d.dirs.forget(name)
	var entries []fs.DirEntry
	if fi, err := d.Root.Lstat(name); err == nil && fi.IsDir() {
		entries, _ = d.readDir(name)
	}
	if len(entries) > 1 {
		next := make(chan string)
		errs := make([]error, removeWorkers)
		var wg sync.WaitGroup
		for w := range removeWorkers {
			wg.Go(func() {
				for p := range next {
					if err := d.Root.RemoveAll(p); err != nil && errs[w] == nil {
						errs[w] = err
					}
				}
			})
		}
		for _, e := range entries {
			next <- name + "/" + e.Name()
		}
		close(next)
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	return d.Root.RemoveAll(name)
}

func (d disk) MkdirAll(name string, perm fs.FileMode) error {
	if err := d.hook("mkdir", name); err != nil {
		return err
	}
	if d.dirs.has(strings.TrimSuffix(name, "/")) {
		return nil // a folder with a handle exists
	}
	defer d.dirs.made()
	return d.Root.MkdirAll(name, perm)
}

func (d disk) Chtimes(name string, atime, mtime time.Time) error {
	if err := d.hook("chtimes", name); err != nil {
		return err
	}
	return d.chtimes(name, atime, mtime)
}

// chtimes is Chtimes without the fault hook.
func (d disk) chtimes(name string, atime, mtime time.Time) error {
	r, n, h := d.in(name)
	defer d.dirs.put(h)
	return r.Chtimes(n, atime, mtime)
}

func (d disk) Link(oldname, newname string) error {
	if err := d.hook("link", newname); err != nil {
		return err
	}
	if done, err := d.linkAt(oldname, newname); done {
		return err
	}
	return d.Root.Link(oldname, newname)
}

func (d disk) Symlink(oldname, newname string) error {
	if err := d.hook("symlink", newname); err != nil {
		return err
	}
	defer d.dirs.made() // a link to a folder stands for one
	r, n, h := d.in(newname)
	defer d.dirs.put(h)
	return r.Symlink(oldname, n)
}

func (d disk) OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	if err := d.hook("create", name); err != nil {
		return nil, err
	}
	return d.open(name, flag, perm)
}

// open is OpenFile without the test hook: through the folder's
// descriptor where the platform allows, through the root otherwise.
func (d disk) open(name string, flag int, perm fs.FileMode) (*os.File, error) {
	if f, done, err := d.openAt(name, flag, perm); done {
		return f, err
	}
	r, n, h := d.in(name)
	defer d.dirs.put(h)
	return r.OpenFile(n, flag, perm)
}

// closeStaged gives the staged file f, named name, the mtime it is to be
// installed with, and closes it.
func (d disk) closeStaged(f *os.File, name string, mtime time.Time) error {
	if err := d.hook("chtimes", name); err != nil {
		f.Close()
		return err
	}
	return d.closeWithTimes(f, name, mtime)
}

// closeWithTimes is closeStaged without the test hook.
func (d disk) closeWithTimes(f *os.File, name string, mtime time.Time) error {
	if done, err := setFileTimes(f, mtime); done {
		if err != nil {
			f.Close()
			return &fs.PathError{Op: "chtimes", Path: name, Err: err}
		}
		return f.Close()
	}
	if err := f.Close(); err != nil {
		return err
	}
	return d.chtimes(name, mtime, mtime)
}

// writeFile replaces the bookkeeping file rel atomically and durably with
// the parts of data, one after the other.
func (d disk) writeFile(rel string, data ...[]byte) error {
	if err := d.hook("write", rel); err != nil {
		return err
	}
	return atomicfile.WriteParts(filepath.Join(d.Name(), filepath.FromSlash(rel)), 0o644, data...)
}

// syncFS makes the staged files and the new backup durable (see syncFS).
func (d disk) syncFS() error {
	if err := d.hook("syncfs", stagingDir); err != nil {
		return err
	}
	return syncFS(d.Root, []string{stagingDir, newBackupDir})
}

// reclaimMeta makes sure .smartclient is a real folder, or absent: a
// symbolic link planted there would send staging, the journal and the
// backups' work to wherever it points inside the install. The name is the
// client's own, so a link or a file there is removed.
func reclaimMeta(root *os.Root) error {
	fi, err := root.Lstat(metaDir)
	if err != nil || fi.IsDir() {
		return nil
	}
	if err := root.Remove(metaDir); err != nil {
		return fmt.Errorf("removing %s, which is not a folder: %w", metaDir, err)
	}
	return nil
}

// walkInstall calls fn for every entry of the install, folders before
// their contents and names in lexical order, leaving out the client's
// bookkeeping and the backups. An entry's Info is an Lstat through the
// install's root.
func (d disk) walkInstall(fn func(p string, e fs.DirEntry) error) error {
	return d.walkDir(".", fn)
}

func (d disk) walkDir(dir string, fn func(p string, e fs.DirEntry) error) error {
	entries, err := d.readDir(dir)
	if err != nil {
		return fmt.Errorf("reading %s: %w", dir, err)
	}
	for _, e := range entries {
		p := e.Name()
		if dir != "." {
			p = dir + "/" + p
		}
		if reserved(p) {
			continue
		}
		if err := fn(p, rootEntry{e, d, p}); err != nil {
			if err == fs.SkipDir {
				continue
			}
			return err
		}
		if e.IsDir() {
			if err := d.walkDir(p, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// rootEntry is an entry of walkInstall: its Info comes from an Lstat
// through the install's root, never from a path outside it.
type rootEntry struct {
	fs.DirEntry
	d disk
	p string
}

func (e rootEntry) Info() (fs.FileInfo, error) { return e.d.Lstat(e.p) }
