package index

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/fsnotify/fsnotify"
	"github.com/zeebo/blake3"
)

// File is one file of an update folder, as the index knows it.
type File struct {
	Path     string // slash-separated, relative to the folder
	Size     int64
	MtimeNs  int64
	Mode     fs.FileMode // permission bits only
	Inode    uint64
	CtimeNs  int64 // the change time, 0 where it is not read (see changeTime)
	Hash     [32]byte
	Preserve bool
	// Target is a symbolic link's target ("" for a file). Links are
	// served as links, as macOS application bundles hold them.
	Target string
	// Dir marks a folder that holds nothing (syncproto.FlagDir): only
	// such leaf folders are listed, with their permission bits and no
	// size, mtime or hash. macOS bundles hold them, and a folder with
	// files needs no entry of its own.
	Dir bool
}

// Manifest is a consistent snapshot of one update folder: every file was
// hashed with exactly the size, mtime and change time recorded beside it.
type Manifest struct {
	OS         string // the clients' OS
	Build      string // the build the folder holds
	Files      []File // sorted by Path
	TotalBytes int64  // the sum of the files' sizes

	// rel is the release's configuration, for the post-install step.
	rel *Release

	// postInstall is the path of the post-install program in this
	// folder, found once per manifest rather than once per session.
	postOnce    sync.Once
	postInstall string

	// The manifest as frames and its digest, made once per manifest
	// (see Wire): a session only copies the bytes.
	wireOnce sync.Once
	wire     *Wire
	// Its frames after the header compressed (see WireZ), made once too.
	wireZOnce sync.Once
	wireZ     []byte
	wireZErr  error

	// root is the folder the manifest was made from. Each scan opens the
	// folder anew, so an administrator who replaces the whole folder
	// (the usual way to publish a release) is seen at the next scan,
	// while sessions still sending the previous manifest keep reading
	// the files it describes.
	root *os.Root

	// objects is the release store's folder of objects for a stored
	// release (see Stored), where objectName(hash) names each file;
	// root is nil then.
	objects    *os.Root
	objectName func([32]byte) string
}

// Open opens a file of the manifest's folder for reading.
func (m *Manifest) Open(name string) (*os.File, error) { return m.root.Open(name) }

// OpenRoot opens the folder dir of the manifest's folder, so that a
// caller opening many files in it walks the path once.
func (m *Manifest) OpenRoot(dir string) (*os.Root, error) { return m.root.OpenRoot(dir) }

// Matches reports whether fi describes the file as the index hashed it:
// the same size, mtime, inode and change time. A write, even one that puts
// the mtime back, moves the change time, and a file replaced by rename has
// another inode; where the change time is not read (CtimeNs is 0), a
// caller must hash what it reads instead.
func (f File) Matches(fh *os.File) bool {
	fi, err := fh.Stat()
	if err != nil {
		return false
	}
	ino, ctime := handleID(fh, fi)
	return fi.Size() == f.Size && fi.ModTime().UnixNano() == f.MtimeNs && ino == f.Inode && ctime == f.CtimeNs
}

// Index keeps the manifest of one OS folder current. It watches the folder
// for changes (see watch.go) and rescans it (a stat of every file) before it
// hands out a manifest only when the folder may have changed, rehashing only
// files whose path, size, mtime or inode changed. It keeps the hashes in a
// cache file under the state folder so that a restart does not rehash.
type Index struct {
	OS    string // the clients' OS the folder is for
	Dir   string // the update folder, as configured
	cache string // path of the cache file
	log   *slog.Logger

	mu       sync.Mutex
	rel      *Release // replaced whole by SetRelease, never changed
	cur      *Manifest
	known    map[string]cacheEntry
	scanning chan struct{} // closed when the running scan ends
	scanErr  error
	// refused is why the folder as last scanned is not served (see
	// refuse), nil when it is; refusedKey its problems, logged once.
	refused    error
	refusedKey string

	// The watch of the folder (see watch.go). w and watchDone are set
	// when the index is opened, and replaced by the running scan only
	// (renewWatcher), with mu held: the scan reads them without it,
	// others with it. newWatcher is set when the index is opened;
	// watched belongs to the running scan. The rest is guarded by mu.
	newWatcher func() (*fsnotify.Watcher, error)
	w          *fsnotify.Watcher // nil when no watcher could be made
	watchDone  chan struct{}     // closed when the goroutine reading w ends
	watched    map[string]fs.FileInfo
	watching   bool        // w is healthy: a scan is needed only when dirty
	dirty      bool        // the folder may have changed since the last scan began
	rootID     fs.FileInfo // the folder the watches are on, by identity
	attr       *attrWatch  // Windows: the watch of attributes; set by the running scan
	scannedAt  time.Time   // when the last successful scan began

	// Hashed counts files hashed since the index was opened; tests and
	// logs use it to show what the cache saved.
	Hashed int64
	// Scans counts scans of the folder since the index was opened; tests
	// use it to show when Current scanned. Hashed and Scans are guarded
	// by mu.
	Scans int64

	// obs is told of every successful scan (see Observe); nil for none.
	obs Observer

	// afterScan, when a test sets it, runs after each successful scan,
	// before the watches are brought in line with it.
	afterScan func()
}

