//go:build !windows

package index

import (
	"io/fs"
	"os"
)

// statID returns the inode and change time of the file rel of root, as fi
// (its Lstat) carries them here; handleID those of the open file fh.
func statID(_ *os.Root, _ string, fi fs.FileInfo) (uint64, int64) {
	return inode(fi), changeTime(fi)
}

func handleID(_ *os.File, fi fs.FileInfo) (uint64, int64) { return inode(fi), changeTime(fi) }
