//go:build !windows

package smartclient

import "io/fs"

// folderReadOnly reports whether a folder stops the switch from creating,
// renaming or removing files in it: one its owner may not write.
func folderReadOnly(fi fs.FileInfo) bool { return fi.Mode().Perm()&0o200 == 0 }
