package cdc

import (
	"encoding/binary"
	"math"

	"github.com/zeebo/blake3"
)

// Block sums. Content-defined chunks lose about one average chunk around
// every edit, which for a small file rebuilt in a few places is most of
// the file. Small files are therefore moved the way rsync moves them
// (Tridgell and Mackerras, "The rsync algorithm", 1996): the client cuts
// its base into blocks of a fixed size and names each by two sums, and the
// server looks for those blocks at every offset of the new file, rolling
// the weak sum one byte at a time and checking the strong one where the
// weak one matches.
//
// The weak sum is a polynomial hash over the gear table,
//
//	h = gear[b0]*K^(n-1) + gear[b1]*K^(n-2) + ... + gear[b(n-1)]  (mod 2^64)
//
// of which the top 32 bits are sent: rolling it costs two multiplications
// a byte, and its top bits depend on every byte of the block. The strong
// sum is the first 4 bytes of the block's BLAKE3-256. Together they are
// 64 bits: a false match at some offset of a 1 MiB file against 8192
// blocks has odds of about 2^-31, and would cost a failed check of the
// whole file's BLAKE3, never a wrong file. Both sums, the gear table and K
// are part of the wire protocol.

const (
	// MaxBlock is the largest block size BlockSize gives; syncproto's
	// MinBlockSize and MaxBlockSize bound what a client may ask for.
	MaxBlock = 64 << 10
	// rollK is the multiplier of the weak sum: an odd 64-bit constant
	// (the golden ratio's, as in Fibonacci hashing).
	rollK = 0x9e3779b97f4a7c15
)

// BlockSize returns the block size a client uses for a base of size
// bytes: 1.5*sqrt(size) rounded up to a multiple of 8, at least 128 and at
// most MaxBlock. On the benchmark's tree (small files rebuilt in 1-8
// places) this size made the fewest bytes of new data plus sums, against
// sizes of 0.75, 1 and 2 times the square root and fixed 128-700 bytes.
func BlockSize(size int64) int {
	b := int(math.Ceil(1.5*math.Sqrt(float64(max(size, 0)))+7)) &^ 7
	return min(max(b, 128), MaxBlock)
}

// WeakState is the full 64-bit state of the weak sum of some bytes; Weak
// gives the 32 bits that are sent.
type WeakState uint64

// Weak returns the sent part of the weak sum.
func (h WeakState) Weak() uint32 { return uint32(h >> 32) }

// WeakSum returns the weak sum state of p.
func WeakSum(p []byte) WeakState {
	var h uint64
	for _, b := range p {
		h = h*rollK + gear[b]
	}
	return WeakState(h)
}

// Roller rolls the weak sum of a window of a fixed size along a stream.
type Roller struct {
	top uint64 // rollK^(n-1): the weight of the window's first byte
}

// NewRoller returns a Roller for windows of n bytes, n >= 1.
func NewRoller(n int) Roller {
	top := uint64(1)
	for range n - 1 {
		top *= rollK
	}
	return Roller{top: top}
}

// Roll returns the weak sum of the window moved one byte on: out is the
// byte that leaves it (its first), in the one that enters it.
func (r Roller) Roll(h WeakState, out, in byte) WeakState {
	return WeakState((uint64(h)-gear[out]*r.top)*rollK + gear[in])
}

// StrongSum returns the strong sum of a block: the first 4 bytes of its
// BLAKE3-256, big-endian.
func StrongSum(p []byte) uint32 {
	sum := blake3.Sum256(p)
	return binary.BigEndian.Uint32(sum[:4])
}
