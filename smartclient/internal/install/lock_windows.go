//go:build windows

package install

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/windows"
)

// Lock takes an exclusive lock on .smartclient/lock with
// LockFileEx, which Windows releases when the process dies, so a killed
// smartclient never blocks the next one (or its crash recovery).
func Lock(root *os.Root) (func(), error) {
	if err := root.MkdirAll(MetaDir, 0o755); err != nil {
		return nil, fmt.Errorf("locking install folder: %w", err)
	}
	f, err := root.OpenFile(LockFile, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking install folder: %w", err)
	}
	ol := new(windows.Overlapped)
	err = windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol)
	if err != nil {
		f.Close()
		if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
			return nil, ErrBusy
		}
		return nil, fmt.Errorf("locking install folder: %w", err)
	}
	return announce(root, func() { f.Close() }), nil
}
