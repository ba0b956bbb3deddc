// Package install is the install folder's file-system seam: every change
// that staging, the backup and the switch make to the install folder goes
// through a Disk, an os.Root on the folder with a cache of its folders'
// descriptors, so that nothing leaves the folder and tests can count the
// operations, crash the process at any one of them, or make one fail (see
// Faults). It also names the folder's layout (the client's bookkeeping
// under MetaDir and the bkp_remote backups) and holds what is specific to
// an OS: the lock on the folder, hard-link and rename system calls, free
// space, syncfs(2), file times and mapped reads.
//
// It imports the standard library, golang.org/x/sys, blake3 and
// internal/atomicfile only: nothing of the client above it.
package install

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/zeebo/blake3"
)

// Disk is the client's file-system seam: every change that staging, the
// backup and the switch make to the install folder goes through it, so
// tests can count the operations, crash the process at any one of them,
// or make one fail as a full disk, an I/O error or a locked file would
// (see Faults). It is an os.Root, so nothing it does leaves the install
// folder. A Disk is safe for concurrent use.
type Disk struct {
	*os.Root
	// Faults are what a test injects; the zero value injects none.
	Faults Faults
	dirs   *dirCache // nil: every operation resolves its path from the root
}

// Faults are the faults a test injects into one Disk. Set them before the
// Disk is used.
type Faults struct {
	// Op, when set, runs before every operation with the operation's
	// name ("rename", "remove", "link", "syncfs", "copy", ...) and the
	// path it changes; an error it returns is the operation's error.
	Op func(op, name string) error
	// Write, when set, is asked before each chunk written to a staged
	// file (see WriteStaged): it returns how many of the n bytes at
	// offset off may be written before the write fails with its error (a
	// full disk, an I/O error), or a nil error to let the chunk through.
	Write func(name string, off int64, n int) (int, error)
	// LockedBackoff, when set, replaces LockedBackoff.
	LockedBackoff []time.Duration
	// FreeSpace, when set, is what Disk.FreeSpace measures.
	FreeSpace func(dir string) (int64, error)
}

// New returns the seam over root, with a folder cache; CloseCache
// releases it.
func New(root *os.Root) *Disk { return &Disk{Root: root, dirs: newDirCache(root)} }

// Hook runs the fault hook for the operation op on name: every operation
// of the Disk does, and so does a caller for an operation it does itself
// (a copy by another library, a post-install program).
func (d *Disk) Hook(op, name string) error {
	if d.Faults.Op != nil {
		return d.Faults.Op(op, name)
	}
	return nil
}

// LockedBackoff is how long a rename waits for a file another program
// holds (on Windows a running program or an antivirus scan) before it
// tries again; after the last wait the update is rolled back.
var LockedBackoff = []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond,
	400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond}

// ErrLocked marks a file that stayed in use by another program.
var ErrLocked = fmt.Errorf("smartclient: file in use by another program")

// Rename renames, retrying while the file is locked.
func (d *Disk) Rename(oldname, newname string) error {
	backoff := LockedBackoff
	if d.Faults.LockedBackoff != nil {
		backoff = d.Faults.LockedBackoff
	}
	for i := 0; ; i++ {
		err := d.Hook("rename", newname)
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
		if i == len(backoff) {
			return fmt.Errorf("%s stayed in use by another program (close it and retry): %w: %w", localName(oldname, newname), ErrLocked, err)
		}
		time.Sleep(backoff[i])
	}
}

// localName is the install file a rename is about, not the bookkeeping
// side of it.
func localName(oldname, newname string) string {
	if Reserved(newname) {
		return oldname
	}
	return newname
}

