//go:build windows

package install

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/windows"
)

// Lock takes an exclusive lock on .smartclient/lock with
// LockFileEx, which Windows releases when the process dies, so a killed
// smartclient never blocks the next one (or its crash recovery).
func Lock(root *os.Root) (func(), error) {
	if err := root.MkdirAll(MetaDir, 0o755); err != nil {
		return nil, fmt.Errorf("locking install folder: %w", err)
	}
	// Opened with FILE_SHARE_DELETE, which os.OpenFile does not give, so
	// that a first sync that did not happen can remove the file it holds
	// (see the client's forgetAllButID), as Unix allows: without it the
	// lock stayed behind. The path is the root's: MetaDir was just made
	// through it.
	path := filepath.Join(root.Name(), filepath.FromSlash(LockFile))
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, fmt.Errorf("locking install folder: %w", err)
	}
	h, err := windows.CreateFile(p, windows.GENERIC_READ|windows.GENERIC_WRITE,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE, nil,
		windows.OPEN_ALWAYS, windows.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		return nil, fmt.Errorf("locking install folder: opening %s: %w", path, err)
	}
	f := os.NewFile(uintptr(h), path)
	ol := new(windows.Overlapped)
	err = windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol)
	if err != nil {
		f.Close()
		if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
			return nil, ErrBusy
		}
		return nil, fmt.Errorf("locking install folder: %w", err)
	}
	// The file goes with the lock, removed while still held (a sync
	// leaves no lock behind, as on Unix where the folder itself is
	// locked); a smartclient that opens the name meanwhile makes a new
	// file and locks that one, once this one's work is done.
	return announce(root, func() { root.Remove(LockFile); f.Close() }), nil
}
