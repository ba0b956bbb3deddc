package install

import (
	"bytes"
	"errors"
)

// LookupDir is an open folder of the install in which files are looked
// up, never through a link; a lookup of a nested path through an os.Root
// opens every folder on the way, so each folder is opened once, from its
// parent (see DirStack). OpenLookupRoot opens the install itself.
//
// A LookupDir is not safe for concurrent use.
type LookupDir interface {
	// Open opens the folder name in this one ("." for itself).
	Open(name []byte) (LookupDir, error)
	// Lstat looks name up, without following a link.
	Lstat(name []byte) (LookupInfo, error)
	// Readlink returns the target of the link name.
	Readlink(name []byte) (string, error)
	Close()
}

// LookupInfo is what a lookup says of a file.
type LookupInfo struct {
	Kind          Kind
	Size, MtimeNs int64
}

// Kind is the kind of file a lookup found.
type Kind int

// The kinds of file a lookup tells apart.
const (
	KindOther Kind = iota
	KindRegular
	KindLink
	KindDir
)

// DirStack holds open the folders of the path to the current folder, so
// that files taken in order of path open each folder about once.
type DirStack struct {
	Top  LookupDir   // the install, not closed by the stack
	dirs []LookupDir // the folders below Top, outermost first
	ends []int       // the length of path up to each of dirs
	path []byte      // the current folder's path, ending in "/"
	// failed is a folder that could not be opened, so that its other
	// files do not try again.
	failed []byte
}

// At returns the folder dir ("" for the install, else a path ending in
// "/"), opening what it must.
func (s *DirStack) At(dir []byte) (LookupDir, error) {
	if len(s.failed) > 0 && bytes.Equal(dir, s.failed) {
		return nil, errFolderFailed
	}
	k := len(s.dirs)
	for k > 0 && !(s.ends[k-1] <= len(dir) && bytes.Equal(dir[:s.ends[k-1]], s.path[:s.ends[k-1]])) {
		k--
	}
	for _, d := range s.dirs[k:] {
		d.Close()
	}
	s.dirs, s.ends = s.dirs[:k], s.ends[:k]
	end := 0
	if k > 0 {
		end = s.ends[k-1]
	}
	s.path = append(s.path[:end], dir[end:]...)
	cur := s.Top
	if k > 0 {
		cur = s.dirs[k-1]
	}
	for rest := dir[end:]; len(rest) > 0; {
		i := bytes.IndexByte(rest, '/')
		if i < 0 || !SafeName(rest[:i]) {
			s.failed = append(s.failed[:0], dir...)
			return nil, errFolderFailed
		}
		d, err := cur.Open(rest[:i])
		if err != nil {
			s.failed = append(s.failed[:0], dir...)
			return nil, err
		}
		end += i + 1
		s.dirs, s.ends = append(s.dirs, d), append(s.ends, end)
		cur, rest = d, rest[i+1:]
	}
	return cur, nil
}

var errFolderFailed = errors.New("folder not found")

// Close closes the folders below Top.
func (s *DirStack) Close() {
	for _, d := range s.dirs {
		d.Close()
	}
	s.dirs = nil
}

// SafeName reports whether a path's element names something inside its
// folder.
func SafeName(name []byte) bool {
	s := string(name) // no copy: compared only
	return s != "" && s != "." && s != ".."
}
