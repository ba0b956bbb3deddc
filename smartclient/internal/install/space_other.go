//go:build !(linux || darwin || freebsd || windows)

package install

import "errors"

// FreeSpace cannot tell the free space here: it returns
// errors.ErrUnsupported, the caller lets the update go on, and a full disk
// is caught by the write that fails.
func FreeSpace(dir string) (int64, error) {
	return 0, errors.ErrUnsupported
}
