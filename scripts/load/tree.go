//go:build linux

package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/zeebo/blake3"
)

// entry is one thing of a tree: a folder, a link (its target) or a file
// (its executable bit and BLAKE3 hash).
type entry struct {
	kind string // "dir", "link", "file"
	exec bool
	sum  string
}

// clientINI is the file the harness writes into the folders of the
// smartclient processes; the releases hold none.
const clientINI = "smartclient.ini"

// skipped reports whether a top-level name of an install folder is not
// part of the install: the client's bookkeeping and backups, and the
// harness's smartclient.ini.
func skipped(top string) bool {
	t := strings.ToLower(top)
	return t == ".smartclient" || strings.HasPrefix(t, "bkp_remote.") || t == clientINI
}

// hasher hashes files, once per inode: the clients' folders are hard-linked
// copies of a template, and a file the sync did not replace is the same
// inode, hence the same bytes.
type hasher struct {
	mu   sync.Mutex
	seen map[[2]uint64]string
}

func newHasher() *hasher { return &hasher{seen: map[[2]uint64]string{}} }

func (h *hasher) sum(path string, fi fs.FileInfo) (string, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	var key [2]uint64
	if ok {
		key = [2]uint64{st.Dev, st.Ino}
		h.mu.Lock()
		s, hit := h.seen[key]
		h.mu.Unlock()
		if hit {
			return s, nil
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	d := blake3.New()
	if _, err := io.Copy(d, f); err != nil {
		return "", err
	}
	s := hex.EncodeToString(d.Sum(nil))
	if ok {
		h.mu.Lock()
		h.seen[key] = s
		h.mu.Unlock()
	}
	return s, nil
}

// tree reads dir's entries, without the install folder's bookkeeping.
func (h *hasher) tree(dir string) (map[string]entry, error) {
	out := map[string]entry{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		if !strings.Contains(rel, "/") && skipped(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			out[rel] = entry{kind: "dir"}
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(path)
			if err != nil {
				return err
			}
			out[rel] = entry{kind: "link", sum: t}
		case fi.Mode().IsRegular():
			s, err := h.sum(path, fi)
			if err != nil {
				return err
			}
			out[rel] = entry{kind: "file", exec: fi.Mode()&0o100 != 0, sum: s}
		default:
			out[rel] = entry{kind: fi.Mode().Type().String()}
		}
		return nil
	})
	return out, err
}

// treeOf reads a release folder.
func treeOf(dir string) (map[string]entry, error) {
	t, err := newHasher().tree(dir)
	if err != nil {
		return nil, err
	}
	for p := range t {
		if !strings.Contains(p, "/") && skipped(p) {
			return nil, fmt.Errorf("%s: the release holds %s, which the harness leaves out of its comparisons", dir, p)
		}
	}
	return t, nil
}

// compare fails unless dir holds exactly want (every entry, file contents
// by hash, executable bits), its bookkeeping aside.
func (h *hasher) compare(dir string, want map[string]entry) error {
	got, err := h.tree(dir)
	if err != nil {
		return err
	}
	var diffs []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			diffs = append(diffs, "missing "+p)
		case g != w:
			diffs = append(diffs, "differs "+p)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, "extra "+p)
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	slices.Sort(diffs)
	n := len(diffs)
	if n > 5 {
		diffs = append(diffs[:5], "...")
	}
	return fmt.Errorf("%s differs from the release in %d entries: %s", dir, n, strings.Join(diffs, ", "))
}
