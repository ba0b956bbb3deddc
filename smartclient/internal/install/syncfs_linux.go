//go:build linux

package install

import (
	"os"

	"golang.org/x/sys/unix"
)

// BackgroundSync: syncfs(2) syncs the whole file system in one call, so
// a flusher can sync as the download goes.
const BackgroundSync = true

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
