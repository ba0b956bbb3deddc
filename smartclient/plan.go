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
	"github.com/erpupdate/smartsync/smartclient/internal/state"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/zeebo/blake3"
)

// remoteFile is one file of the server's manifest, as the client uses it.
type remoteFile struct {
	Path     string
	Size     int64
	MtimeNs  int64
	Mode     fs.FileMode
	Hash     [32]byte
	Preserve bool
	Target   string // a symbolic link's target; "" for a file
}

// manifest is the validated list of the server's files; a file's index in
// Files is its index on the wire.
type manifest struct {
	Build string
	Files []remoteFile
	Total int64
	// PostInstall is the listed file to run after a switch that changed
	// files, for at most PostInstallTimeout; "" for none.
	PostInstall        string
	PostInstallTimeout time.Duration
	Digest             [32]byte // see syncproto.Digester
}

// errUpToDate is what readManifest returns when the server answered
// UpToDate instead of sending a manifest.
var errUpToDate = errors.New("smartclient: the installed manifest is current")

// ErrBadManifest marks a manifest the client refuses before it downloads
// a byte.
var ErrBadManifest = errors.New("smartclient: server sent an invalid manifest")

// expecter reads the next message, of any type or of type t.
type expecter interface {
	Read() (syncproto.Message, error)
	Expect(t syncproto.MsgType) (syncproto.Message, error)
}

// readManifest reads and validates a whole manifest. It runs before the
// client requests a single file, so a manifest with one bad entry costs
// nothing but the manifest: see validate.go for what is refused and why.
func readManifest(r expecter) (*manifest, error) {
	return readManifestWith(r, nil, nil)
}

// readManifestWith is readManifest with the client's kept manifest, if
// cache is not nil: it keeps the manifest it reads, and when the client
// asked with GetSketch it sends the sketch with send and rebuilds the
// manifest from the server's entries and runs of kept ones.
func readManifestWith(r expecter, cache *manifestCache, send func(...syncproto.Message) error) (man *manifest, err error) {
	drop := false // the kept manifest gave a wrong one
	defer func() { cache.close(err == nil, drop) }()
	m, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	if _, ok := m.(syncproto.UpToDate); ok {
		return nil, errUpToDate
	}
	h, ok := m.(syncproto.ManifestHeader)
	if !ok {
		return nil, fmt.Errorf("reading manifest: expected ManifestHeader or UpToDate, got %v: %w", m.Type(), syncproto.ErrUnexpected)
	}
	// The count is at most syncproto.MaxFiles; a hostile one makes the
	// collector lazier, no worse.
	sizeMemory(int(h.Count))
	cache.keep(h)
	sketch := cache.sketching()
	if sketch {
		if err := cache.sendSketch(send); err != nil {
			return nil, err
		}
	}
	digest := syncproto.NewDigester(h)
	man = &manifest{Build: h.Build, Files: make([]remoteFile, 0, min(h.Count, 1<<16)),
		PostInstall: h.PostInstall, PostInstallTimeout: time.Duration(h.PostInstallTimeout) * time.Second}
	// seen maps every path's fold key to its entry: two paths with one
	// key are one file on Windows or macOS, so the manifest may not hold
	// both.
	seen := make(map[string]int, min(h.Count, 1<<16))
	keys := make([]string, 0, min(h.Count, 1<<16))
	pathBytes := 0
	var same uint32 // entries of the current run of kept ones still to come
	for i := range h.Count {
		var e syncproto.ManifestEntry
		if same > 0 {
			if e, err = cache.entry(); err != nil {
				return nil, err
			}
			same--
		} else {
			m, err := r.Read()
			if err != nil {
				return nil, fmt.Errorf("reading manifest entry %d of %d: %w", i, h.Count, err)
			}
			switch m := m.(type) {
			case syncproto.ManifestEntry:
				e = m
			case syncproto.ManifestSame:
				if !sketch {
					return nil, fmt.Errorf("reading manifest entry %d of %d: a run of kept entries, but the client sent no sketch: %w", i, h.Count, syncproto.ErrUnexpected)
				}
				if uint64(m.Count) > uint64(h.Count-i) {
					return nil, fmt.Errorf("%w: a run of %d kept entries at entry %d of %d", ErrBadManifest, m.Count, i, h.Count)
				}
				if err := cache.run(m); err != nil {
					return nil, err
				}
				if e, err = cache.entry(); err != nil {
					return nil, err
				}
				same = m.Count - 1
			default:
				return nil, fmt.Errorf("reading manifest entry %d of %d: expected ManifestEntry, got %v: %w", i, h.Count, m.Type(), syncproto.ErrUnexpected)
			}
		}
		cache.keep(e)
		digest.Add(e)
		pathBytes += len(e.Path)
		if pathBytes > syncproto.MaxManifestPathBytes {
			return nil, fmt.Errorf("%w: paths add up to more than %d bytes", ErrBadManifest, syncproto.MaxManifestPathBytes)
		}
		f, err := checkEntry(e)
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d %q: %w", ErrBadManifest, i, e.Path, err)
		}
		key := foldKey(e.Path)
		if j, dup := seen[key]; dup {
			if other := man.Files[j].Path; other != e.Path {
				return nil, fmt.Errorf("%w: entries %d %q and %d %q are one file on Windows or macOS (%s)",
					ErrBadManifest, j, other, i, e.Path, sameFileWhy(other, e.Path))
			}
			return nil, fmt.Errorf("%w: entries %d and %d are both %q", ErrBadManifest, j, i, e.Path)
		}
		seen[key] = int(i)
		keys = append(keys, key)
		man.Total += f.Size // no overflow: at most MaxFiles entries of maxFileSize
		man.Files = append(man.Files, f)
	}
	man.Digest = digest.Sum()
	if sketch {
		m, err := r.Expect(syncproto.MsgManifestEnd)
		if err != nil {
			return nil, fmt.Errorf("reading the manifest's digest: %w", err)
		}
		if d := m.(syncproto.ManifestEnd).Digest; d != man.Digest {
			// The kept manifest will not be asked by again.
			drop = true
			return nil, fmt.Errorf("%w: the manifest rebuilt from the kept one has digest %x, the server's is %x; the kept one is dropped", ErrBadManifest, man.Digest, d)
		}
	}
	if err := checkLinks(man.Files); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	if uint64(man.Total) != h.TotalBytes {
		return nil, fmt.Errorf("%w: entries add up to %d bytes, header says %d", ErrBadManifest, man.Total, h.TotalBytes)
	}
	// A file may not sit below another file's name ("a" and "a/b", or
	// "A/b"). Every parent of every path is looked up, rather than
	// neighbours compared after sorting, which misses "a", "a-b", "a/c".
	for i, key := range keys {
		for j := strings.LastIndexByte(key, '/'); j > 0; j = strings.LastIndexByte(key[:j], '/') {
			if k, ok := seen[key[:j]]; ok {
				return nil, fmt.Errorf("%w: entry %d %q is a file, and entry %d %q needs it to be a folder",
					ErrBadManifest, k, man.Files[k].Path, i, man.Files[i].Path)
			}
		}
	}
	if man.PostInstall != "" && !slices.ContainsFunc(man.Files, func(f remoteFile) bool { return f.Path == man.PostInstall }) {
		return nil, fmt.Errorf("%w: the post-install program %q is not in the manifest", ErrBadManifest, man.PostInstall)
	}
	if man.PostInstall != "" && (man.PostInstallTimeout <= 0 || man.PostInstallTimeout > time.Hour) {
		return nil, fmt.Errorf("%w: post-install time limit %v out of range", ErrBadManifest, man.PostInstallTimeout)
	}
	return man, nil
}

