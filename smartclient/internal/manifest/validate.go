package manifest

// The manifest comes from the network, so nothing in it is trusted: every
// entry is checked here before the client downloads a byte or creates a
// folder. The rules of paths, names, modes, sizes and links are
// internal/releasecheck's, the ones the server applies to its update
// folders too; what is left here is the wire's (flags, hashes, times).

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/erpupdate/smartsync/internal/releasecheck"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/zeebo/blake3"
)

// The limits of a release are syncproto's: this fails to compile if they
// ever differ (a negative constant does not convert to uint).
const (
	_ = uint(releasecheck.MaxPath-syncproto.MaxPath) + uint(syncproto.MaxPath-releasecheck.MaxPath)
	_ = uint(releasecheck.MaxFiles-syncproto.MaxFiles) + uint(syncproto.MaxFiles-releasecheck.MaxFiles)
	_ = uint(releasecheck.MaxPathBytes-syncproto.MaxManifestPathBytes) + uint(syncproto.MaxManifestPathBytes-releasecheck.MaxPathBytes)
)

// checkEntry validates one manifest entry and returns it as the client
// uses it. The error says what is wrong; the caller names the entry.
func checkEntry(e syncproto.ManifestEntry) (File, error) {
	if err := releasecheck.CheckPath(e.Path); err != nil {
		return File{}, err
	}
	if err := releasecheck.CheckMode(e.Mode); err != nil {
		return File{}, err
	}
	if err := releasecheck.CheckSize(e.Size); err != nil {
		return File{}, err
	}
	if e.MtimeNs < 0 {
		return File{}, fmt.Errorf("modification time %d is before 1970", e.MtimeNs)
	}
	if e.Flags&^(syncproto.FlagPreserve|syncproto.FlagSymlink|syncproto.FlagDir) != 0 {
		return File{}, fmt.Errorf("unknown flags %#x", e.Flags)
	}
	if e.Flags&syncproto.FlagDir != 0 {
		return checkDir(e)
	}
	link := e.Flags&syncproto.FlagSymlink != 0
	switch {
	case link && (e.Target == "" || e.Size != uint64(len(e.Target)) || e.Hash != blake3.Sum256([]byte(e.Target))):
		return File{}, fmt.Errorf("symbolic link to %q: size or hash does not describe its target", e.Target)
	case !link && e.Target != "":
		return File{}, fmt.Errorf("a file with a link target %q", e.Target)
	}
	return File{
		Path: e.Path, Size: int64(e.Size), MtimeNs: e.MtimeNs, Mode: fs.FileMode(e.Mode).Perm(),
		Hash: e.Hash, Preserve: e.Flags&syncproto.FlagPreserve != 0, Target: e.Target,
	}, nil
}

// checkDir validates an entry with FlagDir: an empty folder, described by
// its path and permission bits alone. Anything else in it (a size, a hash,
// a target, another flag) is a server that does not know what it sends.
func checkDir(e syncproto.ManifestEntry) (File, error) {
	switch {
	case e.Flags != syncproto.FlagDir:
		return File{}, fmt.Errorf("a folder with flags %#x besides the folder's", e.Flags&^syncproto.FlagDir)
	case e.Size != 0:
		return File{}, fmt.Errorf("a folder that declares %d bytes", e.Size)
	case e.Target != "":
		return File{}, fmt.Errorf("a folder with a link target %q", e.Target)
	case e.Hash != [syncproto.HashSize]byte{}:
		return File{}, errors.New("a folder with a content hash")
	case e.MtimeNs != 0:
		return File{}, fmt.Errorf("a folder with a modification time %d", e.MtimeNs)
	}
	return File{Path: e.Path, Mode: fs.FileMode(e.Mode).Perm(), Dir: true}, nil
}

// checkLinks is releasecheck.CheckLinks over the manifest's files.
func checkLinks(files []File) error {
	return releasecheck.CheckLinks(func(yield func(string, string) bool) {
		for _, f := range files {
			if !yield(f.Path, f.Target) {
				return
			}
		}
	})
}
