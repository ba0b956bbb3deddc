//go:build unix

package smartclient

import (
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// pair returns the cached folders of two names and their base names, or
// ok false when either is not cached.
func (d disk) pair(a, b string) (fa *os.File, ba string, fb *os.File, bb string, ok bool) {
	da, ba := path.Split(a)
	db, bb := path.Split(b)
	if da == "" || db == "" || ba == "" || bb == "" {
		return nil, "", nil, "", false
	}
	ha, hb := d.dirs.get(strings.TrimSuffix(da, "/")), d.dirs.get(strings.TrimSuffix(db, "/"))
	if ha == nil || hb == nil {
		return nil, "", nil, "", false
	}
	fa, err := ha.file()
	if err != nil {
		return nil, "", nil, "", false
	}
	fb, err = hb.file()
	if err != nil {
		return nil, "", nil, "", false
	}
	return fa, ba, fb, bb, true
}

// renameAt renames a to b with one renameat(2) on their cached folders;
// ok is false when it could not try.
func (d disk) renameAt(a, b string) (ok bool, err error) {
	fa, ba, fb, bb, ok := d.pair(a, b)
	if !ok {
		return false, nil
	}
	if err := unix.Renameat(int(fa.Fd()), ba, int(fb.Fd()), bb); err != nil {
		return true, &os.LinkError{Op: "rename", Old: a, New: b, Err: err}
	}
	return true, nil
}

// linkAt links b to a with one linkat(2) on their cached folders; ok is
// false when it could not try.
func (d disk) linkAt(a, b string) (ok bool, err error) {
	fa, ba, fb, bb, ok := d.pair(a, b)
	if !ok {
		return false, nil
	}
	if err := unix.Linkat(int(fa.Fd()), ba, int(fb.Fd()), bb, 0); err != nil {
		return true, &os.LinkError{Op: "link", Old: a, New: b, Err: err}
	}
	return true, nil
}
