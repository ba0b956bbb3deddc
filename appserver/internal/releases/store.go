package releases

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/erpupdate/smartsync/internal/filelock"
	"github.com/zeebo/blake3"
)

// ErrNoRelease is returned for an OS, or a release number, the store has
// no record of.
var ErrNoRelease = errors.New("releases: no such release")

// recordFormat is the version of the record files; a record of another
// version is an error naming its file.
const recordFormat = 1

// Entry is one entry of a release: a file, a symbolic link or an empty
// folder, as the server's index describes it.
type Entry struct {
	Path    string `json:"path"`
	Size    int64  `json:"size,omitempty"`
	MtimeNs int64  `json:"mtime,omitempty"`
	Mode    uint32 `json:"mode"` // permission bits
	Hash    Hash   `json:"blake3"`
	Target  string `json:"target,omitempty"` // a link's target
	Dir     bool   `json:"dir,omitempty"`
}

// Hash is a BLAKE3-256 digest, written in hex.
type Hash [32]byte

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText writes the hash in hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText reads a hash in hex.
func (h *Hash) UnmarshalText(b []byte) error {
	if len(b) != 64 {
		return fmt.Errorf("hash %q: want 64 hex digits", b)
	}
	_, err := hex.Decode(h[:], b)
	return err
}

// Record is one release of one OS, as published.
type Record struct {
	Format    int       `json:"format"`
	OS        string    `json:"os"`
	Number    uint64    `json:"number"`
	Build     string    `json:"build"`
	Published time.Time `json:"published"`
	// Source is the folder the release was published from, for the
	// administrator's listing.
	Source string `json:"source"`
	// Signed is the publisher's signed statement of the release
	// (internal/releasemeta), or nil for an unsigned release.
	Signed []byte  `json:"signed,omitempty"`
	Files  []Entry `json:"files"` // sorted by Path
	// Preserve, PostInstall and PostInstallTimeout (seconds) are the
	// [UPDATE] settings the release was published with: its statement
	// signs them, so they travel with it.
	Preserve           []string `json:"preserve,omitempty"`
	PostInstall        string   `json:"post_install,omitempty"`
	PostInstallTimeout int64    `json:"post_install_timeout,omitempty"`
}

// Bytes returns the sum of the sizes of the release's files.
func (r *Record) Bytes() int64 {
	var n int64
	for _, e := range r.Files {
		if e.Target == "" && !e.Dir {
			n += e.Size
		}
	}
	return n
}

// crashHook, when a test sets it, is called at every step of a publish
// that writes (see TestCrashPoints): the test's child process exits there,
// as a killed publish would.
var crashHook func(point string)

func crashPoint(point string) {
	if crashHook != nil {
		crashHook(point)
	}
}

// osNames are the OSes whose releases a store keeps, each in the folder
// of its name.
var osNames = []string{"windows", "linux", "darwin"}

// Store is the release history under one state folder.
type Store struct {
	Dir string // STATE/releases
}

// Open returns the store of stateDir, making its folders when missing.
func Open(stateDir string) (*Store, error) {
	s := &Store{Dir: filepath.Join(stateDir, "releases")}
	if err := os.MkdirAll(filepath.Join(s.Dir, "objects"), 0o755); err != nil {
		return nil, fmt.Errorf("making the release store: %w", err)
	}
	return s, nil
}

// At returns the store of stateDir without touching the disk, for
// readers: a store that was never written has no releases.
func At(stateDir string) *Store { return &Store{Dir: filepath.Join(stateDir, "releases")} }

// ObjectName is where the object of h lies under ObjectsDir, with
// slashes: two hex digits, a slash, and the whole hash.
func ObjectName(h [32]byte) string {
	x := hex.EncodeToString(h[:])
	return x[:2] + "/" + x
}

// ObjectsDir is the folder of the objects.
func (s *Store) ObjectsDir() string { return filepath.Join(s.Dir, "objects") }

func (s *Store) osDir(osName string) string { return filepath.Join(s.Dir, osName) }

// PointerFile is the file that names the release served for osName; a
// server stats it before each manifest.
func (s *Store) PointerFile(osName string) string {
	return filepath.Join(s.osDir(osName), "current.json")
}

func (s *Store) recordFile(osName string, n uint64) string {
	return filepath.Join(s.osDir(osName), fmt.Sprintf("%06d.json", n))
}

type pointer struct {
	Number uint64 `json:"number"`
}

// Current returns the number of the release served for osName, 0 when
// none was published.
func (s *Store) Current(osName string) (uint64, error) {
	var p pointer
	err := atomicfile.ReadJSON(s.PointerFile(osName), &p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading the served release: %w", err)
	}
	if p.Number == 0 {
		return 0, fmt.Errorf("reading the served release: %s: release number 0", s.PointerFile(osName))
	}
	return p.Number, nil
}

