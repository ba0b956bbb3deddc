package fetch

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/erpupdate/smartsync/internal/zpatch"
	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest"
	"github.com/erpupdate/smartsync/smartclient/internal/state"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/zeebo/blake3"
)

// Patches from history. A server that keeps its older releases offers,
// after the manifest, zstd patches (internal/zpatch) that turn a file of
// an older release into the file of the manifest (syncproto's doc,
// "Patches from history"). A file the client holds as its state records
// it, unchanged on disk since, and for which the server offers a patch
// from that very content, is asked for as the patch: the server sends it,
// the client applies it to the installed file as it arrives, writing the
// result into staging, and checks the result's BLAKE3 like any other
// download.
//
// The patch is streamed: the receiving loop writes each FilePatch frame
// into a pipe that zpatch.Apply reads on a goroutine of its own, which
// writes the rebuilt bytes into the staged file. Nothing is buffered but
// what Apply holds (one window of the old file, one segment and its
// frame: zpatch's package doc), so the client's memory does not grow
// with the file or the patch.

// Offers are the patches offered by the server that the client can use:
// for a manifest index, the one whose base is the content the client's
// state records at that entry's path. Offers of other bases are dropped
// as they are read, so that they take memory by the manifest's files
// that the client holds, not by the server's history.
type Offers map[int]syncproto.PatchRef

// OfferSource is where the offers are read from: the session.
type OfferSource interface {
	Expect(t syncproto.MsgType) (syncproto.Message, error)
}

// ReadOffers reads the PatchOffer frames that follow the manifest man
// when the client asked for them (GetPatches): up to the first without
// More. Every offer must name a file of the manifest, in order (by index,
// then base, across frames too), and a session holds at most
// MaxSessionPatchOffers: a server that breaks any of these is refused
// with an error wrapping syncproto.ErrUnexpected that says what. It keeps
// only the offers whose base is the content st records at the entry's
// path (st's files loaded; none kept when they are not).
func ReadOffers(src OfferSource, man *manifest.Manifest, st *state.State) (Offers, error) {
	offers := Offers{}
	var last syncproto.PatchRef
	n := 0 // offers read
	var hexBase [2 * syncproto.HashSize]byte
	for {
		m, err := src.Expect(syncproto.MsgPatchOffer)
		if err != nil {
			return nil, fmt.Errorf("reading patch offers: %w", err)
		}
		o := m.(syncproto.PatchOffer)
		if n+len(o.Offers) > syncproto.MaxSessionPatchOffers {
			return nil, fmt.Errorf("reading patch offers: more than the %d offers a session may hold: %w", syncproto.MaxSessionPatchOffers, syncproto.ErrUnexpected)
		}
		for _, r := range o.Offers {
			if n > 0 && (r.Index < last.Index || r.Index == last.Index && string(r.Base[:]) <= string(last.Base[:])) {
				return nil, fmt.Errorf("reading patch offers: offer %d (entry %d) is not after offer %d (entry %d), by index then base: %w",
					n, r.Index, n-1, last.Index, syncproto.ErrUnexpected)
			}
			if uint64(r.Index) >= uint64(man.Len()) {
				return nil, fmt.Errorf("reading patch offers: offer %d names entry %d, past the manifest's %d entries: %w",
					n, r.Index, man.Len(), syncproto.ErrUnexpected)
			}
			rf := man.File(int(r.Index))
			if rf.Dir || rf.Target != "" {
				return nil, fmt.Errorf("reading patch offers: offer %d names entry %d %q, which is not a file: %w",
					n, r.Index, rf.Path, syncproto.ErrUnexpected)
			}
			last = r
			n++
			if k, ok := st.Files[rf.Path]; ok {
				hex.Encode(hexBase[:], r.Base[:])
				if k.Hash == string(hexBase[:]) {
					offers[int(r.Index)] = r
				}
			}
		}
		if !o.More {
			return offers, nil
		}
	}
}

// planPatch returns how to ask for rf as the patch offer, or nil when it
// cannot be: the installed file fi at rf's path must be the one the
// state records (size and mtime, as for a kept chunk list), with the
// content the offer's base names.
func planPatch(st *state.State, rf manifest.File, offer *syncproto.PatchRef, fi fs.FileInfo) *Delta {
	if offer == nil || fi == nil || !fi.Mode().IsRegular() {
		return nil
	}
	// A patch smaller than the file is taken before any other delta:
	// block and chunk deltas of a file whose bytes moved (a rebuilt
	// executable) are mostly new data, while the patch was made with
	// zstd matching at any offset of the old file, once, on the server,
	// and costs the client no read of the base to name it. A patch no
	// smaller than the file is worth nothing over the file itself.
	if offer.Size >= uint64(rf.Size) {
		return nil
	}
	k, ok := st.Files[rf.Path]
	if !ok || k.Size != fi.Size() || k.MtimeNs != fi.ModTime().UnixNano() {
		return nil
	}
	var hexBase [2 * syncproto.HashSize]byte
	hex.Encode(hexBase[:], offer.Base[:])
	if k.Hash != string(hexBase[:]) {
		return nil
	}
	p := *offer
	return &Delta{patch: &p, baseSize: fi.Size(), baseMtime: fi.ModTime().UnixNano()}
}

