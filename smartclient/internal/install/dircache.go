package install

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
)

// dirCache keeps folders of the install open while a command runs, so that
// an operation on a file is one system call on its folder rather than a
// walk that opens every folder from the install's root down (which is how
// an os.Root resolves a nested path; for the 20,000 files of an
// installation that was most of a sync's system time). Folders are opened
// through the install's os.Root, so they are inside it; every rename or
// removal the client makes forgets the handles of the folder it touches
// and of everything below it, so no handle ever stands for a folder that
// moved. A folder that cannot be opened is simply not cached: the
// operation then walks from the root as before.
type dirCache struct {
	root *os.Root
	mu   sync.Mutex
	subs map[string]*dirHandle
	// held counts, for every folder and every folder above it, the cached
	// handles at or below it: whether a rename or removal touches one is
	// then a single lookup.
	held map[string]int
	// missing remembers folders that could not be opened, and absent
	// those of them that do not exist, until the client makes folders or
	// renames something: a lookup below an absent folder fails at once
	// (a cold sync looks up each of its files three times before any
	// folder is made).
	missing map[string]bool
	absent  map[string]bool
	clock   uint64   // counts get calls, to drop the least recently used handle
	top     *os.File // the install folder itself, once asked for (see rootDir)
}

type dirHandle struct {
	r    *os.Root
	f    *os.File // the folder itself, for system calls across two folders; opened when first needed
	used uint64   // when it was last asked for, in dirCache.clock's ticks
	// refs counts the callers of get that have not yet called put: a
	// handle dropped from the cache while in use (the download, the
	// backup and the writers work at once) is closed by the last put.
	refs int
	gone bool
}

// maxCachedDirs bounds the open handles (two descriptors each).
const maxCachedDirs = 512

func newDirCache(root *os.Root) *dirCache {
	return &dirCache{root: root, subs: map[string]*dirHandle{}, held: map[string]int{}, missing: map[string]bool{}, absent: map[string]bool{}}
}

// get returns the handle of folder dir (a slash path without a trailing
// slash, not "."), or nil.
func (c *dirCache) get(dir string) *dirHandle {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.getLocked(dir)
	if h != nil {
		h.refs++
	}
	return h
}

// put releases a handle get returned (nil is fine).
func (c *dirCache) put(h *dirHandle) {
	if c == nil || h == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if h.refs--; h.refs == 0 && h.gone {
		h.close()
	}
}

// getLocked is get. A folder is opened from its parent's handle, which is
// cached first, so that opening it is one system call rather than one per
// folder from the root down.
func (c *dirCache) getLocked(dir string) *dirHandle {
	c.clock++
	if h, ok := c.subs[dir]; ok {
		h.used = c.clock
		return h
	}
	if c.missing[dir] {
		return nil
	}
	from, name := c.root, dir
	if parent, base := path.Split(dir); parent != "" {
		if h := c.getLocked(strings.TrimSuffix(parent, "/")); h != nil {
			from, name = h.r, base
		}
	}
	if len(c.subs) >= maxCachedDirs {
		// Make room: drop the least recently used (a backup or a
		// switch works in two or three folder trees at once, folder
		// after folder; the parent just used is the most recent).
		var old string
		oldest := c.clock
		for d, h := range c.subs {
			if h.used < oldest {
				old, oldest = d, h.used
			}
		}
		c.dropOneLocked(old)
	}
	r, err := from.OpenRoot(name)
	if err != nil {
		c.missing[dir] = true
		if errors.Is(err, fs.ErrNotExist) {
			c.absent[dir] = true
		}
		return nil
	}
	if fi, err := from.Lstat(name); err != nil || !fi.IsDir() {
		// A link to a folder: resolved through the root as before.
		r.Close()
		c.missing[dir] = true
		return nil
	}
	h := &dirHandle{r: r, used: c.clock}
	c.subs[dir] = h
	for d := dir; ; d = path.Dir(d) {
		c.held[d]++
		if d == "." {
			break
		}
	}
	return h
}

// made tells the cache that folders may have appeared.
func (c *dirCache) made() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.missing) > 0 {
		clear(c.missing)
		clear(c.absent)
	}
}

// isAbsent reports whether folder dir was found not to exist (by get)
// since the client last made a folder or renamed something.
func (c *dirCache) isAbsent(dir string) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.absent[dir]
}

