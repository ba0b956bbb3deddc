package state

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/zeebo/blake3"
)

// Checked is what Check found.
type Checked struct {
	OK bool // the check finished, and every file is as recorded
	// found marks, by their place in files, the regular files found with
	// their recorded size and mtime, which a plan then need not look up
	// again (see Same).
	found []bool
	files Encoded
}

// Same returns the files found as recorded, as a set. It is built only
// for a plan: a no-op check needs none.
func (c Checked) Same() map[string]bool {
	n := 0
	for _, f := range c.found {
		if f {
			n++
		}
	}
	same := make(map[string]bool, n)
	if n == 0 {
		return same
	}
	r := c.files.reader()
	for i := range c.files.n {
		e := r.entry()
		if r.err != nil {
			break
		}
		if c.found[i] {
			same[string(e.path)] = true
		}
	}
	return same
}

// Check looks at every file that files record in the install folder
// root: whether each is still as the client left it, a regular file of
// the recorded size and mtime, a link with the recorded target, a folder
// where it recorded an empty folder (see DirHash), a
// preserved file present at all (the user may change those). It takes
// the files as they are encoded in the state file (see State.Encoded): a
// no-op check builds no map of them. The files are in order of path, so a worker walks a run of them
// holding the folders of the current one open (see install.DirStack), and looks
// each file up in its folder: one lstat per file, one open per folder.
// The entries are shared out in a few runs, since on a cold cache each
// lookup may wait for the disk. A file not as recorded does not stop the
// check: the plan uses what it found of the others.
func Check(ctx context.Context, root *os.Root, files Encoded) Checked {
	c := Checked{files: files, found: make([]bool, files.n)}
	top, err := install.OpenLookupRoot(root)
	if err != nil {
		return c
	}
	defer top.Close()
	runs := files.split(min(runtime.GOMAXPROCS(0), 4, max(1, files.n/minCheckRun)))
	var bad atomic.Bool
	var wg sync.WaitGroup
	for _, run := range runs {
		wg.Go(func() {
			// A worker looks through a handle of its own: a
			// folder's lookups are not safe for concurrent use.
			own, err := top.Open([]byte("."))
			if err != nil {
				bad.Store(true)
				return
			}
			defer own.Close()
			if !checkRun(ctx, own, run, c.found) {
				bad.Store(true)
			}
		})
	}
	wg.Wait()
	c.OK = runs != nil && !bad.Load() && ctx.Err() == nil
	return c
}

// minCheckRun is the fewest files worth a worker of their own.
const minCheckRun = 1024

// fileRun is a run of a state file's entries: n of them from the first,
// which is entry first of the file.
type fileRun struct {
	r        stateReader
	first, n int
}

// split cuts the entries into k runs of nearly equal length; none when
// they cannot be read, or bytes follow the last.
func (e Encoded) split(k int) []fileRun {
	runs := make([]fileRun, 0, k)
	r := e.reader()
	for w := range k {
		first, end := w*e.n/k, (w+1)*e.n/k
		run := fileRun{r: r, first: first, n: end - first}
		for range run.n {
			r.entry()
		}
		if r.err != nil {
			return nil
		}
		runs = append(runs, run)
	}
	if len(r.b) != 0 {
		return nil
	}
	return runs
}

// checkRun checks a run of files, marking in found those found as
// recorded; it reports whether all were as recorded.
func checkRun(ctx context.Context, top install.LookupDir, run fileRun, found []bool) bool {
	dirs := install.DirStack{Top: top}
	defer dirs.Close()
	ok := true
	for i := range run.n {
		if i%256 == 0 && ctx.Err() != nil {
			return false
		}
		e := run.r.entry()
		if run.r.err != nil {
			return false
		}
		slash := bytes.LastIndexByte(e.path, '/')
		dir, err := dirs.At(e.path[:slash+1])
		if err != nil || !install.SafeName(e.path[slash+1:]) {
			ok = false
			continue
		}
		regular, as := entryAsRecorded(dir, e.path[slash+1:], e)
		if !as {
			ok = false
		} else if regular {
			found[run.first+i] = true
		}
	}
	return ok
}

// entryAsRecorded reports whether name, in folder d, is as e records it,
// and whether it was found a regular file of e's size and mtime.
func entryAsRecorded(d install.LookupDir, name []byte, e fileEntry) (regular, ok bool) {
	fi, err := d.Lstat(name)
	switch {
	case err != nil:
		return false, false
	case e.flags&filePreserve != 0:
		return false, true
	case fi.Kind == install.KindLink:
		target, err := d.Readlink(name)
		sum := blake3.Sum256([]byte(target))
		return false, err == nil && e.flags&fileRawHash != 0 && bytes.Equal(e.hash, sum[:])
	case fi.Kind == install.KindRegular:
		ok := fi.Size == e.size && fi.MtimeNs == e.mtime
		return ok, ok
	case fi.Kind == install.KindDir:
		// An empty folder of the release: a folder is all it must be.
		return false, e.flags&fileRawHash == 0 && string(e.hash) == DirHash
	}
	return false, false
}
