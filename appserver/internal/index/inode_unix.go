//go:build unix

package index

import (
	"io/fs"
	"syscall"
)

// inode returns the file's inode number, part of the hash cache's key so
// that a file replaced by another with the same size and mtime is rehashed.
func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}
