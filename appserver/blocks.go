package appserver

import (
	"context"
	"io"
	"math/bits"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/index"
	"github.com/erpupdate/smartsync/internal/cdc"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"
)

// piece is one part of a file sent as a block delta: Len bytes copied from
// the base at Off, or Len bytes of the new file from Off.
type piece struct {
	Off, Len int64
	Copy     bool
}

// maxChain bounds the blocks with the same weak sum that are tried at one
// offset: a base of many equal blocks (zeros) finds its match among the
// first, and a hostile list of equal weak sums costs no more.
const maxChain = 8

// blockIndex finds a base's blocks by their sums.
type blockIndex struct {
	sums   []syncproto.BlockSum
	size   int // block size
	full   int // blocks of exactly size bytes; a shorter last one is sums[full]
	filter []uint64
	mask   uint32
	head   map[uint32]int32 // weak sum -> first full block with it
	next   []int32          // full block -> next full block with the same weak sum, or -1
}

func newBlockIndex(req *syncproto.BlockRequest) *blockIndex {
	ix := &blockIndex{sums: req.Sums, size: int(req.BlockSize), full: int(req.BaseSize / uint64(req.BlockSize))}
	// A bit per weak sum in a filter of at least 32 bits per block keeps
	// all but about one offset in 32 away from the map.
	nbits := max(1024, 1<<bits.Len(uint(32*ix.full)))
	ix.filter = make([]uint64, nbits/64)
	ix.mask = uint32(nbits - 1)
	ix.head = make(map[uint32]int32, ix.full)
	ix.next = make([]int32, ix.full)
	for j := ix.full - 1; j >= 0; j-- {
		w := ix.sums[j].Weak
		ix.filter[(w&ix.mask)/64] |= 1 << (w & 63)
		if k, ok := ix.head[w]; ok {
			ix.next[j] = k
		} else {
			ix.next[j] = -1
		}
		ix.head[w] = int32(j)
	}
	return ix
}

// after returns the weak sum of the full block after prev (the last
// match, -1 for none), which a run of unchanged blocks keeps finding, and
// false when there is no such block.
func (ix *blockIndex) after(prev int) (uint32, bool) {
	if prev < 0 || prev+1 >= ix.full {
		return 0, false
	}
	return ix.sums[prev+1].Weak, true
}

// nextOf reports whether w is the weak sum of the block after prev.
func (ix *blockIndex) nextOf(prev int, w uint32) bool {
	next, ok := ix.after(prev)
	return ok && next == w
}

// maybe reports whether some full block may have the weak sum w: false
// for most offsets, at the cost of one bit test.
func (ix *blockIndex) maybe(w uint32) bool {
	return ix.filter[(w&ix.mask)/64]&(1<<(w&63)) != 0
}

// find returns the full block whose sums are those of window (whose weak
// sum is w), trying first the block after prev (so that runs of blocks
// become one copy), or -1. The strong sum is computed at most once per
// window and counted in hashed.
func (ix *blockIndex) find(w uint32, window []byte, prev int, hashed *int64) int {
	next := ix.nextOf(prev, w)
	j, ok := ix.head[w]
	if !next && !ok {
		return -1 // the filter's false positive
	}
	*hashed += int64(len(window))
	strong := cdc.StrongSum(window)
	if next && ix.sums[prev+1].Strong == strong {
		return prev + 1
	}
	for n := 0; ok && j >= 0 && n < maxChain; n++ {
		if ix.sums[j].Strong == strong {
			return int(j)
		}
		j = ix.next[j]
	}
	return -1
}

