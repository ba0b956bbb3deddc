package filelock

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// lockOffset is where the locked byte lies: past any content, since
// Windows' byte-range locks are mandatory and a process refused the lock
// must still read what the holder wrote at the file's start.
const lockOffset = 1 << 32

// TryLock locks one byte of f exclusively with LockFileEx, without waiting;
// false means another handle (of this process or another) holds it.
// Windows releases the lock when the handle closes or the process ends,
// killed or not; Go's handles are not inherited by child processes.
func TryLock(f *os.File) (bool, error) {
	ol := windows.Overlapped{Offset: lockOffset & 0xffffffff, OffsetHigh: lockOffset >> 32}
	err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ol)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) || errors.Is(err, windows.ERROR_IO_PENDING) {
		return false, nil
	}
	return err == nil, err
}
