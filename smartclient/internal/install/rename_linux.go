package install

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// noReplaceUnsupported is set once a file system refuses
// RENAME_NOREPLACE, so that the switch stops asking.
var noReplaceUnsupported atomic.Bool

// RenameFresh renames a to b with renameat2(RENAME_NOREPLACE) on their
// cached folders, so only when nothing is at b: the switch then needs no
// lookup of either name first. done is false when it did not rename, for
// whatever reason (b exists, a is gone, a folder is not cached, the file
// system cannot): the caller then looks and renames as before. An error
// is the fault hook's.
func (d *Disk) RenameFresh(a, b string) (done bool, err error) {
	if noReplaceUnsupported.Load() {
		return false, nil
	}
	if err := d.Hook("renamefresh", b); err != nil {
		return true, err
	}
	d.dirs.forget(a)
	d.dirs.forget(b)
	fa, ba, fb, bb, release, ok := d.pair(a, b)
	if !ok {
		return false, nil
	}
	defer release()
	err = unix.Renameat2(int(fa.Fd()), ba, int(fb.Fd()), bb, unix.RENAME_NOREPLACE)
	d.dirs.made()
	if err == unix.EINVAL || err == unix.ENOSYS {
		noReplaceUnsupported.Store(true)
	}
	return err == nil, nil
}

// RenameFreshWorks reports whether RenameFresh may rename at all.
func RenameFreshWorks() bool { return !noReplaceUnsupported.Load() }
