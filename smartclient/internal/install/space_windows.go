//go:build windows

package install

import (
	"errors"
	"io/fs"
	"math"
	"path/filepath"

	"golang.org/x/sys/windows"
)

// FreeSpace returns the bytes this user may still write on the volume that
// holds dir (GetDiskFreeSpaceExW's free bytes available to the caller,
// which honours disk quotas). A dir not created yet is measured at its
// nearest existing parent, where it will be created.
func FreeSpace(dir string) (int64, error) {
	for {
		p, err := windows.UTF16PtrFromString(dir)
		if err != nil {
			return 0, &fs.PathError{Op: "GetDiskFreeSpaceEx", Path: dir, Err: err}
		}
		var avail, total, free uint64
		err = windows.GetDiskFreeSpaceEx(p, &avail, &total, &free)
		if err == nil {
			if avail > math.MaxInt64 {
				return math.MaxInt64, nil
			}
			return int64(avail), nil
		}
		notThere := errors.Is(err, windows.ERROR_FILE_NOT_FOUND) || errors.Is(err, windows.ERROR_PATH_NOT_FOUND) ||
			errors.Is(err, windows.ERROR_DIRECTORY)
		if parent := filepath.Dir(dir); notThere && parent != dir {
			dir = parent
			continue
		}
		return 0, &fs.PathError{Op: "GetDiskFreeSpaceEx", Path: dir, Err: err}
	}
}
