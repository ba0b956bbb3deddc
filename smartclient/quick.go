package smartclient

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net"
	"os"
	"path"
	"runtime"
	"strings"
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
func intact(ctx context.Context, root *os.Root, files map[string]FileState) bool {
	return checkInstall(ctx, root, files).ok
}

// installCheck is what checkInstall found.
type installCheck struct {
	ok bool // the check finished, and every file is as recorded
	// found lists, per worker, the regular files found with their
	// recorded size and mtime, which the plan then need not look up
	// again (see same).
	found [][]string
}

// same returns the files found as recorded, as a set. It is built only
// for a plan: a no-op check needs none.
func (c installCheck) same() map[string]bool {
	n := 0
	for _, f := range c.found {
		n += len(f)
	}
	same := make(map[string]bool, n)
	for _, f := range c.found {
		for _, name := range f {
			same[name] = true
		}
	}
	return same
}

// checkInstall looks at every file the state records (see intact). Files
// are looked up folder by folder, each folder opened once (through the
// os.Root, so never through a link), since a lookup of a nested path
// through an os.Root opens every folder on the way; folders are shared out
// among a few workers, since on a cold cache each lookup may wait for the
// disk. A file not as recorded does not stop the check: the plan uses
// what it found of the others.
func checkInstall(ctx context.Context, root *os.Root, files map[string]FileState) installCheck {
	byDir := map[string][]string{}
	for name := range files {
		dir, _ := path.Split(name)
		byDir[dir] = append(byDir[dir], name)
	}
	dirs := make([]string, 0, len(byDir))
	for dir := range byDir {
		dirs = append(dirs, dir)
	}
	workers := min(runtime.GOMAXPROCS(0), 4, len(dirs))
	var bad atomic.Bool
	var next atomic.Int64
	var wg sync.WaitGroup
	found := make([][]string, workers)
	for w := range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(dirs) {
					return
				}
				var ok bool
				if found[w], ok = dirAsRecorded(root, dirs[i], byDir[dirs[i]], files, found[w]); !ok {
					bad.Store(true)
				}
			}
		})
	}
	wg.Wait()
	return installCheck{ok: !bad.Load() && ctx.Err() == nil, found: found}
}

// dirAsRecorded checks the files names (full paths) of folder dir,
// appending to same the regular files found as recorded.
func dirAsRecorded(root *os.Root, dir string, names []string, files map[string]FileState, same []string) ([]string, bool) {
	r := root
	if dir != "" {
		sub, err := root.OpenRoot(strings.TrimSuffix(dir, "/"))
		if err != nil {
			return same, false
		}
		defer sub.Close()
		r = sub
	}
	ok := true
	for _, name := range names {
		regular, as := asRecorded(r, name[len(dir):], files[name])
		if !as {
			ok = false
		} else if regular {
			same = append(same, name)
		}
	}
	return same, ok
}

// asRecorded reports whether name is as k records it, and whether it was
// found a regular file of k's size and mtime.
func asRecorded(root *os.Root, name string, k FileState) (regular, ok bool) {
	fi, err := root.Lstat(name)
	switch {
	case err != nil:
		return false, false
	case k.Preserve:
		return false, true
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := root.Readlink(name)
		sum := blake3.Sum256([]byte(target))
		return false, err == nil && hex.EncodeToString(sum[:]) == k.Hash
	case fi.Mode().IsRegular():
		ok := fi.Size() == k.Size && fi.ModTime().UnixNano() == k.MtimeNs
		return ok, ok
	}
	return false, false
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