// plan is what one sync will do.
type plan struct {
	fetch      []int    // manifest indices to download
	links      []int    // symbolic links to make
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
	return len(p.fetch) == 0 && len(p.links) == 0 && len(p.touch) == 0 && len(p.remove) == 0
}

// changesContent reports whether the plan replaces or removes files, and
// so needs a backup; fixing mtimes does not.
func (p *plan) changesContent() bool {
	return len(p.fetch) > 0 || len(p.links) > 0 || len(p.remove) > 0
}

// installs lists what the switch renames into place: fetched files and
// new links.
func (p *plan) installs() []int { return slices.Concat(p.fetch, p.links) }

// makePlan compares the manifest with the install folder. A full plan
// (incompatible builds) fetches every file, preserved ones included. same
// names regular files just found with the size and mtime the state
// records (see state.Check), which are not looked up again.
func makePlan(root *os.Root, st *state.State, man *manifest, full bool, same map[string]bool, log *slog.Logger) (*plan, error) {
	p := &plan{known: make(map[string]state.FileState, len(man.Files))}
	listed := make(map[string]bool, len(man.Files))
	d := install.New(root) // one open per folder, not per file
	defer d.CloseCache()
	for i, f := range man.Files {
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
		p.fetchBytes += man.Files[i].Size
	}
	for name, k := range st.Files {
		switch {
		case listed[strings.ToLower(name)]:
			// Still listed, perhaps with other letter case: on Windows
			// and macOS that is the same file, and removing the old
			// name would remove the new one.
		case k.Preserve:
			// The workstation's own copy now; never removed.
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
func planLink(root *os.Root, p *plan, i int, f remoteFile, fi fs.FileInfo, err error) error {
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
func checkParents(root *os.Root, man *manifest, p *plan) error {
	removing := make(map[string]bool, len(p.remove))
	for _, r := range p.remove {
		removing[r] = true
	}
	viaLink := (&linkFinder{root: root, removing: removing}).via
	checked := map[string]bool{}
	for _, i := range p.installs() {
		name := man.Files[i].Path
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
			if !underRemoved(man.Files[i].Path) {
				return false
			}
			delete(p.known, man.Files[i].Path)
			if man.Files[i].Target != "" {
				p.links = append(p.links, i)
			} else {
				p.fetch = append(p.fetch, i)
				p.fetchBytes += man.Files[i].Size
			}
			return true
		})
	}
	return nil
}
