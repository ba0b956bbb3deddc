//go:build !unix

package smartclient

import (
	"io/fs"
	"os"
)

// renameAt and linkAt have no portable single-call form: the caller
// renames or links through the install's root.
func (d disk) renameAt(a, b string) (bool, error) { return false, nil }
func (d disk) linkAt(a, b string) (bool, error)   { return false, nil }

// readDir lists folder dir of the install, sorted by name.
func (d disk) readDir(dir string) ([]fs.DirEntry, error) { return fs.ReadDir(d.FS(), dir) }

// openAt: the caller opens through the install's root.
func (d disk) openAt(string, int, fs.FileMode) (*os.File, bool, error) { return nil, false, nil }
