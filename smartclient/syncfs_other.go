//go:build !linux

package smartclient

import "os"

// syncFS makes the staged files durable. Without syncfs(2) each staged
// file is synced; they are all written by then, so the cost is the
// flush, not a stall per write.
func syncFS(root *os.Root, dir string, files []string) error {
	for _, p := range files {
		f, err := root.OpenFile(dir+"/"+p, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
