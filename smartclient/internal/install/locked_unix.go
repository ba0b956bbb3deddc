//go:build unix

package install

import (
	"errors"
	"syscall"
)

// isLocked reports an error that another process holding the file may
// cause and that may pass: a busy mount point or a running executable.
func isLocked(err error) bool {
	return errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.ETXTBSY)
}
