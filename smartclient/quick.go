package smartclient

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/install"
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
// holding the folders of the current one open (see install.DirStack), and looks
// each file up in its folder: one lstat per file, one open per folder.
// The entries are shared out in a few runs, since on a cold cache each
// lookup may wait for the disk. A file not as recorded does not stop the
// check: the plan uses what it found of the others.
func checkInstall(ctx context.Context, root *os.Root, files encodedFiles) installCheck {
	c := installCheck{files: files, found: make([]bool, files.n)}
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
	}
	return false, false
}

// lastCheckFile records the last sync that found nothing to do, so that
// such a sync does not rewrite the whole state. It is informational:
// 'status' shows it, nothing depends on it, and a damaged one is ignored.
const lastCheckFile = install.MetaDir + "/last-check.json"

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
