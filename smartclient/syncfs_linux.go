//go:build linux

package smartclient

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFS flushes the file system that holds the install folder (and so
// staging and the new backup): one syncfs(2) instead of an fsync per file.
func syncFS(root *os.Root, _ []string) error {
	f, err := root.Open(".")
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// startWriteback asks the kernel to start writing a staged file's data to
// disk now, without waiting for it: on a machine with plenty of memory
// nothing else would write it before the syncfs before the switch, which
// would then wait for every byte of the update at once (1.2 s for 1 GB
// here). It is only a hint: durability still comes from that syncfs, and
// an error is ignored.
func startWriteback(f *os.File) {
	unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}
