package smartclient

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest"
	"github.com/erpupdate/smartsync/smartclient/internal/state"
	"github.com/zeebo/blake3"
)

// plan is what one sync will do.
type plan struct {
	fetch      []int    // manifest indices to download
	links      []int    // symbolic links to make
	dirs       []int    // empty folders to make
	touch      []int    // same content, only the mtime differs
	current    []int    // already as the server has them
	kept       []int    // preserved files left as the user has them
	remove     []string // installed by an earlier sync, no longer listed
	fetchBytes int64
	// known holds what the client now knows of current files: the
	// state for the next sync.
	known map[string]state.FileState
}

func (p *plan) empty() bool {
	return len(p.fetch) == 0 && len(p.links) == 0 && len(p.dirs) == 0 && len(p.touch) == 0 && len(p.remove) == 0
}

// changesContent reports whether the plan replaces or removes files, or
// makes folders, and so needs a backup; fixing mtimes does not.
func (p *plan) changesContent() bool {
	return len(p.fetch) > 0 || len(p.links) > 0 || len(p.dirs) > 0 || len(p.remove) > 0
}

// changes lists the plan for people, in manifest order then removals.
func (p *plan) changes(man *manifest.Manifest) []Change {
	var out []Change
	add := func(kind string, idx []int) {
		for _, i := range idx {
			out = append(out, Change{Kind: kind, Path: man.File(i).Path})
		}
	}
	add("fetch", p.fetch)
	add("link", p.links)
	add("mkdir", p.dirs)
	add("retime", p.touch)
	for _, r := range p.remove {
		out = append(out, Change{Kind: "remove", Path: r})
	}
	slices.SortStableFunc(out, func(a, b Change) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// installs lists what the switch renames into place: fetched files, new
// links and new empty folders.
func (p *plan) installs() []int { return slices.Concat(p.fetch, p.links, p.dirs) }

// makePlan compares the manifest with the install folder. A full plan
// (incompatible builds) fetches every file, preserved ones included. same
// names regular files just found with the size and mtime the state
// records (see state.Check), which are not looked up again.
func makePlan(root *os.Root, st *state.State, man *manifest.Manifest, full bool, same map[string]bool, log *slog.Logger) (*plan, error) {
	p := &plan{known: make(map[string]state.FileState, man.Len())}
	listed := make(map[string]bool, man.Len())
	d := install.New(root) // one open per folder, not per file
	defer d.CloseCache()
	for i, f := range man.All() {
		listed[strings.ToLower(f.Path)] = true
		var fi fs.FileInfo
		var err error
		if k, ok := st.Files[f.Path]; ok && same[f.Path] {
			fi = recordedInfo{name: path.Base(f.Path), k: k}
		} else {
			fi, err = d.Lstat(f.Path)
		}
		if f.Target != "" {
			if err := planLink(root, p, i, f, fi, err); err != nil {
				return nil, err
			}
			continue
		}
		if f.Dir {
			if err := planDir(p, i, f, fi, err); err != nil {
				return nil, err
			}
			continue
		}
		switch {
		case errors.Is(err, fs.ErrNotExist):
			p.fetch = append(p.fetch, i)
			continue
		case err != nil:
			return nil, fmt.Errorf("planning: %w", err)
		case fi.IsDir():
			return nil, fmt.Errorf("planning: cannot install %s: a folder of that name is in the way", f.Path)
		case !fi.Mode().IsRegular():
			return nil, fmt.Errorf("planning: cannot install %s: a %v of that name is in the way", f.Path, fi.Mode().Type())
		}
		// The hash in hex without a string for each of 20,000 files:
		// the comparison below does not keep it.
		var hexHash [2 * len(f.Hash)]byte
		hex.Encode(hexHash[:], f.Hash[:])
		k, installed := st.Files[f.Path]
		untouched := installed && k.Size == fi.Size() && k.MtimeNs == fi.ModTime().UnixNano()
		sameHash := k.Hash == string(hexHash[:])
		switch {
		case full:
			p.fetch = append(p.fetch, i)
		case f.Preserve:
			p.kept = append(p.kept, i)
		case untouched && sameHash && k.ServerMtimeNs == f.MtimeNs:
			// As installed, for this very release: compared with the
			// state, not the server's mtime, which the file system may
			// have rounded.
			p.current = append(p.current, i)
			p.known[f.Path] = k
		case untouched && sameHash:
			p.touch = append(p.touch, i)
		case untouched:
			// The client knows this content, and it is not the
			// release's, whatever its size and mtime say.
			p.fetch = append(p.fetch, i)
		case fi.Size() == f.Size && fi.ModTime().UnixNano() == f.MtimeNs:
			p.current = append(p.current, i)
			p.known[f.Path] = state.FileState{Size: f.Size, MtimeNs: f.MtimeNs, Hash: string(hexHash[:]), ServerMtimeNs: f.MtimeNs}
		default:
			p.fetch = append(p.fetch, i)
		}
	}
	for _, i := range p.fetch {
		p.fetchBytes += man.File(i).Size
	}
	for name, k := range st.Files {
		switch {
		case listed[strings.ToLower(name)]:
			// Still listed, perhaps with other letter case: on Windows
			// and macOS that is the same file, and removing the old
			// name would remove the new one.
		case k.Preserve:
			// The workstation's own copy now; never removed.
		case k.IsDir():
			// An empty folder a release no longer lists is left where
			// it is, with whatever the user put in it since.
		default:
			fi, err := root.Lstat(name)
			switch {
			case err != nil:
				continue // gone already: just forgotten
			case fi.Mode()&fs.ModeSymlink != 0:
				// A link the client made goes if it still points where
				// the client made it point.
				target, err := root.Readlink(name)
				if sum := blake3.Sum256([]byte(target)); err != nil || hex.EncodeToString(sum[:]) != k.Hash {
					continue
				}
			case !fi.Mode().IsRegular():
				continue
			case fi.Size() != k.Size || fi.ModTime().UnixNano() != k.MtimeNs:
				log.Info("leaving a file the user changed, though the server no longer lists it", "path", name)
				continue
			}
			p.remove = append(p.remove, name)
		}
	}
	sort.Strings(p.remove)
	return p, checkParents(root, man, p)
}

// recordedInfo is the FileInfo of a regular file found as the state
// records it.
type recordedInfo struct {
	name string
	k    state.FileState
}

func (r recordedInfo) Name() string       { return r.name }
func (r recordedInfo) Size() int64        { return r.k.Size }
func (r recordedInfo) Mode() fs.FileMode  { return 0o644 }
func (r recordedInfo) ModTime() time.Time { return time.Unix(0, r.k.MtimeNs) }
func (r recordedInfo) IsDir() bool        { return false }
func (r recordedInfo) Sys() any           { return nil }

// planLink decides for the link f: current if the install has that very
// link, made anew otherwise (replacing a file or another link).
func planLink(root *os.Root, p *plan, i int, f manifest.File, fi fs.FileInfo, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("planning: %w", err)
	case fi.IsDir():
		return fmt.Errorf("planning: cannot make the link %s: a folder of that name is in the way", f.Path)
	case fi.Mode()&fs.ModeSymlink != 0:
		if t, err := root.Readlink(f.Path); err == nil && t == f.Target {
			p.current = append(p.current, i)
			p.known[f.Path] = state.FileState{Size: f.Size, MtimeNs: fi.ModTime().UnixNano(), Hash: hex.EncodeToString(f.Hash[:]), ServerMtimeNs: f.MtimeNs}
			return nil
		}
	}
	p.links = append(p.links, i)
	return nil
}

// planDir decides for the empty folder f: current if the install has a
// folder there, made otherwise. Something else in its place (a file, a
// link) is an error here, before anything changes, unless the switch
// removes it first (see checkParents).
func planDir(p *plan, i int, f manifest.File, fi fs.FileInfo, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("planning: %w", err)
	case fi.IsDir():
		p.current = append(p.current, i)
		p.known[f.Path] = state.FileState{Hash: state.DirHash}
		return nil
	}
	p.dirs = append(p.dirs, i)
	return nil
}

