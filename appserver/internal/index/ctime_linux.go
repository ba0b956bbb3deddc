package index

import (
	"io/fs"
	"syscall"
)

// changeTime returns the file's change time (ctime) in nanoseconds, or 0
// where the FileInfo does not carry it. Every write to a file, and every
// change of its times, moves its ctime, and nobody can set it: with the
// inode it tells a file whose content changed under the same size and
// mtime.
func changeTime(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ctim.Sec*1e9 + st.Ctim.Nsec
	}
	return 0
}
