//go:build !linux

package install

import (
	"io/fs"
	"os"
)

// BackgroundSync: without syncfs(2), a sync walks the staged files, too
// slow to repeat while they arrive.
const BackgroundSync = false

// syncFS makes what a switch depends on durable where there is no
// syncfs(2): every regular file under the given folders (staging and the
// new backup) and the folders themselves, so their entries survive a
// power cut too. Links are made durable by their folder's sync; opening
// one would open what it points at.
func syncFS(root *os.Root, dirs []string) error {
	for _, dir := range dirs {
		if _, err := root.Lstat(dir); err != nil {
			continue
		}
		err := fs.WalkDir(root.FS(), dir, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !e.IsDir() && !e.Type().IsRegular() {
				return nil
			}
			flag := os.O_RDONLY
			if !e.IsDir() {
				flag = os.O_RDWR
			}
			f, err := root.OpenFile(p, flag, 0)
			if err != nil {
				return err
			}
			err = f.Sync()
			f.Close()
			if err != nil && e.IsDir() {
				// Windows cannot flush a folder; its renames are
				// durable once they return.
				return nil
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}
