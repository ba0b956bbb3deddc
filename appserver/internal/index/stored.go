package index

import (
	"os"
	"path/filepath"
	"strings"
)

// Stored returns the manifest of a release kept in the server's release
// store (appserver/internal/releases) rather than read from an update
// folder: each file is opened from objects as name(hash), and since an
// object never changes, a sender need neither check it against a scan nor
// hash what it sends (see Unchanged and MustHash). files must be sorted by
// path; their Preserve flags are set from rel, as a scan sets them.
func Stored(osName string, files []File, rel Release, objects *os.Root, name func([32]byte) string) *Manifest {
	m := &Manifest{OS: osName, Build: rel.Build, Files: files, rel: &rel, objects: objects, objectName: name}
	for i := range m.Files {
		f := &m.Files[i]
		f.Preserve = !f.Dir && preservedBy(rel.Preserve, f.Path)
		if f.Target == "" && !f.Dir {
			m.TotalBytes += f.Size
		}
	}
	return m
}

// IsStored reports whether the manifest is of a stored release.
func (m *Manifest) IsStored() bool { return m.objects != nil }

// OpenFile opens file f of the manifest for reading: from its folder, or
// from the store's objects.
func (m *Manifest) OpenFile(f File) (*os.File, error) {
	if m.objects != nil {
		return m.objects.Open(filepath.FromSlash(m.objectName(f.Hash)))
	}
	return m.root.Open(filepath.FromSlash(f.Path))
}

// Unchanged reports whether fh, opened by OpenFile, still holds f as the
// manifest describes it: for a folder, File.Matches; a stored object is
// never changed, so its size is enough.
func (m *Manifest) Unchanged(f File, fh *os.File) bool {
	if m.objects == nil {
		return f.Matches(fh)
	}
	fi, err := fh.Stat()
	return err == nil && fi.Size() == f.Size
}

// MustHash reports whether a sender must hash what it reads of f to be
// sure it sends what the manifest describes: a file of a folder whose
// change time is not read (see Matches). Objects were hashed as they
// entered the store.
func (m *Manifest) MustHash(f File) bool { return m.objects == nil && f.CtimeNs == 0 }

// preservedBy reports whether rel is one of the Preserve paths, which
// Windows clients see case-insensitively: the administrator's spelling
// need not match the folder's.
func preservedBy(preserve []string, rel string) bool {
	for _, p := range preserve {
		if strings.EqualFold(p, rel) {
			return true
		}
	}
	return false
}