// Remove removes name.
func (d *Disk) Remove(name string) error {
	if err := d.Hook("remove", name); err != nil {
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
func (d *Disk) RemoveAll(name string) error {
	if err := d.Hook("removeall", name); err != nil {
		return err
	}
	d.dirs.forget(name)
	var entries []fs.DirEntry
	if fi, err := d.Root.Lstat(name); err == nil && fi.IsDir() {
		entries, _ = d.ReadDir(name)
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

// MkdirAll makes folder name and those above it.
func (d *Disk) MkdirAll(name string, perm fs.FileMode) error {
	if err := d.Hook("mkdir", name); err != nil {
		return err
	}
	if d.dirs.has(strings.TrimSuffix(name, "/")) {
		return nil // a folder with a handle exists
	}
	defer d.dirs.made()
	return d.Root.MkdirAll(name, perm)
}

// Chtimes sets the access and modification times of name.
func (d *Disk) Chtimes(name string, atime, mtime time.Time) error {
	if err := d.Hook("chtimes", name); err != nil {
		return err
	}
	return d.chtimes(name, atime, mtime)
}

// chtimes is Chtimes without the fault hook.
func (d *Disk) chtimes(name string, atime, mtime time.Time) error {
	r, n, h := d.in(name)
	defer d.dirs.put(h)
	return r.Chtimes(n, atime, mtime)
}

// Link makes newname a hard link to oldname.
func (d *Disk) Link(oldname, newname string) error {
	if err := d.Hook("link", newname); err != nil {
		return err
	}
	if done, err := d.linkAt(oldname, newname); done {
		return err
	}
	return d.Root.Link(oldname, newname)
}

// Symlink makes newname a symbolic link to oldname.
func (d *Disk) Symlink(oldname, newname string) error {
	if err := d.Hook("symlink", newname); err != nil {
		return err
	}
	defer d.dirs.made() // a link to a folder stands for one
	r, n, h := d.in(newname)
	defer d.dirs.put(h)
	return r.Symlink(oldname, n)
}

// OpenFile opens name as os.Root's OpenFile does.
func (d *Disk) OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	if err := d.Hook("create", name); err != nil {
		return nil, err
	}
	return d.open(name, flag, perm)
}

// open is OpenFile without the test hook: through the folder's
// descriptor where the platform allows, through the root otherwise.
func (d *Disk) open(name string, flag int, perm fs.FileMode) (*os.File, error) {
	if f, done, err := d.openAt(name, flag, perm); done {
		return f, err
	}
	r, n, h := d.in(name)
	defer d.dirs.put(h)
	return r.OpenFile(n, flag, perm)
}

// WriteStaged writes b, a chunk of the staged file f named name, at
// offset off, which is where f stands: through the write fault, if any.
func (d *Disk) WriteStaged(f *os.File, name string, off int64, b []byte) error {
	if d.Faults.Write != nil {
		n, err := d.Faults.Write(name, off, len(b))
		if err != nil {
			f.Write(b[:n])
			return &fs.PathError{Op: "write", Path: name, Err: err}
		}
	}
	_, err := f.Write(b)
	return err
}

// CloseStaged gives the staged file f, named name, the mtime it is to be
// installed with, and closes it.
func (d *Disk) CloseStaged(f *os.File, name string, mtime time.Time) error {
	if err := d.Hook("chtimes", name); err != nil {
		f.Close()
		return err
	}
	return d.closeWithTimes(f, name, mtime)
}

// closeWithTimes is CloseStaged without the test hook.
func (d *Disk) closeWithTimes(f *os.File, name string, mtime time.Time) error {
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

// Copy copies the install's regular file p to target, which must not
// exist, with p's permission bits and modification time. Both are opened
// through their folders' descriptors where the platform allows (a copy
// by path walked both paths again at each of its ten calls), and the
// bytes move in the kernel where it can (copy_file_range on Linux).
func (d *Disk) Copy(p, target string) error {
	if err := d.Hook("copy", target); err != nil {
		return err
	}
	in, err := d.open(p, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is no longer a regular file", p)
	}
	out, err := d.open(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		// The umask may have taken bits off.
		err = out.Chmod(fi.Mode().Perm())
	}
	if err != nil {
		out.Close()
		return err
	}
	return d.closeWithTimes(out, target, fi.ModTime())
}

// WriteAtomic replaces the bookkeeping file rel atomically and durably
// with the parts of data, one after the other.
func (d *Disk) WriteAtomic(rel string, data ...[]byte) error {
	if err := d.Hook("write", rel); err != nil {
		return err
	}
	return atomicfile.WriteParts(filepath.Join(d.Name(), filepath.FromSlash(rel)), 0o644, data...)
}

// SyncStaged makes the staged files and the new backup durable (see
// syncFS).
func (d *Disk) SyncStaged() error {
	if err := d.Hook("syncfs", StagingDir); err != nil {
		return err
	}
	return syncFS(d.Root, []string{StagingDir, NewBackupDir})
}

// FreeSpace returns the bytes this user may still write on the file
// system of the install folder (see the package's FreeSpace), or what
// Faults.FreeSpace says.
func (d *Disk) FreeSpace() (int64, error) {
	if d.Faults.FreeSpace != nil {
		return d.Faults.FreeSpace(d.Name())
	}
	return FreeSpace(d.Name())
}

// Exists reports whether name exists (as a link, if it is one).
func (d *Disk) Exists(name string) bool {
	_, err := d.Lstat(name)
	return err == nil
}

// HashFile returns the BLAKE3 of the file name, in hex.
func (d *Disk) HashFile(name string) (string, error) {
	f, err := d.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := blake3.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ReclaimMeta makes sure MetaDir is a real folder, or absent: a symbolic
// link planted there would send staging, the journal and the backups'
// work to wherever it points inside the install. The name is the
// client's own, so a link or a file there is removed.
func ReclaimMeta(root *os.Root) error {
	fi, err := root.Lstat(MetaDir)
	if err != nil || fi.IsDir() {
		return nil
	}
	if err := root.Remove(MetaDir); err != nil {
		return fmt.Errorf("removing %s, which is not a folder: %w", MetaDir, err)
	}
	return nil
}

// WalkInstall calls fn for every entry of the install, folders before
// their contents and names in lexical order, leaving out the client's
// bookkeeping and the backups (see Reserved). An entry's Info is an Lstat
// through the install's root. fn returning fs.SkipDir skips a folder.
func (d *Disk) WalkInstall(fn func(p string, e fs.DirEntry) error) error {
	return d.walkDir(".", fn)
}

func (d *Disk) walkDir(dir string, fn func(p string, e fs.DirEntry) error) error {
	entries, err := d.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("reading %s: %w", dir, err)
	}
	for _, e := range entries {
		p := e.Name()
		if dir != "." {
			p = dir + "/" + p
		}
		if Reserved(p) {
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

// rootEntry is an entry of WalkInstall: its Info comes from an Lstat
// through the install's root, never from a path outside it.
type rootEntry struct {
	fs.DirEntry
	d *Disk
	p string
}

func (e rootEntry) Info() (fs.FileInfo, error) { return e.d.Lstat(e.p) }
