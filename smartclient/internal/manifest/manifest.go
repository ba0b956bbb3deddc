// Package manifest is the server's list of files as the client takes it:
// read from the session, validated whole before the client asks for a
// byte (Read is the only way to a Manifest, so no check can be skipped),
// and kept between syncs so that the next one asks by sketch for only the
// entries that changed (Cache).
//
// It imports syncproto, internal/releasecheck (the rules every path,
// name, mode, size and link must meet, shared with the server) and the
// install package (for the folder where the kept manifest lives), and
// nothing else of the client.
package manifest

import (
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/internal/releasecheck"
	"github.com/erpupdate/smartsync/internal/version"
	"github.com/erpupdate/smartsync/syncproto"
)

// File is one file of the server's manifest, as the client uses it.
type File struct {
	Path     string
	Size     int64
	MtimeNs  int64
	Mode     fs.FileMode
	Hash     [32]byte
	Preserve bool
	Target   string // a symbolic link's target; "" for a file
	// Dir marks a folder that holds nothing in the release
	// (syncproto.FlagDir): the client makes it; it has no size, time,
	// hash or target, and no other entry lies below it.
	Dir bool
}

// Manifest is the validated list of the server's files; a file's index is
// its index on the wire. Read is the only way to make one, so every
// Manifest has passed every check of validate.go and internal/releasecheck;
// it does not change after.
type Manifest struct {
	build string
	files []File
	total int64
	// postInstall is the listed file to run after a switch that changed
	// files, for at most postInstallTimeout; "" for none.
	postInstall        string
	postInstallTimeout time.Duration
	digest             [32]byte // see syncproto.Digester
}

// Build returns the build the manifest's release is.
func (m *Manifest) Build() string { return m.build }

// Len returns the number of files.
func (m *Manifest) Len() int { return len(m.files) }

// File returns file i, in wire order.
func (m *Manifest) File(i int) File { return m.files[i] }

// All yields every file with its index, in wire order.
func (m *Manifest) All() iter.Seq2[int, File] {
	return func(yield func(int, File) bool) {
		for i, f := range m.files {
			if !yield(i, f) {
				return
			}
		}
	}
}

// Total returns the bytes of every file together.
func (m *Manifest) Total() int64 { return m.total }

// PostInstall returns the listed file to run after a switch that changed
// files, and for how long it may run at most; "" for none.
func (m *Manifest) PostInstall() (path string, timeout time.Duration) {
	return m.postInstall, m.postInstallTimeout
}

// Digest returns the manifest's digest (see syncproto.Digester), which a
// client names to ask whether it is still current.
func (m *Manifest) Digest() [32]byte { return m.digest }

// ErrUpToDate is what Read returns when the server answered UpToDate
// instead of sending a manifest.
var ErrUpToDate = errors.New("smartclient: the installed manifest is current")

// ErrBad marks a manifest the client refuses before it downloads a byte.
var ErrBad = errors.New("smartclient: server sent an invalid manifest")

// Source is where a manifest is read from: the next message, of any type
// or of type t.
type Source interface {
	Read() (syncproto.Message, error)
	Expect(t syncproto.MsgType) (syncproto.Message, error)
}

// Options are what Read needs besides the messages; the zero value reads
// a manifest sent whole.
type Options struct {
	// Cache is the client's kept manifest (see OpenCache), or nil: Read
	// keeps in it the manifest it reads, and when the client asked with
	// GetSketch, sends the sketch with Send and rebuilds the manifest
	// from the server's entries and runs of kept ones.
	Cache *Cache
	Send  func(...syncproto.Message) error
	// Count, when set, is told how many entries the header announces (at
	// most syncproto.MaxFiles) before they are read.
	Count func(n int)
	// Compressed says that the client asked with syncproto.GetZManifest:
	// the frames after the header come as ManifestZ frames, whose
	// stream is decompressed (with a bounded window, to at most
	// syncproto.MaxManifestZ bytes) and must end with the last of them.
	Compressed bool
}

