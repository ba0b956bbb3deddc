//go:build unix

package install

import (
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// pair returns the cached folders of two names and their base names, or
// ok false when either is not cached; release puts the handles back.
func (d *Disk) pair(a, b string) (fa *os.File, ba string, fb *os.File, bb string, release func(), ok bool) {
	da, ba := path.Split(a)
	db, bb := path.Split(b)
	if ba == "" || bb == "" {
		return nil, "", nil, "", nil, false
	}
	fa, ha, oka := d.dirFile(da)
	fb, hb, okb := d.dirFile(db)
	release = func() { d.dirs.put(ha); d.dirs.put(hb) }
	if !oka || !okb {
		release()
		return nil, "", nil, "", nil, false
	}
	return fa, ba, fb, bb, release, true
}

// dirFile returns the folder dir (as path.Split gives it: "" for the top
// of the install) as an open file, and the handle to put back.
func (d *Disk) dirFile(dir string) (*os.File, *dirHandle, bool) {
	if dir == "" {
		f, err := d.dirs.rootDir()
		return f, nil, err == nil
	}
	h := d.dirs.get(strings.TrimSuffix(dir, "/"))
	if h == nil {
		return nil, nil, false
	}
	f, err := d.dirs.file(h)
	return f, h, err == nil
}

// renameAt renames a to b with one renameat(2) on their cached folders;
// ok is false when it could not try.
func (d *Disk) renameAt(a, b string) (ok bool, err error) {
	fa, ba, fb, bb, release, ok := d.pair(a, b)
	if !ok {
		return false, nil
	}
	defer release()
	if err := unix.Renameat(int(fa.Fd()), ba, int(fb.Fd()), bb); err != nil {
		return true, &os.LinkError{Op: "rename", Old: a, New: b, Err: err}
	}
	return true, nil
}

// linkAt links b to a with one linkat(2) on their cached folders; ok is
// false when it could not try.
func (d *Disk) linkAt(a, b string) (ok bool, err error) {
	fa, ba, fb, bb, release, ok := d.pair(a, b)
	if !ok {
		return false, nil
	}
	defer release()
	if err := unix.Linkat(int(fa.Fd()), ba, int(fb.Fd()), bb, 0); err != nil {
		return true, &os.LinkError{Op: "link", Old: a, New: b, Err: err}
	}
	return true, nil
}

// ReadDir lists folder dir of the install, sorted by name. An os.Root's
// own ReadDir calls lstat for every entry (on this machine's 20,000 files
// two walks cost 40,000 system calls); the folder is read here through a
// descriptor of its own, opened relative to the root's handle, so the
// entries' types come from the folder itself, as the kernel gives them.
func (d *Disk) ReadDir(dir string) ([]fs.DirEntry, error) {
	f, err := d.Root.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fd, err := unix.Openat(int(f.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	own := os.NewFile(uintptr(fd), path.Join(d.Name(), dir))
	defer own.Close()
	entries, err := own.ReadDir(-1)
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, err
}

// openAt opens name with one openat(2) on its cached folder, never
// through a link, as os.NewFile: an os.Root's OpenFile also tries to put
// the file in the network poller and sets its blocking mode twice, four
// system calls more for every staged file. ok is false when it could not
// try; a link found in name's place is left to the os.Root, which
// resolves it inside the install.
func (d *Disk) openAt(name string, flag int, perm fs.FileMode) (f *os.File, ok bool, err error) {
	dir, base := path.Split(name)
	if dir == "" || base == "" {
		return nil, false, nil
	}
	h := d.dirs.get(strings.TrimSuffix(dir, "/"))
	defer d.dirs.put(h)
	if h == nil {
		return nil, false, nil
	}
	df, err := d.dirs.file(h)
	if err != nil {
		return nil, false, nil
	}
	fd, err := unix.Openat(int(df.Fd()), base, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm.Perm()))
	if err == unix.ELOOP {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, &os.PathError{Op: "openat", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), true, nil
}
