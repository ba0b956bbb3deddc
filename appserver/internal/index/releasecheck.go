package index

import (
	"errors"
	"fmt"
	"strings"

	"github.com/erpupdate/smartsync/internal/releasecheck"
)

// check applies the clients' rules (internal/releasecheck) to the
// manifest of a scan: a folder every client would refuse is never served.
func check(m *Manifest) error {
	entries := make([]releasecheck.Entry, len(m.Files))
	for i, f := range m.Files {
		entries[i] = releasecheck.Entry{Path: f.Path, Size: f.Size, Mode: f.Mode, Dir: f.Dir, Target: f.Target}
	}
	return releasecheck.Check(entries)
}

// refuse handles a scan whose folder clients would refuse (err, a
// *releasecheck.Error), with mu held. Before the first good scan it is
// the index's error: Open fails with it, naming every path. After, the
// last good manifest stays current, and the log says so once for each
// distinct set of problems; refuse returns nil then.
func (ix *Index) refuse(err error) error {
	err = fmt.Errorf("checking update folder %s for %s: %w", ix.Dir, ix.OS, err)
	if ix.cur == nil {
		return err
	}
	if key := problemsKey(err); key != ix.refusedKey {
		ix.refusedKey = key
		ix.log.Error("the update folder changed into a release that clients would refuse; the last good one is still served until it is fixed",
			"dir", ix.Dir, "build", ix.cur.Build, "files", len(ix.cur.Files), "err", err)
	}
	ix.refused = err
	return nil
}

// accept notes a scan clients accept, with mu held.
func (ix *Index) accept() {
	if ix.refused != nil {
		ix.log.Info("the update folder is one clients accept again; serving it", "dir", ix.Dir)
	}
	ix.refused, ix.refusedKey = nil, ""
}

// Refused returns why the folder as last scanned is not served, naming
// every path clients would refuse (a *releasecheck.Error is in its
// chain), while the last good manifest is; nil when the folder is served
// as it is.
func (ix *Index) Refused() error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.refused
}

func problemsKey(err error) string {
	var ce *releasecheck.Error
	if !errors.As(err, &ce) {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range ce.Problems {
		b.WriteString(p.Path)
		b.WriteByte(0)
		b.WriteString(p.Reason)
		b.WriteByte('\n')
	}
	return b.String()
}
