package appserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/index"
	"github.com/erpupdate/smartsync/appserver/internal/releases"
	"github.com/erpupdate/smartsync/internal/zpatch"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/klauspost/compress/zstd"
)

// Patches from history (syncproto's doc, "Patches from history"). When a
// published release is first served, the server plans, for every file it
// changed from each older release kept, the patch from the old file to
// the new one, and makes them one at a time in the background, into the
// store's cache; a client that holds an old file is offered the patches
// made so far. A patch is made once per release pair and served to every
// client from the cache.

// patchMin is the smallest file a patch is made for: below it, the
// file's own zstd encoding costs about the same, and the offer is bytes
// on the wire for nothing.
const patchMin = 8 << 10

// patchBases is how many older releases a release's patches are made
// from, whatever [UPDATE] KeepReleases keeps.
const patchBases = 4

// patchGCPercent is the collector's target while a patch is made, and
// patchMemoryLimit the soft limit of the Go runtime's memory meanwhile
// (see debug.SetMemoryLimit): the server's goal is 64 MiB of RSS.
const (
	patchGCPercent   = 20
	patchMemoryLimit = 44 << 20
)

// patchKeep decides whether a patch is worth keeping: it must save at
// least a tenth of the file, or a client would do as well fetching the
// file compressed.
func patchKeep(fileSize int64) func(int64) bool {
	return func(n int64) bool { return n < fileSize-fileSize/10 }
}

// patcher keeps the cache of patches and makes the missing ones.
type patcher struct {
	store *releases.Store
	log   *slog.Logger

	mu      sync.Mutex
	byNew   map[releases.Hash][]releases.PatchInfo // the cache, by the file a patch makes
	loaded  bool
	gen     uint64 // grows with every change of byNew
	todo    []patchJob
	queued  map[[2]releases.Hash]bool
	wake    chan struct{}
	offered map[*index.Manifest]*manifestOffers // offers per manifest, for gen
	// made counts the patches made, for tests and the log.
	made int
	// observe, when set, is told of every patch made, kept or not (the
	// metrics).
	observe func(took time.Duration, kept bool, err error)
	// sharedProcess says the process is not the server's alone (tests
	// run many servers in one): the collector's settings, which are the
	// process's, are then left alone while a patch is made.
	sharedProcess bool
	// The patches made since the queue was last empty, for the log;
	// used by run only.
	batch, batchKept int
	batchStart       time.Time
}

type patchJob struct {
	base, new releases.Hash
	size      int64 // the new file's
	path      string
}

// manifestOffers are the offers of one manifest, made once per cache
// generation.
type manifestOffers struct {
	gen    uint64
	offers []syncproto.PatchRef
	byKey  map[patchKey]int64 // the patch's size
}

// size returns the size of the patch offered for index from base.
func (o *manifestOffers) size(index uint32, base releases.Hash) (int64, bool) {
	if o == nil {
		return 0, false
	}
	n, ok := o.byKey[patchKey{index, base}]
	return n, ok
}

type patchKey struct {
	index uint32
	base  releases.Hash
}

func newPatcher(store *releases.Store, log *slog.Logger) *patcher {
	return &patcher{store: store, log: log, queued: map[[2]releases.Hash]bool{}, wake: make(chan struct{}, 1),
		offered: map[*index.Manifest]*manifestOffers{}}
}

// loadLocked reads the cache's listing once.
func (p *patcher) loadLocked() {
	if p.loaded {
		return
	}
	p.loaded = true
	p.byNew = map[releases.Hash][]releases.PatchInfo{}
	list, err := p.store.ListPatches()
	if err != nil {
		p.log.Warn("reading the patch cache; patches are made again", "err", err)
	}
	for _, pi := range list {
		p.byNew[pi.New] = append(p.byNew[pi.New], pi)
	}
	p.gen++
}

