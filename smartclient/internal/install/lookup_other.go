//go:build !(linux && (amd64 || arm64 || riscv64))

package install

import (
	"io/fs"
	"os"
)

// rootDir is a folder looked into through an os.Root.
type rootDir struct {
	r    *os.Root
	owns bool // opened for the lookup, so closed after it
}

// OpenLookupRoot opens the install folder root as a LookupDir.
func OpenLookupRoot(root *os.Root) (LookupDir, error) {
	return rootDir{r: root}, nil
}

func (d rootDir) Open(name []byte) (LookupDir, error) {
	r, err := d.r.OpenRoot(string(name))
	if err != nil {
		return nil, err
	}
	return rootDir{r: r, owns: true}, nil
}

func (d rootDir) Lstat(name []byte) (LookupInfo, error) {
	fi, err := d.r.Lstat(string(name))
	if err != nil {
		return LookupInfo{}, err
	}
	info := LookupInfo{Kind: KindOther, Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano()}
	switch {
	case fi.Mode().IsRegular():
		info.Kind = KindRegular
	case fi.Mode()&fs.ModeSymlink != 0:
		info.Kind = KindLink
	case fi.IsDir():
		info.Kind = KindDir
	}
	return info, nil
}

func (d rootDir) Readlink(name []byte) (string, error) {
	return d.r.Readlink(string(name))
}

func (d rootDir) Close() {
	if d.owns {
		d.r.Close()
	}
}