// Record reads the record of release n of osName.
func (s *Store) Record(osName string, n uint64) (*Record, error) {
	path := s.recordFile(osName, n)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: release %d of %s (%s)", ErrNoRelease, n, osName, path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading release %d of %s: %w", n, osName, err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	switch {
	case r.Format != recordFormat:
		return nil, fmt.Errorf("reading %s: format %d, this server reads %d", path, r.Format, recordFormat)
	case r.OS != osName || r.Number != n:
		return nil, fmt.Errorf("reading %s: it is release %d of %s", path, r.Number, r.OS)
	}
	return &r, nil
}

// Numbers returns the numbers of the releases kept for osName, oldest
// first.
func (s *Store) Numbers(osName string) ([]uint64, error) {
	ents, err := os.ReadDir(s.osDir(osName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the releases of %s: %w", osName, err)
	}
	var ns []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || len(name) < 6 {
			continue
		}
		if n, err := strconv.ParseUint(name, 10, 64); err == nil && n > 0 {
			ns = append(ns, n)
		}
	}
	slices.Sort(ns)
	return ns, nil
}

// OSes returns the OSes the store has releases of: its folders named
// windows, linux or darwin (never objects, patches or hashcache).
func (s *Store) OSes() ([]string, error) {
	ents, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the release store: %w", err)
	}
	var oses []string
	for _, e := range ents {
		if e.IsDir() && slices.Contains(osNames, e.Name()) {
			oses = append(oses, e.Name())
		}
	}
	return oses, nil
}

// Lock takes the store's publish lock, waiting for a publish under way
// until ctx is done. unlock releases it.
func (s *Store) Lock(ctx context.Context) (unlock func(), err error) {
	path := filepath.Join(s.Dir, "publish.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the publish lock: %w", err)
	}
	for {
		held, err := filelock.TryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if held {
			return func() { f.Close() }, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for another publish to end (%s): %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Opener opens an entry's content to copy it into the store.
type Opener func(e Entry) (io.ReadCloser, error)

// Added says what Add copied.
type Added struct {
	Objects int   // new objects
	Bytes   int64 // their bytes
}

// Add copies into the store the content of every file of files it lacks,
// read through open and checked against the entry's hash as it is
// copied: a file that changed since it was hashed is an error naming it,
// and nothing of it is kept. Objects are made durable before their names
// appear (see the package's doc). The caller holds the lock.
func (s *Store) Add(ctx context.Context, files []Entry, open Opener) (Added, error) {
	var added Added
	objects := s.ObjectsDir()
	seen := map[Hash]bool{}
	var todo []Entry
	for _, e := range files {
		if e.Dir || e.Target != "" || seen[e.Hash] {
			continue
		}
		seen[e.Hash] = true
		fi, err := os.Stat(filepath.Join(objects, filepath.FromSlash(ObjectName(e.Hash))))
		if err == nil && fi.Size() == e.Size {
			continue
		}
		todo = append(todo, e)
	}
	if len(todo) == 0 {
		return added, nil
	}
	staging, err := os.MkdirTemp(objects, "staging-")
	if err != nil {
		return added, fmt.Errorf("making the staging folder: %w", err)
	}
	defer os.RemoveAll(staging)
	buf := make([]byte, 1<<20)
	for _, e := range todo {
		if err := ctx.Err(); err != nil {
			return added, err
		}
		if err := copyObject(filepath.Join(staging, e.Hash.String()), e, open, buf); err != nil {
			return added, err
		}
		added.Objects++
		added.Bytes += e.Size
		crashPoint("object staged")
	}
	if err := syncTree(staging); err != nil {
		return added, fmt.Errorf("making the new objects durable: %w", err)
	}
	crashPoint("objects synced")
	dirs := map[string]bool{}
	madeDir := false
	for _, e := range todo {
		name := filepath.FromSlash(ObjectName(e.Hash))
		dir := filepath.Join(objects, filepath.Dir(name))
		if !dirs[dir] {
			if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
				madeDir = true
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return added, fmt.Errorf("making %s: %w", dir, err)
			}
			dirs[dir] = true
		}
		if err := atomicfile.Rename(filepath.Join(staging, e.Hash.String()), filepath.Join(objects, name)); err != nil {
			return added, fmt.Errorf("moving an object into place: %w", err)
		}
		crashPoint("object placed")
	}
	for dir := range dirs {
		if err := atomicfile.SyncDir(dir); err != nil {
			return added, err
		}
	}
	// A new fan-out folder's own entry in objects must be durable too,
	// or a power loss could lose the folder of objects a record names.
	if madeDir {
		if err := atomicfile.SyncDir(objects); err != nil {
			return added, err
		}
	}
	return added, nil
}

// copyObject copies e's content to path, checking its size and hash.
func copyObject(path string, e Entry, open Opener, buf []byte) error {
	src, err := open(e)
	if err != nil {
		return fmt.Errorf("opening %s: %w", e.Path, err)
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("copying %s into the store: %w", e.Path, err)
	}
	h := blake3.New()
	n, err := io.CopyBuffer(io.MultiWriter(dst, h), io.LimitReader(src, e.Size+1), buf)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copying %s into the store: %w", e.Path, err)
	}
	var sum Hash
	h.Sum(sum[:0])
	switch {
	case n != e.Size:
		return fmt.Errorf("%s changed while it was being published (it has %d bytes, %d when indexed); publish again", e.Path, n, e.Size)
	case sum != e.Hash:
		return fmt.Errorf("%s changed while it was being published (its content changed since it was indexed); publish again", e.Path)
	}
	return nil
}