// plan queues the patches that release n of osName lacks, from the files
// of every older release kept.
func (p *patcher) plan(osName string, n uint64) {
	cur, err := p.store.Record(osName, n)
	if err != nil {
		p.log.Warn("planning patches", "os", osName, "release", n, "err", err)
		return
	}
	ns, err := p.store.Numbers(osName)
	if err != nil {
		p.log.Warn("planning patches", "os", osName, "err", err)
		return
	}
	// Patches from the newest few older releases only: a workstation
	// further behind is rare, and each base costs an offer to every
	// client of the release and a patch to make.
	if len(ns) > patchBases+1 {
		ns = ns[len(ns)-patchBases-1:]
	}
	byPath := map[string]releases.Entry{}
	for _, e := range cur.Files {
		if !e.Dir && e.Target == "" && e.Size >= patchMin && e.Size <= zpatch.MaxFile {
			byPath[e.Path] = e
		}
	}
	var jobs []patchJob
	// Newest first: the release most clients still hold.
	for _, old := range slices.Backward(ns) {
		if old >= n {
			continue
		}
		rec, err := p.store.Record(osName, old)
		if err != nil {
			continue // pruned meanwhile
		}
		for _, e := range rec.Files {
			nw, ok := byPath[e.Path]
			if !ok || e.Dir || e.Target != "" || e.Hash == nw.Hash || e.Size < patchMin || e.Size > zpatch.MaxFile {
				continue
			}
			jobs = append(jobs, patchJob{base: e.Hash, new: nw.Hash, size: nw.Size, path: e.Path})
		}
	}
	p.mu.Lock()
	// A publish prunes the cache in its own process: the listing is read
	// again at each release.
	p.loaded = false
	p.loadLocked()
	added := 0
	for _, j := range jobs {
		k := [2]releases.Hash{j.base, j.new}
		if p.queued[k] || p.hasLocked(j.base, j.new) || p.store.HasPatch(j.base, j.new) {
			continue
		}
		p.queued[k] = true
		p.todo = append(p.todo, j)
		added++
	}
	p.mu.Unlock()
	if added == 0 {
		p.log.Info("no patches to make for the release: every one it needs is made", "os", osName, "release", n)
	}
	if added > 0 {
		p.log.Info("making patches from the older releases kept, in the background", "os", osName, "release", n, "patches", added)
		p.poke()
	}
}

func (p *patcher) hasLocked(base, new releases.Hash) bool {
	for _, pi := range p.byNew[new] {
		if pi.Base == base {
			return true
		}
	}
	return false
}

// run makes the queued patches, one at a time, until ctx is done.
func (p *patcher) run(ctx context.Context) {
	for {
		p.mu.Lock()
		var j patchJob
		ok := len(p.todo) > 0
		if ok {
			j, p.todo = p.todo[0], p.todo[1:]
		}
		p.mu.Unlock()
		if !ok {
			if p.batch > 0 {
				p.log.Info("made the patches planned", "patches", p.batch, "kept", p.batchKept, "took", time.Since(p.batchStart).Round(time.Millisecond))
				p.batch, p.batchKept = 0, 0
			}
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
				continue
			}
		}
		start := time.Now()
		if p.batch == 0 {
			p.batchStart = start
		}
		// Making a patch holds an encoder's tables and windows (about
		// 25 MiB) for a moment: the collector runs sooner meanwhile,
		// so that the server's peak stays near its live memory plus
		// that, rather than twice it.
		var size int64
		var kept bool
		var err error
		if p.sharedProcess {
			size, kept, err = p.make(ctx, j)
		} else {
			gc := debug.SetGCPercent(patchGCPercent)
			// And near patchMemoryLimit it runs harder still, unless
			// the administrator set a limit of the process ([LIMITS]
			// MemoryLimitMB, GOMEMLIMIT), which stays.
			ours := debug.SetMemoryLimit(-1) == math.MaxInt64
			if ours {
				debug.SetMemoryLimit(patchMemoryLimit)
			}
			size, kept, err = p.make(ctx, j)
			if ours && debug.SetMemoryLimit(-1) == patchMemoryLimit {
				debug.SetMemoryLimit(math.MaxInt64)
			}
			debug.SetGCPercent(gc)
		}
		p.batch++
		if kept {
			p.batchKept++
		}
		p.mu.Lock()
		delete(p.queued, [2]releases.Hash{j.base, j.new})
		if p.observe != nil && ctx.Err() == nil {
			p.observe(time.Since(start), kept, err)
		}
		if err == nil && kept {
			p.byNew[j.new] = append(p.byNew[j.new], releases.PatchInfo{Base: j.base, New: j.new, Size: size})
			p.gen++
			p.made++
		}
		p.mu.Unlock()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			p.log.Warn("making a patch; its clients get the file by other deltas", "path", j.path, "err", err)
		default:
			p.log.Debug("made a patch", "path", j.path, "bytes", j.size, "patch_bytes", size, "kept", kept, "took", time.Since(start).Round(time.Millisecond))
		}
	}
}

// make makes one patch from the store's objects into its cache.
func (p *patcher) make(ctx context.Context, j patchJob) (int64, bool, error) {
	objects := p.store.ObjectsDir()
	old, err := os.Open(filepath.Join(objects, filepath.FromSlash(releases.ObjectName(j.base))))
	if err != nil {
		return 0, false, err
	}
	defer old.Close()
	nw, err := os.Open(filepath.Join(objects, filepath.FromSlash(releases.ObjectName(j.new))))
	if err != nil {
		return 0, false, err
	}
	defer nw.Close()
	ofi, err := old.Stat()
	if err != nil {
		return 0, false, err
	}
	return p.store.WritePatch(j.base, j.new, func(w io.Writer) error {
		return zpatch.Make(ctx, w, old, ofi.Size(), nw, j.size, zpatch.Options{})
	}, patchKeep(j.size))
}