// linkFinder tells whether a folder of the install, or one above it, is a
// symbolic link, remembering what it looked up.
type linkFinder struct {
	root     *os.Root
	removing map[string]bool // links the switch removes first: not in the way
	seen     map[string]bool
}

func (l *linkFinder) via(dir string) bool {
	if dir == "." || dir == "/" {
		return false
	}
	if v, ok := l.seen[dir]; ok {
		return v
	}
	fi, err := l.root.Lstat(dir)
	v := err == nil && fi.Mode()&fs.ModeSymlink != 0 && !l.removing[dir] || l.via(path.Dir(dir))
	if l.seen == nil {
		l.seen = map[string]bool{}
	}
	l.seen[dir] = v
	return v
}

// checkParents makes sure every fetched file's folder can be created: a
// file the client did not install must never be in the way, and finding
// that out halfway through the switch would be too late. Nor is anything
// written or removed through a symbolic link planted in the install: the
// os.Root keeps the client inside the install folder, but a link inside
// it would still redirect a write to another of its files.
func checkParents(root *os.Root, man *manifest.Manifest, p *plan) error {
	removing := make(map[string]bool, len(p.remove))
	for _, r := range p.remove {
		removing[r] = true
	}
	viaLink := (&linkFinder{root: root, removing: removing}).via
	checked := map[string]bool{}
	for _, i := range p.dirs {
		name := man.File(i).Path
		if fi, err := root.Lstat(name); err == nil && !removing[name] {
			return fmt.Errorf("planning: cannot make the folder %s: a %s of that name is in the way", name, kindName(fi.Mode()))
		}
	}
	for _, i := range p.installs() {
		name := man.File(i).Path
		if viaLink(path.Dir(name)) {
			return fmt.Errorf("planning: will not install %s: a folder on its path in the install is a symbolic link", name)
		}
		for dir := path.Dir(name); dir != "." && !checked[dir]; dir = path.Dir(dir) {
			checked[dir] = true
			fi, err := root.Lstat(dir)
			if err == nil && !fi.IsDir() && !removing[dir] {
				return fmt.Errorf("planning: cannot install %s: %s is a file, not a folder", name, dir)
			}
		}
	}
	// A file to remove that sits behind a link is not the file the
	// client installed: it is left alone and forgotten.
	p.remove = slices.DeleteFunc(p.remove, func(name string) bool { return viaLink(path.Dir(name)) })
	// A file that looked current through a link the switch removes (a
	// link turned into a folder) is really missing: fetch it.
	underRemoved := func(name string) bool {
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if removing[dir] {
				return true
			}
		}
		return false
	}
	for _, list := range []*[]int{&p.current, &p.touch, &p.kept} {
		*list = slices.DeleteFunc(*list, func(i int) bool {
			if !underRemoved(man.File(i).Path) {
				return false
			}
			delete(p.known, man.File(i).Path)
			if man.File(i).Dir {
				p.dirs = append(p.dirs, i)
			} else if man.File(i).Target != "" {
				p.links = append(p.links, i)
			} else {
				p.fetch = append(p.fetch, i)
				p.fetchBytes += man.File(i).Size
			}
			return true
		})
	}
	return nil
}

// kindName names what a file of mode m is, for an error.
func kindName(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "file"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m.IsDir():
		return "folder"
	}
	return m.Type().String() + " file"
}
