package releases

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/zeebo/blake3"
)

// Patches. The patch from one file of an older release (base) to one of a
// newer (new) lies in STATE/releases/patches/<base>-<new>.zp: the patch
// (internal/zpatch) followed by the BLAKE3 of its bytes, so that a damaged
// entry is found before a byte of it is sent. A pair for which no patch is
// worth keeping (it would not be smaller than the file) has an empty
// <base>-<new>.none instead, so that it is not made again. Both go with
// either file's object when pruned.

// ErrDamagedPatch is returned by OpenPatch for a cache entry whose bytes
// are not those written.
var ErrDamagedPatch = errors.New("releases: damaged patch in the cache")

// PatchInfo is one patch of the cache.
type PatchInfo struct {
	Base, New Hash
	Size      int64 // the patch's bytes, without the trailer
}

func (s *Store) patchDir() string { return filepath.Join(s.Dir, "patches") }

func (s *Store) patchFile(base, new Hash, ext string) string {
	return filepath.Join(s.patchDir(), base.String()+"-"+new.String()+ext)
}

// HasPatch reports whether the pair was tried: a patch or a .none marker
// is in the cache.
func (s *Store) HasPatch(base, new Hash) bool {
	for _, ext := range []string{".zp", ".none"} {
		if _, err := os.Stat(s.patchFile(base, new, ext)); err == nil {
			return true
		}
	}
	return false
}

// WritePatch writes the patch make writes into the cache, with its
// trailer, atomically; with keep false it writes the .none marker
// instead. It returns the patch's size.
func (s *Store) WritePatch(base, new Hash, make func(w io.Writer) error, keep func(size int64) bool) (int64, bool, error) {
	if err := os.MkdirAll(s.patchDir(), 0o755); err != nil {
		return 0, false, fmt.Errorf("making the patch cache: %w", err)
	}
	tmp, err := os.CreateTemp(s.patchDir(), "tmp-")
	if err != nil {
		return 0, false, fmt.Errorf("making a patch: %w", err)
	}
	defer os.Remove(tmp.Name())
	h := blake3.New()
	cw := &countWriter{w: io.MultiWriter(tmp, h)}
	err = make(cw)
	if err == nil {
		_, err = tmp.Write(h.Sum(nil))
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, false, fmt.Errorf("making the patch %s-%s: %w", base, new, err)
	}
	if !keep(cw.n) {
		if err := os.WriteFile(s.patchFile(base, new, ".none"), nil, 0o644); err != nil {
			return cw.n, false, fmt.Errorf("marking the pair %s-%s: %w", base, new, err)
		}
		return cw.n, false, nil
	}
	if err := os.Rename(tmp.Name(), s.patchFile(base, new, ".zp")); err != nil {
		return 0, false, fmt.Errorf("making the patch %s-%s: %w", base, new, err)
	}
	return cw.n, true, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// OpenPatch opens the patch from base to new and checks it whole against
// its trailer (ErrDamagedPatch). The file is positioned at the patch's
// start; size is the patch's length, without the trailer.
func (s *Store) OpenPatch(base, new Hash) (f *os.File, size int64, err error) {
	path := s.patchFile(base, new, ".zp")
	f, err = os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() < 32 {
		err = fmt.Errorf("%s: %w: %d bytes, shorter than its trailer", path, ErrDamagedPatch, fi.Size())
	}
	if err == nil {
		size = fi.Size() - 32
		h := blake3.New()
		var sum [32]byte
		if _, err = io.Copy(h, io.NewSectionReader(f, 0, size)); err == nil {
			if _, err = f.ReadAt(sum[:], size); err == nil && !bytes.Equal(h.Sum(nil), sum[:]) {
				err = fmt.Errorf("%s: %w", path, ErrDamagedPatch)
			}
		}
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, size, nil
}

// RemovePatch removes the patch from base to new (a damaged one).
func (s *Store) RemovePatch(base, new Hash) error {
	err := os.Remove(s.patchFile(base, new, ".zp"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// ListPatches returns the patches of the cache.
func (s *Store) ListPatches() ([]PatchInfo, error) {
	ents, err := os.ReadDir(s.patchDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the patch cache: %w", err)
	}
	var out []PatchInfo
	for _, e := range ents {
		base, new, ok := parsePatchName(e.Name(), ".zp")
		if !ok {
			continue
		}
		info, err := e.Info()
		if err != nil || info.Size() < 32 {
			continue
		}
		out = append(out, PatchInfo{Base: base, New: new, Size: info.Size() - 32})
	}
	return out, nil
}

func parsePatchName(name, ext string) (base, new Hash, ok bool) {
	stem, ok := strings.CutSuffix(name, ext)
	if !ok || len(stem) != 129 || stem[64] != '-' {
		return base, new, false
	}
	if base.UnmarshalText([]byte(stem[:64])) != nil || new.UnmarshalText([]byte(stem[65:])) != nil {
		return base, new, false
	}
	return base, new, true
}

// prunePatches removes the cache entries of pairs one of whose objects is
// no longer kept, and temporary files of a patch being made when its
// maker was killed.
func (s *Store) prunePatches(used map[Hash]bool) error {
	ents, err := os.ReadDir(s.patchDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing the patch cache: %w", err)
	}
	var errs []error
	for _, e := range ents {
		name := e.Name()
		base, new, ok := parsePatchName(name, ".zp")
		if !ok {
			base, new, ok = parsePatchName(name, ".none")
		}
		if ok && used[base] && used[new] {
			continue
		}
		if !ok {
			// A patch being made now (by the server, while a
			// publish prunes) is left alone; one left by a maker
			// that was killed goes once it is old.
			if info, err := e.Info(); err != nil || !strings.HasPrefix(name, "tmp-") || time.Since(info.ModTime()) < time.Hour {
				continue
			}
		}
		if err := atomicfile.Remove(filepath.Join(s.patchDir(), name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("pruning the patch cache: %w", err))
		}
	}
	return errors.Join(errs...)
}
