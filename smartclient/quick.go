package smartclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zeebo/blake3"
)

// The no-op check. A client whose files are all as its state records them,
// and whose state names the digest of the manifest they came from, sends
// that digest with GetManifest; a server whose manifest has not changed
// answers UpToDate, and the check costs one lstat per file and one small
// round trip. Nothing is written but the time of the check (lastCheckFile).

// intact reports whether every file the state records is still as the
// client left it: a regular file of the recorded size and mtime, a link
// with the recorded target, a preserved file present at all (the user may
// change those). See checkInstall.
func intact(ctx context.Context, root *os.Root, st *State) bool {
	return checkInstall(ctx, root, st.encodedFiles()).ok
}

// installCheck is what checkInstall found.
type installCheck struct {
	ok bool // the check finished, and every file is as recorded
	// found marks, by their place in files, the regular files found with
	// their recorded size and mtime, which the plan then need not look
	// up again (see same).
	found []bool
	files encodedFiles
}

// same returns the files found as recorded, as a set. It is built only
// for a plan: a no-op check needs none.
func (c installCheck) same() map[string]bool {
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

// checkInstall looks at every file that files record (see intact), as
// they are encoded in the state file: a no-op check builds no map of
// them. The files are in order of path, so a worker walks a run of them
// holding the folders of the current one open (see dirStack), and looks
// each file up in its folder: one lstat per file, one open per folder.
// The entries are shared out in a few runs, since on a cold cache each
// lookup may wait for the disk. A file not as recorded does not stop the
// check: the plan uses what it found of the others.
func checkInstall(ctx context.Context, root *os.Root, files encodedFiles) installCheck {
	c := installCheck{files: files, found: make([]bool, files.n)}
	top, err := openLookupRoot(root)
	if err != nil {
		return c
	}
	defer top.close()
	runs := files.split(min(runtime.GOMAXPROCS(0), 4, max(1, files.n/minCheckRun)))
	var bad atomic.Bool
	var wg sync.WaitGroup
	for _, run := range runs {
		wg.Go(func() {
			// A worker looks through a handle of its own: a
			// folder's lookups are not safe for concurrent use.
			own, err := top.open([]byte("."))
			if err != nil {
				bad.Store(true)
				return
			}
			defer own.close()
			if !checkRun(ctx, own, run, c.found) {
				bad.Store(true)
			}
		})
	}
	wg.Wait()
	c.ok = runs != nil && !bad.Load() && ctx.Err() == nil
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
func (e encodedFiles) split(k int) []fileRun {
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
func checkRun(ctx context.Context, top lookupDir, run fileRun, found []bool) bool {
	dirs := dirStack{top: top}
	defer dirs.close()
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
		dir, err := dirs.at(e.path[:slash+1])
		if err != nil || !safeName(e.path[slash+1:]) {
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

// safeName reports whether a path's element names something inside its
// folder.
func safeName(name []byte) bool {
	s := string(name) // no copy: compared only
	return s != "" && s != "." && s != ".."
}

// entryAsRecorded reports whether name, in folder d, is as e records it,
// and whether it was found a regular file of e's size and mtime.
func entryAsRecorded(d lookupDir, name []byte, e fileEntry) (regular, ok bool) {
	fi, err := d.lstat(name)
	switch {
	case err != nil:
		return false, false
	case e.flags&filePreserve != 0:
		return false, true
	case fi.kind == kindLink:
		target, err := d.readlink(name)
		sum := blake3.Sum256([]byte(target))
		return false, err == nil && e.flags&fileRawHash != 0 && bytes.Equal(e.hash, sum[:])
	case fi.kind == kindRegular:
		ok := fi.size == e.size && fi.mtimeNs == e.mtime
		return ok, ok
	}
	return false, false
}

// lookupDir is an open folder of the install in which files are looked
// up, never through a link; a lookup of a nested path through an os.Root
// opens every folder on the way, so each folder is opened once, from its
// parent.
//
// A lookupDir is not safe for concurrent use.
type lookupDir interface {
	// open opens the folder name in this one ("." for itself).
	open(name []byte) (lookupDir, error)
	// lstat looks name up, without following a link.
	lstat(name []byte) (lookupInfo, error)
	readlink(name []byte) (string, error)
	close()
}

// lookupInfo is what a lookup says of a file.
type lookupInfo struct {
	kind          int // kindRegular, kindLink or kindOther
	size, mtimeNs int64
}

const (
	kindOther = iota
	kindRegular
	kindLink
)

// dirStack holds open the folders of the path to the current folder, so
// that files taken in order of path open each folder about once.
type dirStack struct {
	top  lookupDir   // the install, not closed by the stack
	dirs []lookupDir // the folders below top, outermost first
	ends []int       // the length of path up to each of dirs
	path []byte      // the current folder's path, ending in "/"
	// failed is a folder that could not be opened, so that its other
	// files do not try again.
	failed []byte
}

// at returns the folder dir ("" for the install, else a path ending in
// "/"), opening what it must.
func (s *dirStack) at(dir []byte) (lookupDir, error) {
	if len(s.failed) > 0 && bytes.Equal(dir, s.failed) {
		return nil, errFolderFailed
	}
	k := len(s.dirs)
	for k > 0 && !(s.ends[k-1] <= len(dir) && bytes.Equal(dir[:s.ends[k-1]], s.path[:s.ends[k-1]])) {
		k--
	}
	for _, d := range s.dirs[k:] {
		d.close()
	}
	s.dirs, s.ends = s.dirs[:k], s.ends[:k]
	end := 0
	if k > 0 {
		end = s.ends[k-1]
	}
	s.path = append(s.path[:end], dir[end:]...)
	cur := s.top
	if k > 0 {
		cur = s.dirs[k-1]
	}
	for rest := dir[end:]; len(rest) > 0; {
		i := bytes.IndexByte(rest, '/')
		if i < 0 || !safeName(rest[:i]) {
			s.failed = append(s.failed[:0], dir...)
			return nil, errFolderFailed
		}
		d, err := cur.open(rest[:i])
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

func (s *dirStack) close() {
	for _, d := range s.dirs {
		d.close()
	}
	s.dirs = nil
}

// lastCheckFile records the last sync that found nothing to do, so that
// such a sync does not rewrite the whole state. It is informational:
// 'status' shows it, nothing depends on it, and a damaged one is ignored.
const lastCheckFile = metaDir + "/last-check.json"

type lastCheck struct {
	When   time.Time `json:"when"`
	Server string    `json:"server"`
	Build  string    `json:"build"`
}

// recordCheck writes lastCheckFile by rename, without a sync: losing it in
// a power cut loses nothing that matters.
func recordCheck(root *os.Root, c lastCheck) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	tmp := lastCheckFile + ".tmp"
	if err := root.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return root.Rename(tmp, lastCheckFile)
}

func readCheck(root *os.Root) (lastCheck, bool) {
	var c lastCheck
	data, err := root.ReadFile(lastCheckFile)
	if err != nil || json.Unmarshal(data, &c) != nil {
		return lastCheck{}, false
	}
	return c, true
}

// Compression choices for Options.Compress.
const (
	CompressAuto = "auto" // none on a loopback connection, zstd on any other
	CompressYes  = "yes"
	CompressNo   = "no"
)

// wantRaw decides whether to ask for file data without compression. On
// loopback the bytes cost nothing to move and compressing them costs the
// server's CPU and the client's time (measured in BENCHMARKS.md); on a
// real link zstd at its fastest level saves about a quarter of the bytes
// of a typical installation.
func wantRaw(choice string, remote net.Addr) bool {
	switch choice {
	case CompressYes:
		return false
	case CompressNo:
		return true
	}
	a, ok := remote.(*net.TCPAddr)
	return ok && a.IP.IsLoopback()
}
