package install

import (
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// setFileTimes sets the access and modification times of the open file f
// to t, as futimens(3) does (utimensat on the descriptor, with no path):
// an os.Root's Chtimes looks the name up again and reads it as a link
// first. done is false when it could not try.
func setFileTimes(f *os.File, t time.Time) (done bool, err error) {
	ts := [2]unix.Timespec{unix.NsecToTimespec(t.UnixNano()), unix.NsecToTimespec(t.UnixNano())}
	sc, err := f.SyscallConn()
	if err != nil {
		return false, nil
	}
	var errno unix.Errno
	if err := sc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall6(unix.SYS_UTIMENSAT, fd, 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	}); err != nil {
		return false, nil
	}
	if errno != 0 {
		return true, errno
	}
	return true, nil
}
