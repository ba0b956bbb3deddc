//go:build linux && (amd64 || arm64 || riscv64)

package install

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fdDir is a folder looked into through a descriptor of its own, with
// fstatat(2) on a name that needs no allocation: the no-op check of a
// large install is one lstat per file, and os.Root's Lstat costs as much
// again around each.
type fdDir struct {
	fd   int
	name []byte // the name being looked up, NUL-terminated
}

// OpenLookupRoot opens the install folder root as a LookupDir.
func OpenLookupRoot(root *os.Root) (LookupDir, error) {
	f, err := root.Open(".")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return openFdDir(int(f.Fd()), ".")
}

func openFdDir(parent int, name string) (*fdDir, error) {
	fd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "openat", Path: name, Err: err}
	}
	return &fdDir{fd: fd}, nil
}

func (d *fdDir) Open(name []byte) (LookupDir, error) {
	return openFdDir(d.fd, string(name))
}

func (d *fdDir) Lstat(name []byte) (LookupInfo, error) {
	d.name = append(append(d.name[:0], name...), 0)
	var st unix.Stat_t
	_, _, errno := unix.Syscall6(unix.SYS_NEWFSTATAT, uintptr(d.fd), uintptr(unsafe.Pointer(&d.name[0])),
		uintptr(unsafe.Pointer(&st)), unix.AT_SYMLINK_NOFOLLOW, 0, 0)
	if errno != 0 {
		return LookupInfo{}, errno
	}
	info := LookupInfo{Kind: KindOther, Size: st.Size, MtimeNs: st.Mtim.Sec*1e9 + st.Mtim.Nsec}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		info.Kind = KindRegular
	case unix.S_IFLNK:
		info.Kind = KindLink
	case unix.S_IFDIR:
		info.Kind = KindDir
	}
	return info, nil
}

func (d *fdDir) Readlink(name []byte) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(d.fd, string(name), buf)
	if err != nil {
		return "", err
	}
	if n == len(buf) {
		return "", unix.ENAMETOOLONG
	}
	return string(buf[:n]), nil
}

func (d *fdDir) Close() { unix.Close(d.fd) }