// matchBlocks cuts data, the new file, into copies of the base's blocks
// found at any offset and literal runs between them, in file order. Runs
// of copies of consecutive blocks are merged. The strong sums it computes
// are bounded (to 8 times data plus a block, then the rest is literal), so
// a client cannot make the server hash much more than it sends.
func matchBlocks(data []byte, req *syncproto.BlockRequest) []piece {
	ix := newBlockIndex(req)
	bs := ix.size
	var out []piece
	lit := 0 // start of the literal run not yet emitted
	emitLit := func(end int) {
		if end > lit {
			out = append(out, piece{Off: int64(lit), Len: int64(end - lit)})
		}
	}
	emitCopy := func(off, n int64) {
		if k := len(out) - 1; k >= 0 && out[k].Copy && out[k].Off+out[k].Len == off {
			out[k].Len += n
			return
		}
		out = append(out, piece{Off: off, Len: n, Copy: true})
	}
	budget := 8*int64(len(data)) + int64(bs)
	var hashed int64
	roll := cdc.NewRoller(bs)
	var h cdc.WeakState
	fresh := true
	prev := -1
	for i := 0; ix.full > 0 && i+bs <= len(data) && hashed < budget; {
		if fresh {
			h, fresh = cdc.WeakSum(data[i:i+bs]), false
		}
		// Roll on to the next offset whose weak sum a block may have:
		// the block after the last match, or one the filter lets by;
		// or to the last offset.
		nextW, hasNext := ix.after(prev)
		for end := len(data) - bs; i < end; i++ {
			if w := h.Weak(); ix.maybe(w) || hasNext && w == nextW {
				break
			}
			h = roll.Roll(h, data[i], data[i+bs])
		}
		if j := ix.find(h.Weak(), data[i:i+bs], prev, &hashed); j >= 0 {
			emitLit(i)
			emitCopy(int64(j)*int64(bs), int64(bs))
			prev, i, lit, fresh = j, i+bs, i+bs, true
			continue
		}
		if i+bs < len(data) {
			h = roll.Roll(h, data[i], data[i+bs])
		}
		i++
	}
	// The base's short last block is looked for at the end of the file
	// only, where a file that grew or kept its tail has it.
	if tail := int(req.BaseSize % uint64(bs)); tail > 0 && len(data)-lit >= tail {
		p := data[len(data)-tail:]
		if s := ix.sums[ix.full]; cdc.WeakSum(p).Weak() == s.Weak && cdc.StrongSum(p) == s.Strong {
			emitLit(len(data) - tail)
			emitCopy(int64(ix.full)*int64(bs), int64(tail))
			lit = len(data)
		}
	}
	emitLit(len(data))
	return out
}

// sendBlocks sends file index as the difference from the client's base
// named by block sums (syncproto's doc, "Deltas"). The file, of at most
// MaxBlockFile bytes, is read whole into the session's buffer; where its
// change time is not read it is hashed against the manifest before a byte
// is sent.
func (s *Server) sendBlocks(ctx context.Context, ss *session, man *index.Manifest, index uint32, req *syncproto.BlockRequest, enc *zstd.Encoder) error {
	f := man.Files[index]
	fh, same, changed := s.openToSend(ss, man, f)
	if fh == nil {
		return changed
	}
	defer fh.Close()
	if int64(cap(ss.blockData)) < f.Size {
		ss.blockData = make([]byte, f.Size)
	}
	data := ss.blockData[:f.Size]
	if _, err := io.ReadFull(fh, data); err != nil {
		s.log.Warn("reading file to send", "os", man.OS, "path", f.Path, "err", err)
		return changed
	}
	if (man.MustHash(f) && blake3.Sum256(data) != f.Hash) || !same() {
		return changed
	}
	pieces := matchBlocks(data, req)
	if err := ctx.Err(); err != nil {
		return err
	}
	ss.conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
	if err := ss.w.Write(syncproto.FileStart{Index: index, Size: uint64(f.Size)}); err != nil {
		return err
	}
	for _, p := range pieces {
		ss.conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
		if p.Copy {
			if err := ss.w.Write(syncproto.FileCopy{Off: uint64(p.Off), Len: uint32(p.Len)}); err != nil {
				return err
			}
			continue
		}
		for b := data[p.Off : p.Off+p.Len]; len(b) > 0; {
			n := min(len(b), syncproto.MaxChunk)
			if err := ss.w.WriteChunk(enc, b[:n]); err != nil {
				return err
			}
			b = b[n:]
		}
	}
	ss.files++
	ss.fileByte += f.Size
	return ss.w.Write(syncproto.FileEnd{Hash: f.Hash})
}
