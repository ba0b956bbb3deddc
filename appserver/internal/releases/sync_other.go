//go:build !linux

package releases

import (
	"io/fs"
	"os"
	"path/filepath"
)

// syncTree makes the files under dir durable where there is no
// syncfs(2): each file, then the folder.
func syncTree(dir string) error {
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	d.Sync() // Windows cannot sync a folder; a rename there is durable once it returns
	return d.Close()
}