type cacheEntry struct {
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime"`
	Inode   uint64 `json:"ino"`
	CtimeNs int64  `json:"ctime"`
	Hash    string `json:"blake3"`
}

type cacheFile struct {
	Version int                   `json:"version"`
	Dir     string                `json:"dir"`
	Files   map[string]cacheEntry `json:"files"`
}

// cacheVersion 2 added the change time to the key: a cache of version 1
// costs one rehash.
const cacheVersion = 2

// racyWindow: a file modified this close to the scan may change again
// within the same mtime tick without its size or mtime changing, so its
// hash is used but not remembered (the "racy git" problem).
const racyWindow = 2 * time.Second

// Release is what the server's configuration says of the release the
// update folders hold; the index puts it into every manifest.
type Release struct {
	// Build is the build the folders hold ([UPDATE] Build).
	Build string
	// Preserve lists the slash paths copied only when missing on a
	// workstation ([UPDATE] Preserve), matched case-insensitively.
	Preserve []string
	// PostInstall is the slash path of the post-install program
	// ([UPDATE] PostInstall), matched case-insensitively; "" for none.
	PostInstall string
	// PostInstallTimeout is how long that program may run.
	PostInstallTimeout time.Duration
}

// Observer is told of the scans of the indexes opened with it (see
// Observe), for the server's metrics. It is called from the goroutine
// that scanned, and must be safe for concurrent use.
type Observer interface {
	// Scanned is told of a successful scan of the update folder of
	// osName: how long it took, and of its files how many took their
	// hash from the hash cache (hits) and how many were hashed (misses).
	Scanned(osName string, took time.Duration, hits, misses int)
}

// Option is an option of Open.
type Option func(*Index)

// Observe has every scan of the index told to o, the one Open makes
// included; nil tells nobody.
func Observe(o Observer) Option { return func(ix *Index) { ix.obs = o } }

// Open opens the update folder dir for OS osName, loads the hash cache
// from stateDir, starts watching the folder and scans it once.
func Open(ctx context.Context, log *slog.Logger, osName, dir, stateDir string, rel Release, opts ...Option) (*Index, error) {
	return openWith(ctx, log, osName, dir, stateDir, rel, fsnotify.NewWatcher, opts...)
}

// openWith is Open with the watcher made by newWatcher, so that tests can
// make an index whose watcher fails.
func openWith(ctx context.Context, log *slog.Logger, osName, dir, stateDir string, rel Release,
	newWatcher func() (*fsnotify.Watcher, error), opts ...Option) (*Index, error) {
	ix := &Index{
		OS: osName, Dir: dir, rel: &rel,
		cache: filepath.Join(stateDir, "hashcache-"+osName+".json"),
		log:   log.With("os", osName),
		known: map[string]cacheEntry{},
	}
	for _, o := range opts {
		o(ix)
	}
	ix.loadCache()
	ix.startWatch(newWatcher)
	if _, err := ix.Current(ctx); err != nil {
		ix.Close()
		return nil, err
	}
	return ix, nil
}

// SetRelease makes rel the release of the manifests made from now on:
// the next Current scans the folder again (a stat of every file, no
// rehash) and its manifest carries rel. Manifests already handed out keep
// the release they were made with.
func (ix *Index) SetRelease(rel Release) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.rel = &rel
	ix.dirty = true
}

