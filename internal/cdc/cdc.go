// Package cdc cuts files into content-defined chunks, so that the appserver
// and the smartclient can move only the parts of a large file that changed.
//
// The algorithm is FastCDC (Xia et al., "FastCDC: a Fast and Efficient
// Content-Defined Chunking Approach for Data Deduplication", USENIX ATC
// 2016) with normalized chunking at level 2. A gear hash
//
//	h = h<<1 + gear[b]
//
// rolls over the bytes of the current chunk. Because each step shifts h one
// bit left, h depends only on the last 64 bytes, and its top bits on almost
// all of them; a boundary is declared after a byte when the top bits of h
// selected by a mask are all zero. For an average chunk of 2^bits bytes:
//
//   - a chunk is at least min = avg/4 and at most max = 4*avg bytes long;
//   - the first min-64 bytes of a chunk are skipped without hashing, and the
//     next 63 are hashed without testing, so every tested h covers exactly
//     the 64 bytes ending at the tested byte: boundaries depend on content
//     and on the previous boundary only;
//   - for a cut that gives a chunk of at most avg bytes the mask has bits+2
//     bits (a cut is four times less likely than 2^-bits), for a longer
//     chunk bits-2 bits (four times more likely), which pulls chunk sizes
//     towards avg: on random data the mean chunk is about 1.15*avg;
//   - a chunk that reaches max bytes is cut there.
//
// The gear table, the masks and these rules are part of the wire protocol
// (syncproto's deltas name chunks by length and hash): both programs must
// cut the same bytes at the same places forever, and TestGolden pins them.
// A change to any of them needs a new protocol version and a new list magic.
//
// Each chunk is named by the first HashSize bytes of the BLAKE3-256 of its
// bytes. AppendList and DecodeList encode a file's chunk list for caches on
// disk and for protocol frames.
//
// For small files, whose every edit would cost a chunk or two of their few,
// the package also gives the rolling weak sum and the strong sum of
// rsync-style block deltas (see "Block sums" in blocks.go).
package cdc

import (
	"io"
	"math/bits"

	"github.com/zeebo/blake3"
)

const (
	// MinBits is the smallest average-chunk exponent: 1 KiB chunks.
	MinBits = 10
	// MaxBits is the largest average-chunk exponent: 64 KiB chunks.
	MaxBits = 16
	// HashSize is the length of a chunk's hash: a truncated BLAKE3-256.
	HashSize = 16
)

// window is the number of bytes the gear hash covers: a 64-bit hash shifted
// one bit per byte forgets a byte after 64 steps.
const window = 64

// Chunk is one content-defined chunk of a file.
type Chunk struct {
	// Off is the offset of the chunk's first byte in the file.
	Off int64
	// Len is the chunk's length in bytes, at least 1.
	Len uint32
	// Hash is the first HashSize bytes of the BLAKE3-256 of the chunk's bytes.
	Hash [HashSize]byte
}

// BitsFor returns the average-chunk-size exponent for a file of size bytes:
// the average is the next power of two at or above 4*sqrt(size), clamped to
// [1<<MinBits, 1<<MaxBits]. A file of n chunks then costs about n*20 bytes
// of list, which grows as sqrt(size), while a small change still costs
// little data. A size of zero or less gives MinBits.
func BitsFor(size int64) uint8 {
	if size <= 1 {
		return MinBits
	}
	// 2^k >= 4*sqrt(size) holds exactly when 4^(k-2) >= size, that is when
	// 2(k-2) >= ceil(log2(size)); bits.Len64(size-1) is that ceiling.
	k := 2 + (bits.Len64(uint64(size-1))+1)/2
	return clampBits(uint8(min(k, MaxBits)))
}

// clampBits brings bits into [MinBits, MaxBits].
func clampBits(b uint8) uint8 {
	return min(max(b, MinBits), MaxBits)
}

// Sizes returns the minimum, average and maximum chunk sizes for bits:
// avg = 1<<bits, min = avg/4 and max = avg*4. Bits outside
// [MinBits, MaxBits] are clamped into that range, as NewChunker does, so
// Sizes(0) gives the sizes of MinBits and Sizes(255) those of MaxBits.
func Sizes(bits uint8) (min, avg, max int) {
	avg = 1 << clampBits(bits)
	return avg / 4, avg, avg * 4
}

// cutter finds chunk boundaries in a stream, one piece at a time. It keeps
// only the gear hash and the length of the current chunk, so where a stream
// is split into pieces never changes where it is cut.
type cutter struct {
	min, avg, max int
	warm          int    // index in a chunk of the first byte hashed: min-window
	maskS, maskL  uint64 // the masks before and from avg (normalized chunking)

	n int    // bytes of the current chunk seen so far
	h uint64 // gear hash of the current chunk's bytes from warm on
}

func newCutter(bits uint8) cutter {
	bits = clampBits(bits)
	lo, avg, hi := Sizes(bits)
	return cutter{
		min: lo, avg: avg, max: hi, warm: lo - window,
		// Top bits: the low bits of h depend on the last few bytes only.
		maskS: ^uint64(0) << (64 - (bits + 2)),
		maskL: ^uint64(0) << (64 - (bits - 2)),
	}
}

