//go:build linux

package smartclient

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFS flushes the file system that holds the staging folder: one
// syncfs(2) instead of an fsync per staged file.
func syncFS(root *os.Root, dir string, _ []string) error {
	f, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