// Close stops watching the folder and releases the folder of the current
// manifest; older ones are released when no session uses them any more.
func (ix *Index) Close() error {
	ix.stopWatch()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.cur != nil && ix.cur.root != nil {
		return ix.cur.root.Close()
	}
	return nil
}

// Latest returns the manifest of the last scan that succeeded, without
// looking at the folder: what Open found, at the least.
func (ix *Index) Latest() *Manifest {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.cur
}

func (ix *Index) loadCache() {
	data, err := os.ReadFile(ix.cache)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var cf cacheFile
	if err == nil {
		err = json.Unmarshal(data, &cf)
	}
	switch {
	case err != nil:
		// A damaged cache costs a rehash, never a wrong hash.
		ix.log.Warn("ignoring hash cache", "file", ix.cache, "err", err)
	case cf.Version != cacheVersion || cf.Dir != ix.Dir:
		ix.log.Info("hash cache is for another folder or version; rehashing", "file", ix.cache)
	default:
		ix.known = cf.Files
	}
}

// Current returns a manifest that matches the folder. It rescans the
// folder first unless the watch shows that nothing changed since the last
// scan (see fresh); concurrent callers share one scan. A folder that clients
// would refuse (internal/releasecheck) is not served: Current returns the
// last good manifest, and Refused says why (see refuse).
func (ix *Index) Current(ctx context.Context) (*Manifest, error) {
	var root fs.FileInfo
	if ix.newWatcher != nil {
		// The path may name another folder now (a release renamed in, a
		// symbolic link switched): one stat tells, events need not.
		root, _ = os.Stat(ix.Dir)
	}
	ix.mu.Lock()
	if ch := ix.scanning; ch != nil {
		ix.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		ix.mu.Lock()
		defer ix.mu.Unlock()
		return ix.cur, ix.scanErr
	}
	if ix.fresh(root) {
		defer ix.mu.Unlock()
		return ix.cur, nil
	}
	ch := make(chan struct{})
	ix.scanning = ch
	// Cleared before the scan: what happens while it runs makes the
	// next call scan again.
	ix.dirty = false
	known := ix.known
	ix.mu.Unlock()

	start := time.Now()
	m, next, dirs, err := ix.scan(ctx, known)
	for retry := 0; retry < 3 && errors.Is(err, fs.ErrNotExist); retry++ {
		// A file removed while the folder was being scanned: the
		// administrator is publishing; look again.
		time.Sleep(100 * time.Millisecond)
		m, next, dirs, err = ix.scan(ctx, known)
	}
	var refused error // what clients would refuse in the folder scanned
	if err == nil {
		refused = check(m)
		if ix.afterScan != nil {
			ix.afterScan()
		}
		ix.rewatch(dirs)
	}

	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.scanning = nil
	ix.scanErr = err
	if err != nil {
		ix.dirty = true
	} else {
		ix.scannedAt = start
		switch {
		case refused != nil:
			// Not served: the last good manifest stays, if any.
			m.root.Close()
			err = ix.refuse(refused)
			ix.scanErr = err
		case ix.cur != nil && sameDir(ix.cur.root, m.root) && ix.cur.rel == m.rel && slices.Equal(ix.cur.Files, m.Files):
			// Nothing changed: the current manifest, with its
			// encoding and digest already made, stays.
			m.root.Close()
		case ix.cur != nil && sameDir(ix.cur.root, m.root):
			// Same folder as before: keep one open handle, not one
			// per scan.
			m.root.Close()
			m.root = ix.cur.root
			ix.cur = m
		default:
			ix.cur = m
		}
		if refused == nil {
			ix.accept()
		}
		if !sameCache(known, next) {
			ix.known = next
			if err := ix.saveCache(next); err != nil {
				ix.log.Warn("saving hash cache", "file", ix.cache, "err", err)
			}
		}
	}
	close(ch)
	return ix.cur, err
}

func sameDir(a, b *os.Root) bool {
	fa, err := a.Stat(".")
	if err != nil {
		return false
	}
	fb, err := b.Stat(".")
	return err == nil && os.SameFile(fa, fb)
}