// PatchPlanned reports whether file index of man would be asked for as
// a patch (what PlanDeltas decides for it), for a plan that is only
// listed.
func PatchPlanned(root *install.Disk, st *state.State, man *manifest.Manifest, index int, offers Offers) bool {
	offer, ok := offers[index]
	if !ok {
		return false
	}
	rf := man.File(index)
	fi, err := root.Lstat(rf.Path)
	return err == nil && planPatch(st, rf, &offer, fi) != nil
}

// stagedWriter writes a file being received into staging: it hashes
// what it writes, counts it as progress, and refuses a byte past size.
type stagedWriter struct {
	root     *install.Disk
	out      *os.File
	name     string // the staged file
	path     string // the file's path in the release, for errors
	size     int64
	got      int64
	h        *blake3.Hasher
	progress Progress
}

func (w *stagedWriter) Write(b []byte) (int, error) {
	if int64(len(b)) > w.size-w.got {
		return 0, fmt.Errorf("receiving %s: more bytes than the %d declared: %w", w.path, w.size, ErrVerify)
	}
	w.h.Write(b)
	if err := w.root.WriteStaged(w.out, w.name, w.got, b); err != nil {
		return 0, fmt.Errorf("staging %s: %w", w.path, err)
	}
	w.got += int64(len(b))
	w.progress.Add(int64(len(b)))
	return len(b), nil
}

// receivePatch receives file rf, asked for as the patch d names, into
// staging: as FilePatch frames applied to the installed file, or, when
// the server could not read its patch, as FileData frames of the whole
// file; never a mix. The result is checked like any download; a file
// that fails leaves nothing staged.
func (f *Fetcher) receivePatch(ctx context.Context, rf manifest.File, d *Delta) error {
	staged := install.StagingDir + "/" + rf.Path
	out, err := f.root.OpenFile(staged, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("staging %s: %w", rf.Path, err)
	}
	done := false
	defer func() {
		out.Close()
		if !done {
			// Only whole, verified files stay staged (see KeepForResume).
			f.root.Remove(staged)
		}
	}()
	w := &stagedWriter{root: f.root, out: out, name: staged, path: rf.Path, size: rf.Size, h: blake3.New(), progress: f.progress}
	first, err := f.c.Read()
	if err != nil {
		return fmt.Errorf("receiving %s: %w", rf.Path, err)
	}
	var end syncproto.FileEnd
	_, viaPatch := first.(syncproto.FilePatch)
	switch first.(type) {
	case syncproto.FilePatch:
		end, err = f.applyPatch(ctx, rf, d, w, first)
	case syncproto.FileData:
		f.log.Info("the server sent a file whole instead of the patch asked for", "path", rf.Path)
		end, err = f.wholeInstead(rf, w, first)
	default:
		err = fmt.Errorf("receiving %s: expected FilePatch or FileData for a file asked for as a patch, got %v: %w", rf.Path, first.Type(), syncproto.ErrUnexpected)
	}
	if err != nil {
		return err
	}
	if w.got != rf.Size {
		// Apply and wholeInstead write size bytes or fail; this is
		// their check, not the server's.
		return fmt.Errorf("receiving %s: %d bytes of the %d declared: %w", rf.Path, w.got, rf.Size, ErrVerify)
	}
	if err := checkEnd(rf, w.h.Sum(nil), end); err != nil {
		return err
	}
	if err := out.Chmod(stagedMode(rf.Mode)); err != nil {
		return fmt.Errorf("staging %s: %w", rf.Path, err)
	}
	closed := f.root.CloseStaged(out, staged, time.Unix(0, rf.MtimeNs))
	out = nil
	if closed != nil {
		f.root.Remove(staged)
		return fmt.Errorf("staging %s: %w", rf.Path, closed)
	}
	done = true
	if viaPatch {
		f.patched++
	}
	f.progress.FileDone()
	return nil
}

// errPatchCut is what zpatch.Apply reads when the receiving loop stops
// before the patch's end; the loop's own error is the one returned.
var errPatchCut = errors.New("the patch was cut short")