// next consumes the bytes of p that belong to the current chunk. It returns
// how many it consumed and whether the current chunk ends with the last of
// them; if so, the cutter is ready for the next chunk.
//
// Each case below handles a run of bytes of one region of the chunk in a
// tight loop; the switch runs a few times per chunk and per call.
func (c *cutter) next(p []byte) (int, bool) {
	i := 0
	h := c.h
	for i < len(p) {
		n := c.n
		switch {
		case n < c.warm:
			// FastCDC's skip: no boundary can fall here.
			k := min(len(p)-i, c.warm-n)
			i += k
			c.n += k
		case n < c.min-1:
			// Fill the window so the first test sees 64 bytes.
			end := i + min(len(p)-i, c.min-1-n)
			for _, b := range p[i:end] {
				h = h<<1 + gear[b]
			}
			c.n += end - i
			i = end
		case n < c.avg:
			end := i + min(len(p)-i, c.avg-n)
			k, hh, found := scan(p[i:end], h, c.maskS)
			if found {
				return c.cut(i + k)
			}
			h = hh
			c.n += end - i
			i = end
		default:
			end := i + min(len(p)-i, c.max-n)
			k, hh, found := scan(p[i:end], h, c.maskL)
			if found {
				return c.cut(i + k)
			}
			h = hh
			c.n += end - i
			i = end
			if c.n == c.max {
				return c.cut(i)
			}
		}
	}
	c.h = h
	return i, false
}

// scan rolls h over p and returns the length of the shortest prefix of p
// after which h&mask is zero, or len(p), h and false if there is none.
//
// It takes two bytes per step. Rolling one byte, h<<1 + g, puts two
// dependent additions between one h and the next; h<<2 + (g0<<1 + g1)
// puts one instruction (a LEA on amd64) between h and the h two bytes on,
// while the table lookups, their sum and the test of the middle hash run
// beside that chain. Every byte is still tested, so this is only faster
// (about 1.6 times here), never different: TestChunkerMatchesReference
// checks it against a plain loop.
func scan(p []byte, h, mask uint64) (int, uint64, bool) {
	j := 0
	for ; j < len(p)-1; j += 2 {
		pair := p[j : j+2 : j+2] // proved in bounds: no check in the loop
		g0, g1 := gear[pair[0]], gear[pair[1]]
		h1 := h<<1 + g0
		h = h<<2 + (g0<<1 + g1)
		if h1&mask == 0 {
			return j + 1, h1, true
		}
		if h&mask == 0 {
			return j + 2, h, true
		}
	}
	if j < len(p) {
		h = h<<1 + gear[p[j]]
		if h&mask == 0 {
			return j + 1, h, true
		}
	}
	return len(p), h, false
}

// cut ends the current chunk after k more bytes.
func (c *cutter) cut(k int) (int, bool) {
	c.n, c.h = 0, 0
	return k, true
}

// Chunker splits a stream fed by Write into chunks. It never buffers the
// data itself: boundaries are found on the fly and each chunk's hash is
// computed incrementally, so feeding it 256 KiB pieces of a 500 MiB file
// costs no memory beyond the list of chunks. The chunks do not depend on
// how the stream is split into Write calls. Make one with NewChunker; a
// Chunker is not safe for concurrent use.
type Chunker struct {
	bits   uint8
	cut    cutter
	hasher *blake3.Hasher
	off    int64 // offset of the current chunk
	n      int   // bytes of the current chunk so far
	chunks []Chunk
	sum    [32]byte // Sum's output, here so that it never escapes per chunk
}

// NewChunker returns a Chunker with an average chunk of 1<<bits bytes.
// Bits outside [MinBits, MaxBits] are clamped into that range, as by Sizes.
func NewChunker(bits uint8) *Chunker {
	bits = clampBits(bits)
	return &Chunker{bits: bits, cut: newCutter(bits), hasher: blake3.New()}
}

// Bits returns the Chunker's average-chunk exponent, after clamping.
func (c *Chunker) Bits() uint8 { return c.bits }

// Write feeds the next bytes of the stream to c. It never fails: it
// returns len(p), nil.
func (c *Chunker) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		k, end := c.cut.next(p)
		c.hasher.Write(p[:k])
		c.n += k
		p = p[k:]
		if end {
			c.emit()
		}
	}
	return total, nil
}

// emit appends the current chunk, whose bytes the hasher has seen, to the
// list and starts the next one.
func (c *Chunker) emit() {
	ch := Chunk{Off: c.off, Len: uint32(c.n)}
	copy(ch.Hash[:], c.hasher.Sum(c.sum[:0]))
	c.hasher.Reset()
	c.chunks = append(c.chunks, ch)
	c.off += int64(c.n)
	c.n = 0
}

// Finish ends the stream: it emits the last chunk, which may be shorter than
// the minimum, and returns all the chunks in stream order. An empty stream
// gives no chunks. Finish resets c, which can then split another stream
// with the same bits.
func (c *Chunker) Finish() []Chunk {
	if c.n > 0 {
		c.emit()
	}
	chunks := c.chunks
	*c = Chunker{bits: c.bits, cut: newCutter(c.bits), hasher: c.hasher}
	return chunks
}

// Split reads r to the end and returns its chunks, cut with an average of
// 1<<bits bytes (clamped as by Sizes). If reading fails, it returns the
// reader's error as it is, and no chunks.
func Split(r io.Reader, bits uint8) ([]Chunk, error) {
	c := NewChunker(bits)
	// io.Copy hands a bytes.Reader's whole content to one Write and an
	// *os.File's in 32 KiB pieces; either way nothing is held back.
	if _, err := io.Copy(c, r); err != nil {
		return nil, err
	}
	return c.Finish(), nil
}
