//go:build !(linux && (amd64 || arm64 || riscv64))

package smartclient

import (
	"io/fs"
	"os"
)

// rootDir is a folder looked into through an os.Root.
type rootDir struct {
	r    *os.Root
	owns bool // opened for the lookup, so closed after it
}

// openLookupRoot opens the install for checkInstall.
func openLookupRoot(root *os.Root) (lookupDir, error) {
	return rootDir{r: root}, nil
}

func (d rootDir) open(name []byte) (lookupDir, error) {
	r, err := d.r.OpenRoot(string(name))
	if err != nil {
		return nil, err
	}
	return rootDir{r: r, owns: true}, nil
}

func (d rootDir) lstat(name []byte) (lookupInfo, error) {
	fi, err := d.r.Lstat(string(name))
	if err != nil {
		return lookupInfo{}, err
	}
	info := lookupInfo{kind: kindOther, size: fi.Size(), mtimeNs: fi.ModTime().UnixNano()}
	switch {
	case fi.Mode().IsRegular():
		info.kind = kindRegular
	case fi.Mode()&fs.ModeSymlink != 0:
		info.kind = kindLink
	}
	return info, nil
}

func (d rootDir) readlink(name []byte) (string, error) {
	return d.r.Readlink(string(name))
}

func (d rootDir) close() {
	if d.owns {
		d.r.Close()
	}
}