// Read reads and validates a whole manifest. It runs before the client
// requests a single file, so a manifest with one bad entry costs nothing
// but the manifest: see validate.go for what is refused and why. An
// error that refuses the manifest wraps ErrBad.
func Read(r Source, o Options) (man *Manifest, err error) {
	cache, send := o.Cache, o.Send
	drop := false // the kept manifest gave a wrong one
	defer func() { cache.close(err == nil, drop) }()
	m, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	if _, ok := m.(syncproto.UpToDate); ok {
		return nil, ErrUpToDate
	}
	h, ok := m.(syncproto.ManifestHeader)
	if !ok {
		return nil, fmt.Errorf("reading manifest: expected ManifestHeader or UpToDate, got %v: %w", m.Type(), syncproto.ErrUnexpected)
	}
	// The build is stored in the client's state and shown by status: one
	// that is not a build is refused before it is kept anywhere.
	if _, err := version.Parse(h.Build); err != nil {
		return nil, fmt.Errorf("reading manifest: its build %s is not a build: %w", h.Build, ErrBad)
	}
	if o.Count != nil {
		// The count is at most syncproto.MaxFiles.
		o.Count(int(h.Count))
	}
	cache.keep(h)
	sketch := cache.Sketching()
	if sketch {
		if err := cache.sendSketch(send); err != nil {
			return nil, err
		}
	}
	if o.Compressed {
		z, zerr := syncproto.NewZReader(r, syncproto.MaxManifestZ(h.Count))
		if zerr != nil {
			return nil, zerr
		}
		defer z.Close()
		r = z.Reader
		defer func() {
			if err == nil {
				if err = z.End(); err != nil {
					man = nil
					err = fmt.Errorf("%w: %w", ErrBad, err)
				}
			}
		}()
	}
	digest := syncproto.NewDigester(h)
	man = &Manifest{build: h.Build, files: make([]File, 0, min(h.Count, 1<<16)),
		postInstall: h.PostInstall, postInstallTimeout: time.Duration(h.PostInstallTimeout) * time.Second}
	// seen maps every path's fold key to its entry: two paths with one
	// key are one file on Windows or macOS, so the manifest may not hold
	// both.
	seen := make(map[string]int, min(h.Count, 1<<16))
	keys := make([]string, 0, min(h.Count, 1<<16))
	pathBytes, targetBytes := 0, 0
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
					return nil, fmt.Errorf("%w: a run of %d kept entries at entry %d of %d", ErrBad, m.Count, i, h.Count)
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
			return nil, fmt.Errorf("%w: paths add up to more than %d bytes", ErrBad, syncproto.MaxManifestPathBytes)
		}
		targetBytes += len(e.Target)
		if targetBytes > syncproto.MaxManifestPathBytes {
			return nil, fmt.Errorf("%w: link targets add up to more than %d bytes", ErrBad, syncproto.MaxManifestPathBytes)
		}
		f, err := checkEntry(e)
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d %q: %w", ErrBad, i, e.Path, err)
		}
		key := releasecheck.FoldKey(e.Path)
		if j, dup := seen[key]; dup {
			if other := man.files[j].Path; other != e.Path {
				return nil, fmt.Errorf("%w: entries %d %q and %d %q are one file on Windows or macOS (%s)",
					ErrBad, j, other, i, e.Path, releasecheck.SameFileWhy(other, e.Path))
			}
			return nil, fmt.Errorf("%w: entries %d and %d are both %q", ErrBad, j, i, e.Path)
		}
		seen[key] = int(i)
		keys = append(keys, key)
		man.total += f.Size // no overflow: at most MaxFiles entries of maxFileSize
		man.files = append(man.files, f)
	}
	man.digest = digest.Sum()
	if sketch {
		m, err := r.Expect(syncproto.MsgManifestEnd)
		if err != nil {
			return nil, fmt.Errorf("reading the manifest's digest: %w", err)
		}
		if d := m.(syncproto.ManifestEnd).Digest; d != man.digest {
			// The kept manifest will not be asked by again.
			drop = true
			return nil, fmt.Errorf("%w: the manifest rebuilt from the kept one has digest %x, the server's is %x; the kept one is dropped", ErrBad, man.digest, d)
		}
	}
	if err := checkLinks(man.files); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBad, err)
	}
	if uint64(man.total) != h.TotalBytes {
		return nil, fmt.Errorf("%w: entries add up to %d bytes, header says %d", ErrBad, man.total, h.TotalBytes)
	}
	// A file may not sit below another file's name ("a" and "a/b", or
	// "A/b"). Every parent of every path is looked up, rather than
	// neighbours compared after sorting, which misses "a", "a-b", "a/c".
	for i, key := range keys {
		for j := strings.LastIndexByte(key, '/'); j > 0; j = strings.LastIndexByte(key[:j], '/') {
			if k, ok := seen[key[:j]]; ok {
				what := "a file"
				if man.files[k].Dir {
					what = "an empty folder"
				}
				return nil, fmt.Errorf("%w: entry %d %q is %s, and entry %d %q needs it to be a folder that holds it",
					ErrBad, k, man.files[k].Path, what, i, man.files[i].Path)
			}
		}
	}
	if man.postInstall != "" && !slices.ContainsFunc(man.files, func(f File) bool { return f.Path == man.postInstall && !f.Dir }) {
		return nil, fmt.Errorf("%w: the post-install program %q is not in the manifest", ErrBad, man.postInstall)
	}
	if man.postInstall != "" && (man.postInstallTimeout <= 0 || man.postInstallTimeout > time.Hour) {
		return nil, fmt.Errorf("%w: post-install time limit %v out of range", ErrBad, man.postInstallTimeout)
	}
	return man, nil
}