// Commit writes r's record and then points its OS at it: from the
// pointer's rename on, a server serves r. Every object r names must be in
// the store (Add).
func (s *Store) Commit(r *Record) error {
	r.Format = recordFormat
	if err := atomicfile.WriteJSON(s.recordFile(r.OS, r.Number), r, 0o644); err != nil {
		return fmt.Errorf("writing the record of release %d: %w", r.Number, err)
	}
	crashPoint("record written")
	if err := s.Point(r.OS, r.Number); err != nil {
		return err
	}
	crashPoint("pointer written")
	return nil
}

// Point makes release n of osName the one served; its record must exist.
func (s *Store) Point(osName string, n uint64) error {
	if _, err := s.Record(osName, n); err != nil {
		return err
	}
	if err := atomicfile.WriteJSON(s.PointerFile(osName), pointer{Number: n}, 0o644); err != nil {
		return fmt.Errorf("pointing %s at release %d: %w", osName, n, err)
	}
	return nil
}

// Pruned says what Prune removed.
type Pruned struct {
	Releases []uint64 // of the OS pruned
	Objects  int
	Bytes    int64
}

// Prune keeps the newest keep releases of osName (at least 1), the one
// served and the pinned ones, and removes the others' records; then every
// object that no record of any OS names, and staging folders left by a
// publish that was killed. The caller holds the lock.
//
// A removal that fails (on Windows, a file the server has open; see
// atomicfile.Remove) does not stop the others: Prune goes on and returns
// the failures joined, with what it did remove. A record it could not
// remove keeps its objects.
func (s *Store) Prune(osName string, keep int, pinned ...uint64) (Pruned, error) {
	var p Pruned
	ns, err := s.Numbers(osName)
	if err != nil {
		return p, err
	}
	cur, err := s.Current(osName)
	if err != nil {
		return p, err
	}
	var errs []error
	keep = max(keep, 1)
	for i, n := range ns {
		if i >= len(ns)-keep || n == cur || slices.Contains(pinned, n) {
			continue
		}
		if err := atomicfile.Remove(s.recordFile(osName, n)); err != nil {
			errs = append(errs, fmt.Errorf("removing release %d of %s: %w", n, osName, err))
			continue
		}
		p.Releases = append(p.Releases, n)
		crashPoint("record pruned")
	}
	used, err := s.used()
	if err != nil {
		return p, errors.Join(append(errs, err)...)
	}
	if err := s.prunePatches(used); err != nil {
		errs = append(errs, err)
	}
	objects := s.ObjectsDir()
	dirs, err := os.ReadDir(objects)
	if err != nil {
		return p, errors.Join(append(errs, fmt.Errorf("listing the objects: %w", err))...)
	}
	for _, d := range dirs {
		dir := filepath.Join(objects, d.Name())
		if strings.HasPrefix(d.Name(), "staging-") {
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, fmt.Errorf("removing %s: %w", dir, err))
			}
			continue
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing the objects: %w", err))
			continue
		}
		for _, e := range ents {
			var h Hash
			if h.UnmarshalText([]byte(e.Name())) == nil && used[h] {
				continue
			}
			info, _ := e.Info()
			if err := atomicfile.Remove(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, fmt.Errorf("removing an object no release uses: %w", err))
				continue
			}
			p.Objects++
			if info != nil {
				p.Bytes += info.Size()
			}
			crashPoint("object pruned")
		}
	}
	return p, errors.Join(errs...)
}

// used returns the hashes every kept record of every OS names.
func (s *Store) used() (map[Hash]bool, error) {
	used := map[Hash]bool{}
	oses, err := s.OSes()
	if err != nil {
		return nil, err
	}
	for _, o := range oses {
		ns, err := s.Numbers(o)
		if err != nil {
			return nil, err
		}
		for _, n := range ns {
			r, err := s.Record(o, n)
			if err != nil {
				// An unreadable record keeps every object: pruning
				// must never remove what a release may need.
				return nil, fmt.Errorf("not pruning: %w", err)
			}
			for _, e := range r.Files {
				if !e.Dir && e.Target == "" {
					used[e.Hash] = true
				}
			}
		}
	}
	return used, nil
}

// Next returns the number the next release of osName gets: one more than
// the newest kept, and than after.
func (s *Store) Next(osName string, after uint64) (uint64, error) {
	ns, err := s.Numbers(osName)
	if err != nil {
		return 0, err
	}
	last := after
	if len(ns) > 0 {
		last = max(last, ns[len(ns)-1])
	}
	return cmp.Or(last+1, 1), nil
}
