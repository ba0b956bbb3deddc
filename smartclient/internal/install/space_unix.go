//go:build linux || darwin || freebsd

package install

import (
	"errors"
	"io/fs"
	"math"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// FreeSpace returns the bytes this user may still write on the file
// system that holds dir (statfs's f_bavail, which leaves out the blocks
// kept for root). A dir not created yet is measured at its nearest
// existing parent, where it will be created.
//
// The build tag lists the systems whose unix.Statfs_t has Bavail and
// Bsize; the other Unixes spell it otherwise (statvfs) and get
// space_other.go.
func FreeSpace(dir string) (int64, error) {
	var st unix.Statfs_t
	for {
		err := unix.Statfs(dir, &st)
		if err == nil {
			break
		}
		if parent := filepath.Dir(dir); errors.Is(err, unix.ENOENT) && parent != dir {
			dir = parent
			continue
		}
		return 0, &fs.PathError{Op: "statfs", Path: dir, Err: err}
	}
	// The field types differ between systems (FreeBSD's Bavail is signed
	// and goes negative when root has eaten into its reserve).
	avail, bsize := int64(st.Bavail), int64(st.Bsize)
	switch {
	case avail <= 0 || bsize <= 0:
		return 0, nil
	case avail > math.MaxInt64/bsize:
		return math.MaxInt64, nil
	}
	return avail * bsize, nil
}