// forget closes the handles of name and of every folder below it.
func (c *dirCache) forget(name string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.missing) > 0 {
		// a rename may make a folder
		clear(c.missing)
		clear(c.absent)
	}
	if c.held[name] > 0 {
		c.dropLocked(name)
	}
}

// has reports whether folder dir has a handle, so exists, without opening
// it.
func (c *dirCache) has(dir string) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.subs[dir]
	return ok
}

// dropLocked closes the handles at or below prefix ("" for all).
func (c *dirCache) dropLocked(prefix string) {
	for dir := range c.subs {
		if prefix != "" && dir != prefix && !strings.HasPrefix(dir, prefix+"/") {
			continue
		}
		c.dropOneLocked(dir)
	}
}

// dropOneLocked closes the handle of folder dir.
func (c *dirCache) dropOneLocked(dir string) {
	h, ok := c.subs[dir]
	if !ok {
		return
	}
	if h.refs == 0 {
		h.close()
	} else {
		h.gone = true // put closes it
	}
	delete(c.subs, dir)
	for d := dir; ; d = path.Dir(d) {
		if c.held[d]--; c.held[d] == 0 {
			delete(c.held, d)
		}
		if d == "." {
			break
		}
	}
}

func (c *dirCache) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked("")
	if c.top != nil {
		c.top.Close()
		c.top = nil
	}
}

// rootDir returns the install folder itself as an open file, for system
// calls on names at its top; it never moves, so it is opened once. It is
// not counted like a dirHandle: close, which closes it, comes after every
// goroutine that uses the cache has ended.
func (c *dirCache) rootDir() (*os.File, error) {
	if c == nil {
		return nil, errors.New("no folder cache")
	}
	return c.openOnce(c.root, &c.top)
}

func (h *dirHandle) close() {
	if h.f != nil {
		h.f.Close()
	}
	h.r.Close()
}

// file returns the folder of h as an open file, for system calls that
// take a folder's descriptor.
func (c *dirCache) file(h *dirHandle) (*os.File, error) {
	return c.openOnce(h.r, &h.f)
}

// openOnce returns *f, opening the folder of r into it first if it is
// nil.
func (c *dirCache) openOnce(r *os.Root, f **os.File) (*os.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if *f == nil {
		o, err := r.Open(".")
		if err != nil {
			return nil, err
		}
		*f = o
	}
	return *f, nil
}

// in returns the root to use for name and name relative to it: the cached
// folder of name and its base name, or the install's root and name. The
// caller puts the handle back (d.dirs.put) once done with the root.
func (d *Disk) in(name string) (*os.Root, string, *dirHandle) {
	dir, base := path.Split(name)
	if dir == "" || base == "" {
		return d.Root, name, nil
	}
	if h := d.dirs.get(strings.TrimSuffix(dir, "/")); h != nil {
		return h.r, base, h
	}
	return d.Root, name, nil
}

// look returns what in does for a lookup op of name that only reads, or
// the error of that lookup when name's folder is known not to exist (see
// dirCache.absent). The caller puts the handle back.
func (d *Disk) look(op, name string) (*os.Root, string, *dirHandle, error) {
	r, n, h := d.in(name)
	if h == nil {
		if dir, base := path.Split(name); dir != "" && base != "" && d.dirs.isAbsent(strings.TrimSuffix(dir, "/")) {
			return nil, "", nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
	}
	return r, n, h, nil
}

// Open is os.Root's Open through the folder cache: one openat(2) on the
// cached folder where it can (see openAt).
func (d *Disk) Open(name string) (*os.File, error) {
	if f, done, err := d.openAt(name, os.O_RDONLY, 0); done {
		return f, err
	}
	r, n, h, err := d.look("open", name)
	if err != nil {
		return nil, err
	}
	defer d.dirs.put(h)
	return r.Open(n)
}

// ReadFile is os.Root's ReadFile through the folder cache.
func (d *Disk) ReadFile(name string) ([]byte, error) {
	r, n, h, err := d.look("open", name)
	if err != nil {
		return nil, err
	}
	defer d.dirs.put(h)
	return r.ReadFile(n)
}

// Lstat is os.Root's Lstat through the folder cache.
func (d *Disk) Lstat(name string) (fs.FileInfo, error) {
	r, n, h, err := d.look("lstat", name)
	if err != nil {
		return nil, err
	}
	defer d.dirs.put(h)
	return r.Lstat(n)
}

// CloseCache releases the folder cache; the Disk still works, through
// its root alone. The root itself is its opener's to close.
func (d *Disk) CloseCache() { d.dirs.close() }