// applyPatch applies the patch that begins with first to the installed
// version of rf, writing the result to w, and returns the file's
// FileEnd. The frames are read here and piped to zpatch.Apply, which runs
// beside: a patch that does not fit the installed version or the size
// declared stops it, and the frames still coming are not read.
func (f *Fetcher) applyPatch(ctx context.Context, rf manifest.File, d *Delta, w *stagedWriter, first syncproto.Message) (syncproto.FileEnd, error) {
	base, err := openBase(f.root, rf, d)
	if err != nil {
		return syncproto.FileEnd{}, err
	}
	defer base.Close()
	pr, pw := io.Pipe()
	applied := make(chan error, 1)
	go func() {
		err := zpatch.Apply(ctx, w, base, d.baseSize, pr, rf.Size)
		// A frame written after Apply ended gets its error, or
		// errPatchCut when it ended well, before the patch's end.
		pr.CloseWithError(cmp(err, errPatchCut))
		applied <- err
	}()
	// stop ends Apply (if it has not ended) and waits for it: no write
	// to the staged file, no read of the base, happens after.
	stop := func(why error) error {
		pw.CloseWithError(why)
		return <-applied
	}
	failed := func(err error) error {
		switch {
		case errors.Is(err, ErrVerify):
			return err // the writer's own, which names the file
		case errors.Is(err, zpatch.ErrCorrupt):
			return fmt.Errorf("receiving %s: the patch from the installed version does not apply: %w (%w)", rf.Path, err, ErrVerify)
		}
		return fmt.Errorf("receiving %s: applying the patch: %w", rf.Path, err)
	}
	var sent uint64 // patch bytes received
	m := first
	for {
		switch m := m.(type) {
		case syncproto.FilePatch:
			sent += uint64(len(m.Data))
			if sent > d.patch.Size {
				stop(errPatchCut)
				return syncproto.FileEnd{}, fmt.Errorf("receiving %s: a patch longer than the %d bytes offered: %w", rf.Path, d.patch.Size, ErrVerify)
			}
			f.wire += int64(len(m.Data))
			if _, err := pw.Write(m.Data); err != nil {
				// Apply stopped before the patch's end: its error
				// says why.
				return syncproto.FileEnd{}, failed(cmp(<-applied, err))
			}
		case syncproto.FileEnd:
			if sent != d.patch.Size {
				stop(errPatchCut)
				return syncproto.FileEnd{}, fmt.Errorf("receiving %s: the patch ended after %d of the %d bytes offered: %w", rf.Path, sent, d.patch.Size, ErrVerify)
			}
			pw.Close()
			if err := <-applied; err != nil {
				return syncproto.FileEnd{}, failed(err)
			}
			return m, nil
		case syncproto.FileData:
			stop(errPatchCut)
			return syncproto.FileEnd{}, fmt.Errorf("receiving %s: the server mixed FileData into a patch: %w", rf.Path, syncproto.ErrUnexpected)
		default:
			stop(errPatchCut)
			return syncproto.FileEnd{}, fmt.Errorf("receiving %s: expected FilePatch or FileEnd, got %v: %w", rf.Path, m.Type(), syncproto.ErrUnexpected)
		}
		var err error
		if m, err = f.c.Read(); err != nil {
			stop(errPatchCut)
			return syncproto.FileEnd{}, fmt.Errorf("receiving %s: %w", rf.Path, err)
		}
	}
}

// cmp returns err, or def when err is nil.
func cmp(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// wholeInstead receives rf whole, in FileData frames beginning with
// first: the server's answer to a patch it could not read from its cache.
func (f *Fetcher) wholeInstead(rf manifest.File, w *stagedWriter, first syncproto.Message) (syncproto.FileEnd, error) {
	m := first
	for {
		switch m := m.(type) {
		case syncproto.FileData:
			if uint64(m.RawLen) > uint64(rf.Size-w.got) {
				return syncproto.FileEnd{}, fmt.Errorf("receiving %s: more bytes than the %d declared: %w", rf.Path, rf.Size, ErrVerify)
			}
			f.wire += int64(len(m.Data))
			raw, err := syncproto.DecodeChunk(f.dec, m, f.buf)
			if err != nil {
				return syncproto.FileEnd{}, fmt.Errorf("receiving %s: %w", rf.Path, err)
			}
			f.buf = raw
			if _, err := w.Write(raw); err != nil {
				return syncproto.FileEnd{}, err
			}
		case syncproto.FileEnd:
			if w.got != rf.Size {
				return syncproto.FileEnd{}, fmt.Errorf("receiving %s: the file ended after %d of the %d bytes declared: %w", rf.Path, w.got, rf.Size, ErrVerify)
			}
			return m, nil
		case syncproto.FilePatch:
			return syncproto.FileEnd{}, fmt.Errorf("receiving %s: the server mixed FilePatch into a file sent whole: %w", rf.Path, syncproto.ErrUnexpected)
		default:
			return syncproto.FileEnd{}, fmt.Errorf("receiving %s: expected FileData or FileEnd, got %v: %w", rf.Path, m.Type(), syncproto.ErrUnexpected)
		}
		var err error
		if m, err = f.c.Read(); err != nil {
			return syncproto.FileEnd{}, fmt.Errorf("receiving %s: %w", rf.Path, err)
		}
	}
}
