//go:build !unix

package install

import (
	"io/fs"
	"os"
)

// renameAt and linkAt have no portable single-call form: the caller
// renames or links through the install's root.
func (d *Disk) renameAt(a, b string) (bool, error) { return false, nil }
func (d *Disk) linkAt(a, b string) (bool, error)   { return false, nil }

// ReadDir lists folder dir of the install, sorted by name.
func (d *Disk) ReadDir(dir string) ([]fs.DirEntry, error) { return fs.ReadDir(d.FS(), dir) }

// openAt: the caller opens through the install's root.
func (d *Disk) openAt(string, int, fs.FileMode) (*os.File, bool, error) { return nil, false, nil }
