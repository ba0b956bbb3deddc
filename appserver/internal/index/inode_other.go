//go:build !unix

package index

import "io/fs"

// inode is 0 where the platform's FileInfo does not carry one; size and
// mtime then key the hash cache alone.
func inode(fs.FileInfo) uint64 { return 0 }
