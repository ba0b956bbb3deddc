package fetch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/erpupdate/smartsync/internal/cdc"
	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest"
	"github.com/erpupdate/smartsync/smartclient/internal/state"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/zeebo/blake3"
)

// Deltas. A file to fetch whose path already holds a file (an older
// version, or the user's edit of it) is asked for as a delta from that
// base: the client names the base's content-defined chunks, the server
// sends the bytes the base lacks and where to copy the rest from, and the
// new file is assembled in staging and checked whole against the
// manifest's BLAKE3 like any other download (syncproto's doc, "Deltas").
//
// The chunks of large files are kept in .smartclient/chunks, one list per
// content hash and chunking parameter, so that a large base is not read
// twice; the list comes from the server with the file (DeltaWantList), and
// a list that is missing or damaged costs a read of the base, never a
// wrong file. Small bases are cut when needed.
const (
	chunksDir = install.MetaDir + "/chunks"
	// deltaMin: a base smaller than this is not worth naming chunk by
	// chunk; the file is fetched whole.
	deltaMin = 4 << 10
	// listMin: files from this size on have their chunk list kept.
	listMin = 1 << 20
	// blockMin: a file or base smaller than this is fetched whole rather
	// than as a block delta.
	blockMin = 1 << 10
)

// Delta is how one file is asked for when it is not asked for whole: by
// the base's blocks (sums set) or by its chunks.
type Delta struct {
	bits      uint8
	base      []syncproto.ChunkRef // the base's chunks; none: fetch whole, with the list
	blockSize int
	sums      []syncproto.BlockSum // the base's block sums (BlockRequest)
	baseSize  int64
	baseMtime int64
	wantList  bool
	list      []syncproto.ChunkRef // the new file's chunks, as the server sent them
	patch     *syncproto.PatchRef  // the patch offered from the installed version (see patch.go)
}

// hasBase reports whether the server's answer may copy from the base.
func (d *Delta) hasBase() bool { return len(d.base) > 0 || len(d.sums) > 0 }

// refCount is what the request names of the base, counted against
// MaxSessionChunkRefs.
func (d *Delta) refCount() int { return len(d.base) + len(d.sums) }

// PlanDeltas decides, for each file to download, whether to ask for it as
// a patch from offers (see planPatch) or as a delta, and cuts or looks up
// its base's chunks. Any problem with a base just means the file is
// fetched whole. Bases are looked at by
// deltaWorkers at once (reading and cutting them is most of the work);
// the chunk references a session may name are counted in download's
// order, so the outcome does not depend on which finished first. Without
// blocks, no file is asked for by block sums.
func PlanDeltas(root *install.Disk, st *state.State, man *manifest.Manifest, download []int, offers Offers, blocks bool, log *slog.Logger) map[int]*Delta {
	found := make([]*Delta, len(download))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(deltaWorkers, len(download)) {
		wg.Go(func() {
			var scratch []byte // for sumBase, one per worker
			for {
				k := int(next.Add(1) - 1)
				if k >= len(download) {
					return
				}
				var offer *syncproto.PatchRef
				if o, ok := offers[download[k]]; ok {
					offer = &o
				}
				found[k] = planDelta(root, st, man.File(download[k]), offer, blocks, &scratch, log)
			}
		})
	}
	wg.Wait()
	deltas := map[int]*Delta{}
	refs := 0 // chunk references named so far: a session may name MaxSessionChunkRefs
	for k, i := range download {
		d := found[k]
		if d == nil {
			continue
		}
		if refs+d.refCount() > syncproto.MaxSessionChunkRefs {
			// Past what one session may name: whole, with its list.
			log.Info("fetching a file whole: this sync already names as many chunks as a session may", "path", man.File(i).Path)
			d.base, d.sums, d.baseSize, d.baseMtime = nil, nil, 0, 0
			if !d.wantList {
				continue
			}
		}
		if d.patch != nil {
			log.Info("fetching a file as a patch from the installed version", "path", man.File(i).Path, "patch_bytes", d.patch.Size)
		}
		refs += d.refCount()
		deltas[i] = d
	}
	return deltas
}

// deltaWorkers is how many bases PlanDeltas looks at at once.
const deltaWorkers = 4

