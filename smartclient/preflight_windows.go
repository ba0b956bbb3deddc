package smartclient

import "io/fs"

// folderReadOnly reports whether a folder stops the switch from creating,
// renaming or removing files in it. On Windows no folder attribute does:
// the read-only attribute of a folder does not stop writes in it, and
// Explorer sets it on every folder it customizes (one with a desktop.ini,
// an icon of its own), so it says nothing. Access control lists are left
// to the switch, whose rollback undoes a refused write.
func folderReadOnly(fs.FileInfo) bool { return false }