func sameCache(a, b map[string]cacheEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func (ix *Index) saveCache(files map[string]cacheEntry) error {
	data, err := json.Marshal(cacheFile{Version: cacheVersion, Dir: ix.Dir, Files: files})
	if err != nil {
		return err
	}
	return atomicfile.Write(ix.cache, data, 0o644)
}

// scan walks the folder, reuses known hashes and hashes the rest in
// parallel. It returns the manifest, the cache entries to keep, and every
// folder it found by slash path ("." the folder itself) for the watch.
func (ix *Index) scan(ctx context.Context, known map[string]cacheEntry) (*Manifest, map[string]cacheEntry, map[string]fs.FileInfo, error) {
	start := time.Now()
	ix.mu.Lock()
	ix.Scans++
	rel := ix.rel
	ix.mu.Unlock()
	root, err := openFolder(ix.Dir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("opening update folder for %s: %w", ix.OS, err)
	}
	m := &Manifest{OS: ix.OS, Build: rel.Build, rel: rel, root: root}
	dirs := map[string]fs.FileInfo{}
	full := map[string]bool{} // folders that hold anything
	var todo []int
	hits := 0 // files whose hash the cache gave
	err = fs.WalkDir(root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		p := filepath.Join(ix.Dir, filepath.FromSlash(rel))
		if err != nil {
			return fmt.Errorf("scanning %s: %w", p, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		full[path.Dir(rel)] = true
		switch {
		case !utf8.ValidString(rel):
			// The protocol carries UTF-8 paths, and clients refuse any
			// other; better one clear error here than every client
			// failing on the manifest.
			return fmt.Errorf("scanning %q: the name is not valid UTF-8; rename it", p)
		case d.IsDir():
			// A stat of the folder itself, not d.Info(): rewatch
			// tells a folder replaced by another with os.SameFile,
			// and on Windows an entry of a folder listing carries no
			// file ID where the volume has no object IDs (FAT,
			// exFAT, Wine's drives), so it would never match the
			// stat the watch was recorded with, and every scan
			// would watch every subfolder anew and ask for the next.
			fi, err := root.Lstat(rel)
			if err != nil {
				return fmt.Errorf("scanning %s: %w", p, err)
			}
			dirs[rel] = fi
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			f, err := linkEntry(root, rel, p)
			if err != nil {
				return err
			}
			f.Preserve = preserved(m.rel, rel)
			m.Files = append(m.Files, f)
			return nil
		case !d.Type().IsRegular():
			return fmt.Errorf("scanning %s: not a regular file (%v)", p, d.Type())
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("scanning %s: %w", p, err)
		}
		ino, ctime := statID(root, rel, fi)
		f := File{
			Path: rel, Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano(),
			Mode: fi.Mode().Perm(), Inode: ino, CtimeNs: ctime, Preserve: preserved(m.rel, rel),
		}
		if c, ok := known[rel]; ok && c.Size == f.Size && c.MtimeNs == f.MtimeNs && c.Inode == f.Inode && c.CtimeNs == f.CtimeNs {
			if h, err := hex.DecodeString(c.Hash); err == nil && len(h) == 32 {
				copy(f.Hash[:], h)
				m.Files = append(m.Files, f)
				hits++
				return nil
			}
		}
		todo = append(todo, len(m.Files))
		m.Files = append(m.Files, f)
		return nil
	})
	if err == nil {
		err = ix.hashAll(ctx, root, m.Files, todo)
	}
	// An empty folder is listed, so that clients make it too. Its mtime
	// is left out: clients do not set a folder's time, and a folder
	// touched on the server need not change the manifest.
	for rel, fi := range dirs {
		if rel != "." && !full[rel] {
			m.Files = append(m.Files, File{Path: rel, Mode: fi.Mode().Perm(), Dir: true})
		}
	}
	if err != nil {
		root.Close()
		return nil, nil, nil, err
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	next := make(map[string]cacheEntry, len(m.Files))
	racy := start.Add(-racyWindow).UnixNano()
	for _, f := range m.Files {
		m.TotalBytes += f.Size
		// As in git, only the mtime decides what is racy: files copied
		// in with their mtimes kept have a fresh change time, and are
		// remembered all the same.
		if f.MtimeNs < racy && !f.Dir {
			next[f.Path] = cacheEntry{Size: f.Size, MtimeNs: f.MtimeNs, Inode: f.Inode, CtimeNs: f.CtimeNs, Hash: hex.EncodeToString(f.Hash[:])}
		}
	}
	if ix.obs != nil {
		ix.obs.Scanned(ix.OS, time.Since(start), hits, len(todo))
	}
	if len(todo) > 0 {
		ix.log.Info("indexed update folder", "dir", ix.Dir, "files", len(m.Files), "bytes", m.TotalBytes,
			"hashed", len(todo), "took", time.Since(start).Round(time.Millisecond))
	}
	return m, next, dirs, nil
}

// linkEntry describes the symbolic link rel. Only a relative link that
// resolves to something inside the update folder is served; any other is
// refused by path, since clients would refuse it too.
func linkEntry(root *os.Root, rel, p string) (File, error) {
	target, err := root.Readlink(rel)
	if err != nil {
		return File{}, fmt.Errorf("scanning %s: %w", p, err)
	}
	t := filepath.ToSlash(target)
	resolved := path.Join(path.Dir(rel), t)
	switch {
	case t == "" || path.IsAbs(t) || filepath.IsAbs(target) || strings.Contains(t, ":"):
		return File{}, fmt.Errorf("scanning %s: symbolic link to %q: only relative links inside the update folder are served", p, target)
	case resolved == ".." || strings.HasPrefix(resolved, "../"):
		return File{}, fmt.Errorf("scanning %s: symbolic link to %q points outside the update folder", p, target)
	}
	// Following it must stay inside the folder and find something: the
	// os.Root refuses links that escape, and a dangling link is a
	// mistake in the release.
	if _, err := root.Stat(rel); err != nil {
		return File{}, fmt.Errorf("scanning %s: symbolic link to %q does not resolve inside the update folder: %w", p, target, err)
	}
	fi, err := root.Lstat(rel)
	if err != nil {
		return File{}, fmt.Errorf("scanning %s: %w", p, err)
	}
	return File{Path: rel, Size: int64(len(t)), MtimeNs: fi.ModTime().UnixNano(), Mode: 0o777,
		Hash: blake3.Sum256([]byte(t)), Target: t}, nil
}

func preserved(r *Release, rel string) bool { return preservedBy(r.Preserve, rel) }

// hashAll hashes files[i] for every i in todo, on all cores.
func (ix *Index) hashAll(ctx context.Context, root *os.Root, files []File, todo []int) error {
	if len(todo) == 0 {
		return nil
	}
	work := make(chan int)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256<<10)
			for i := range work {
				if err := ix.hashFile(root, &files[i], buf); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	var err error
feed:
	for _, i := range todo {
		select {
		case work <- i:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	ix.mu.Lock()
	ix.Hashed += int64(len(todo))
	ix.mu.Unlock()
	return err
}

// hashFile hashes f and checks that the file did not change while it was
// read; a file that keeps changing is an error rather than a torn entry.
func (ix *Index) hashFile(root *os.Root, f *File, buf []byte) error {
	for attempt := 0; ; attempt++ {
		h, fi, ino, ctime, err := hashOpen(root, f.Path, buf)
		if err != nil {
			return fmt.Errorf("hashing %s: %w", filepath.Join(ix.Dir, f.Path), err)
		}
		if fi.Size() == f.Size && fi.ModTime().UnixNano() == f.MtimeNs && ctime == f.CtimeNs {
			f.Hash = h
			return nil
		}
		if attempt == 2 {
			return fmt.Errorf("hashing %s: file keeps changing while it is read", filepath.Join(ix.Dir, f.Path))
		}
		f.Size, f.MtimeNs, f.Inode, f.CtimeNs = fi.Size(), fi.ModTime().UnixNano(), ino, ctime
	}
}

// hashOpen hashes the named file and returns its hash with the file's
// state after reading, so the caller can tell whether it changed.
func hashOpen(root *os.Root, name string, buf []byte) (sum [32]byte, fi fs.FileInfo, ino uint64, ctime int64, err error) {
	fh, err := root.Open(name)
	if err != nil {
		return sum, nil, 0, 0, err
	}
	defer fh.Close()
	h := blake3.New()
	if _, err := io.CopyBuffer(h, fh, buf); err != nil {
		return sum, nil, 0, 0, err
	}
	if fi, err = fh.Stat(); err != nil {
		return sum, nil, 0, 0, err
	}
	ino, ctime = handleID(fh, fi)
	copy(sum[:], h.Sum(nil))
	return sum, fi, ino, ctime, nil
}
