//go:build !(linux || darwin || freebsd)

package smartclient

import "errors"

// freeSpace cannot tell the free space here; checkFreeSpace then lets the
// update go on, and a full disk is caught by the write that fails.
func freeSpace(dir string) (int64, error) {
	return 0, errors.ErrUnsupported
}
