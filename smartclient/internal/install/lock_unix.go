//go:build unix

package install

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// Lock takes an exclusive lock on the install folder itself so
// that two smartclients (a shortcut clicked twice) never update it at
// once. Locking the folder rather than a lock file writes nothing, so a
// declined or failed sync leaves no trace.
func Lock(root *os.Root) (func(), error) {
	f, err := root.Open(".")
	if err != nil {
		return nil, fmt.Errorf("locking install folder: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrBusy
		}
		return nil, fmt.Errorf("locking install folder: %w", err)
	}
	return announce(root, func() { f.Close() }), nil
}
