package index

import (
	"os"
	"path/filepath"
)

// openFolder opens the update folder dir as an os.Root that does not keep
// the administrator from renaming or removing the folder. os.OpenRoot
// opens dir without FILE_SHARE_DELETE, so while the server held the folder
// of its current manifest, the usual way to publish a release (the old
// folder renamed away, the new one renamed in) failed with a sharing
// violation. Root.OpenRoot shares delete, so the folder is opened from its
// parent, whose handle is held for that moment only. A folder that cannot
// be opened so (a volume's root, a symbolic link to outside its parent
// whose target cannot be opened so either) is opened by os.OpenRoot.
func openFolder(dir string) (*os.Root, error) {
	if r, err := openFromParent(dir); err == nil {
		return r, nil
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		if r, err := openFromParent(real); err == nil {
			return r, nil
		}
	}
	return os.OpenRoot(dir)
}

// openFromParent opens dir with Root.OpenRoot of its parent folder.
func openFromParent(dir string) (*os.Root, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	parent, name := filepath.Split(dir)
	if name == "" {
		return nil, os.ErrInvalid // a volume's root
	}
	p, err := os.OpenRoot(parent)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	return p.OpenRoot(name)
}