// sumRead is about how much of a base sumBase reads at once.
const sumRead = 64 << 10

// planDelta is PlanDeltas' decision for one file: nil to fetch it whole
// without a chunk list.
func planDelta(root *install.Disk, st *state.State, rf manifest.File, offer *syncproto.PatchRef, blocks bool, scratch *[]byte, log *slog.Logger) *Delta {
	fi, err := root.Lstat(rf.Path)
	if err == nil {
		if d := planPatch(st, rf, offer, fi); d != nil {
			return d
		}
	}
	if blocks && err == nil && fi.Mode().IsRegular() && rf.Size >= blockMin && rf.Size <= syncproto.MaxBlockFile && rf.Size < listMin && fi.Size() >= blockMin {
		if bs := blockSizeFor(fi.Size()); bs <= syncproto.MaxBlockSize {
			d := &Delta{blockSize: bs, baseSize: fi.Size(), baseMtime: fi.ModTime().UnixNano()}
			if d.sums, err = sumBase(root, rf.Path, bs, fi, scratch); err != nil {
				log.Info("fetching a file whole: cannot read the installed version", "path", rf.Path, "err", err)
				return nil
			}
			return d
		}
	}
	if err != nil || !fi.Mode().IsRegular() || fi.Size() < deltaMin || rf.Size < deltaMin {
		if rf.Size >= listMin {
			return &Delta{bits: cdc.BitsFor(rf.Size), wantList: true}
		}
		return nil
	}
	d := &Delta{bits: cdc.BitsFor(fi.Size()), baseSize: fi.Size(), baseMtime: fi.ModTime().UnixNano(), wantList: rf.Size >= listMin}
	if k, ok := st.Files[rf.Path]; ok && k.Size == fi.Size() && k.MtimeNs == fi.ModTime().UnixNano() {
		d.base = cachedList(root, k.Hash, d.bits, fi.Size())
	}
	if d.base == nil {
		if d.base, err = cutBase(root, rf.Path, d.bits, fi); err != nil {
			log.Info("fetching a file whole: cannot read the installed version", "path", rf.Path, "err", err)
			return nil
		}
	}
	return d
}

// cachedList returns the kept chunk list of content hash, or nil.
func cachedList(root *install.Disk, hash string, bits uint8, size int64) []syncproto.ChunkRef {
	if len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
		return nil // also keeps link hashes ("link:...") out of file names
	}
	data, err := root.ReadFile(chunksDir + "/" + listName(hash, bits))
	if err != nil {
		return nil
	}
	b, chunks, err := cdc.DecodeList(data)
	if err != nil || b != bits || total(chunks) != size {
		return nil
	}
	return refs(chunks)
}

func listName(hash string, bits uint8) string { return fmt.Sprintf("%s-%d", hash, bits) }

func total(chunks []cdc.Chunk) int64 {
	if len(chunks) == 0 {
		return 0
	}
	return chunks[len(chunks)-1].Off + int64(chunks[len(chunks)-1].Len)
}

func refs(chunks []cdc.Chunk) []syncproto.ChunkRef {
	r := make([]syncproto.ChunkRef, len(chunks))
	for i, c := range chunks {
		r[i] = syncproto.ChunkRef{Len: c.Len, Hash: c.Hash}
	}
	return r
}

// cutBase reads the installed file name and returns its chunks, provided
// it is still the file fi describes.
func cutBase(root *install.Disk, name string, bits uint8, fi fs.FileInfo) ([]syncproto.ChunkRef, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	chunks, err := cdc.Split(f, bits)
	if err != nil {
		return nil, err
	}
	if now, err := f.Stat(); err != nil || !sameVersion(now, fi) || total(chunks) != fi.Size() {
		return nil, errors.New("it changed while being read")
	}
	return refs(chunks), nil
}

// blockSizeFor is the block size of a base of size bytes: cdc.BlockSize,
// or more where that would make more than MaxBlockSums blocks.
func blockSizeFor(size int64) int {
	return max(cdc.BlockSize(size), int((size+syncproto.MaxBlockSums-1)/syncproto.MaxBlockSums))
}