// offers returns the patches the cache holds for the files of man.
func (p *patcher) offers(man *index.Manifest) *manifestOffers {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.loadLocked()
	if o := p.offered[man]; o != nil && o.gen == p.gen {
		return o
	}
	o := &manifestOffers{gen: p.gen, byKey: map[patchKey]int64{}}
	for i, f := range man.Files {
		if f.Dir || f.Target != "" {
			continue
		}
		for _, pi := range p.byNew[f.Hash] {
			o.offers = append(o.offers, syncproto.PatchRef{Index: uint32(i), Base: pi.Base, Size: uint64(pi.Size)})
			o.byKey[patchKey{uint32(i), pi.Base}] = pi.Size
		}
	}
	slices.SortFunc(o.offers, func(a, b syncproto.PatchRef) int {
		if a.Index != b.Index {
			return int(a.Index) - int(b.Index)
		}
		return bytes.Compare(a.Base[:], b.Base[:])
	})
	if len(o.offers) > syncproto.MaxSessionPatchOffers {
		o.offers = o.offers[:syncproto.MaxSessionPatchOffers]
	}
	// Only the manifests in use are kept: one per OS and release served.
	if len(p.offered) > 16 {
		clear(p.offered)
	}
	p.offered[man] = o
	return o
}

// damaged drops a damaged patch from the cache, to be made again.
func (p *patcher) damaged(base, new releases.Hash, path string, size int64) {
	if err := p.store.RemovePatch(base, new); err != nil {
		p.log.Warn("removing a damaged patch", "err", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forgetLocked(base, new)
	k := [2]releases.Hash{base, new}
	if !p.queued[k] {
		p.queued[k] = true
		p.todo = append(p.todo, patchJob{base: base, new: new, size: size, path: path})
		p.poke()
	}
}

// poke wakes run for the jobs just queued.
func (p *patcher) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// gone forgets a patch no longer in the cache, so that it is not offered
// again.
func (p *patcher) gone(base, new releases.Hash) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forgetLocked(base, new)
}

// forgetLocked drops the patch from base to new from what is offered.
func (p *patcher) forgetLocked(base, new releases.Hash) {
	p.byNew[new] = slices.DeleteFunc(p.byNew[new], func(pi releases.PatchInfo) bool { return pi.Base == base })
	p.gen++
}

// sendOffers sends the offers of man, in frames of at most
// MaxPatchOffers; one empty frame when there are none.
func (s *Server) sendOffers(ss *session, o *manifestOffers) error {
	offers := o.offers
	for {
		n := min(len(offers), syncproto.MaxPatchOffers)
		msg := syncproto.PatchOffer{More: n < len(offers), Offers: offers[:n]}
		ss.conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
		if err := ss.w.Write(msg); err != nil {
			return err
		}
		offers = offers[n:]
		if !msg.More {
			return nil
		}
	}
}

// sendPatch sends file index as the patch from base, read from the
// cache and checked whole before a byte goes; a damaged entry is removed,
// made again in the background, and the file sent whole instead.
func (s *Server) sendPatch(ctx context.Context, ss *session, man *index.Manifest, index uint32, base releases.Hash, enc *zstd.Encoder, buf []byte) error {
	f := man.Files[index]
	fh, size, err := s.patches.store.OpenPatch(base, f.Hash)
	if err != nil {
		switch {
		case errors.Is(err, releases.ErrDamagedPatch):
			s.patches.damaged(base, f.Hash, f.Path, f.Size)
		case errors.Is(err, fs.ErrNotExist):
			s.patches.gone(base, f.Hash) // pruned by a publish
		}
		s.log.Warn("cannot send a patch; sending the file whole", "os", man.OS, "path", f.Path, "err", err)
		return s.sendFile(ctx, ss, man, index, enc, buf)
	}
	defer fh.Close()
	if err := ss.w.Write(syncproto.FileStart{Index: index, Size: uint64(f.Size)}); err != nil {
		return err
	}
	r := io.LimitReader(fh, size)
	for sent := int64(0); sent < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := io.ReadFull(r, buf[:min(int64(len(buf)), size-sent)])
		if err != nil {
			return fmt.Errorf("reading the patch of %s: %w", f.Path, err)
		}
		ss.conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
		if err := ss.w.Write(syncproto.FilePatch{Data: buf[:n]}); err != nil {
			return err
		}
		sent += int64(n)
	}
	ss.files++
	ss.fileByte += f.Size
	ss.patched++
	return ss.w.Write(syncproto.FileEnd{Hash: f.Hash})
}