// sumBase reads the installed file name in blocks of bs bytes and returns
// their sums, provided it is still the file fi describes. It reads into
// *scratch, which it grows as needed and its caller keeps for the next
// file (a buffer for each of 1,000 files made a tenth of an incremental
// sync's allocations).
func sumBase(root *install.Disk, name string, bs int, fi fs.FileInfo, scratch *[]byte) ([]syncproto.BlockSum, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sums := make([]syncproto.BlockSum, 0, (fi.Size()+int64(bs)-1)/int64(bs))
	n := max(1, sumRead/bs) * bs // whole blocks at each read
	if cap(*scratch) < n {
		*scratch = make([]byte, n)
	}
	buf := (*scratch)[:n]
	var read int64
	for {
		k, err := io.ReadFull(f, buf)
		for p := buf[:k]; len(p) > 0; {
			b := p[:min(bs, len(p))]
			sums = append(sums, syncproto.BlockSum{Weak: cdc.WeakSum(b).Weak(), Strong: cdc.StrongSum(b)})
			p = p[len(b):]
		}
		read += int64(k)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if now, err := f.Stat(); err != nil || !sameVersion(now, fi) || read != fi.Size() {
		return nil, errors.New("it changed while being read")
	}
	return sums, nil
}

func sameVersion(a, b fs.FileInfo) bool {
	return a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// keepList saves the chunk list of a verified file for the next delta. A
// cache: written without a sync, checked when read.
func keepList(root *install.Disk, hash [32]byte, d *Delta, log *slog.Logger) {
	if !d.wantList || len(d.list) == 0 {
		return
	}
	chunks := make([]cdc.Chunk, len(d.list))
	var off int64
	for i, r := range d.list {
		chunks[i] = cdc.Chunk{Off: off, Len: r.Len, Hash: r.Hash}
		off += int64(r.Len)
	}
	name := chunksDir + "/" + listName(fmt.Sprintf("%x", hash), d.bits)
	err := root.MkdirAll(chunksDir, 0o755)
	if err == nil {
		err = root.WriteFile(name+".tmp", cdc.AppendList(nil, d.bits, chunks), 0o644)
	}
	if err == nil {
		err = root.Rename(name+".tmp", name)
	}
	if err != nil {
		log.Info("keeping a chunk list", "file", name, "err", err)
	}
}

// PruneLists removes the kept chunk lists of content no longer installed.
func PruneLists(root *install.Disk, st *state.State) {
	entries, err := fs.ReadDir(root.FS(), chunksDir)
	if err != nil {
		return
	}
	keep := make(map[string]bool, len(st.Files))
	for _, k := range st.Files {
		keep[k.Hash] = true
	}
	for _, e := range entries {
		hash, _, _ := strings.Cut(e.Name(), "-")
		if !keep[hash] {
			root.Remove(chunksDir + "/" + e.Name())
		}
	}
}

// readList reads the ChunkList frames of the file being received.
func (f *Fetcher) readList(rf manifest.File, d *Delta) error {
	d.list = d.list[:0]
	var sum int64
	short := false // the last chunk seen is shorter than the minimum: it must be the file's last
	minLen, _, maxLen := cdc.Sizes(d.bits)
	for {
		m, err := f.c.Expect(syncproto.MsgChunkList)
		if err != nil {
			return fmt.Errorf("receiving %s: %w", rf.Path, err)
		}
		l := m.(syncproto.ChunkList)
		if l.Bits != d.bits {
			return fmt.Errorf("receiving %s: chunk list cut with %d, asked for %d: %w", rf.Path, l.Bits, d.bits, ErrVerify)
		}
		if l.More && len(l.Chunks) == 0 {
			// Each frame must bring the list closer to its end.
			return fmt.Errorf("receiving %s: an empty chunk list frame with more to come: %w", rf.Path, ErrVerify)
		}
		for _, r := range l.Chunks {
			switch {
			case int(r.Len) > maxLen:
				return fmt.Errorf("receiving %s: a chunk of %d bytes, over the %d its parameter allows: %w", rf.Path, r.Len, maxLen, ErrVerify)
			case short:
				return fmt.Errorf("receiving %s: a chunk under the %d bytes its parameter allows before the last: %w", rf.Path, minLen, ErrVerify)
			}
			short = int(r.Len) < minLen
			sum += int64(r.Len)
		}
		if sum > rf.Size {
			return fmt.Errorf("receiving %s: chunk list longer than the file: %w", rf.Path, ErrVerify)
		}
		d.list = append(d.list, l.Chunks...)
		if !l.More {
			break
		}
	}
	if sum != rf.Size {
		return fmt.Errorf("receiving %s: chunk list of %d bytes for a file of %d: %w", rf.Path, sum, rf.Size, ErrVerify)
	}
	return nil
}

// openBase opens the installed file a delta is assembled from, provided
// it is still the version whose chunks were named.
func openBase(root *install.Disk, rf manifest.File, d *Delta) (*os.File, error) {
	f, err := root.Open(rf.Path)
	if err != nil {
		return nil, fmt.Errorf("receiving %s: opening the installed version: %w", rf.Path, err)
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() != d.baseSize || fi.ModTime().UnixNano() != d.baseMtime {
		f.Close()
		return nil, fmt.Errorf("receiving %s: the installed version changed during the update; retry", rf.Path)
	}
	return f, nil
}

// copyBase appends n bytes of base at off to the staged file; write is
// told where in the base each piece comes from and how much of the copy
// is left from there.
func (f *Fetcher) copyBase(base io.ReaderAt, off int64, n int64, write func(b []byte, src, left int64) error) error {
	if cap(f.buf) < syncproto.MaxChunk {
		f.buf = make([]byte, syncproto.MaxChunk)
	}
	buf := f.buf[:cap(f.buf)]
	for n > 0 {
		k := int(min(int64(len(buf)), n))
		if _, err := base.ReadAt(buf[:k], off); err != nil {
			return err
		}
		if err := write(buf[:k], off, n); err != nil {
			return err
		}
		off += int64(k)
		n -= int64(k)
	}
	return nil
}

// listCheck checks, as a delta or a whole file is written, that the chunk
// list the server sent with it names the file's bytes: each chunk's length
// and hash must be those of the bytes at its place. A chunk copied whole
// from a chunk of the base with the same length and hash is known without
// hashing it again, so a delta of a large file hashes only what came over
// the wire. (Where the chunks' boundaries fall is not checked: a list with
// odd boundaries only makes later deltas larger, never wrong.)
type listCheck struct {
	list   []syncproto.ChunkRef
	base   map[int64]syncproto.ChunkRef // the base's chunks by offset
	i      int                          // the chunk being written
	pos    int64                        // bytes of it written so far
	copied bool                         // it is a base chunk copied whole
	h      *blake3.Hasher
	bad    bool
}

func newListCheck(d *Delta) *listCheck {
	c := &listCheck{list: d.list, h: blake3.New()}
	if len(d.base) > 0 {
		c.base = make(map[int64]syncproto.ChunkRef, len(d.base))
		var off int64
		for _, r := range d.base {
			c.base[off] = r
			off += int64(r.Len)
		}
	}
	return c
}

// write takes the next bytes of the file: from the base at src with left
// bytes of the copy to go from there, or from the wire (src < 0).
func (c *listCheck) write(b []byte, src, left int64) {
	for len(b) > 0 && !c.bad {
		if c.i >= len(c.list) {
			c.bad = true // more bytes than the list names
			return
		}
		r := c.list[c.i]
		if c.pos == 0 {
			have, ok := c.base[src]
			c.copied = src >= 0 && ok && have == r && left >= int64(r.Len)
			c.h.Reset()
		}
		k := min(int64(len(b)), int64(r.Len)-c.pos)
		if !c.copied {
			c.h.Write(b[:k])
		}
		c.pos += k
		b = b[k:]
		if src >= 0 {
			src += k
			left -= k
		}
		if c.pos == int64(r.Len) {
			var sum [32]byte
			if !c.copied && !bytes.Equal(c.h.Sum(sum[:0])[:syncproto.ChunkHashSize], r.Hash[:]) {
				c.bad = true
			}
			c.i, c.pos = c.i+1, 0
		}
	}
}

// ok reports whether the list named every byte, and rightly.
func (c *listCheck) ok() bool { return !c.bad && c.i == len(c.list) && c.pos == 0 }
