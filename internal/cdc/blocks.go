package cdc

import (
	"hash/crc32"
	"math"
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
// sum is the block's CRC-32C (Castagnoli), which the processor computes
// (SSE 4.2, ARMv8): the server checks it at every offset where the weak
// sum matches, so for most of a file, and BLAKE3 there cost the server
// four times the rolling itself. The two are unrelated functions (one
// polynomial over the integers mod 2^64, one over GF(2)), 64 bits
// together: a false match at some offset of a 1 MiB file against 8192
// blocks has odds of about 2^-31 on data that is not built to defeat
// both. It would cost a failed check of the whole file's BLAKE3 (the
// update fails with ErrVerify), never a wrong file. Both sums,
// the gear table and K are part of the wire protocol.

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

// Powers of rollK mod 2^64, for WeakSum's four bytes a step
// (TestRollPowers checks them).
const (
	rollK2 = 0xdf442d22ce4859b9
	rollK3 = 0x604a5ce3addef82d
	rollK4 = 0xd94363fc538227b1
)

// WeakSum returns the weak sum state of p. It takes four bytes a step,
// h*K^4 + g(a)*K^3 + g(b)*K^2 + g(c)*K + g(d), the same sum as one byte a
// step with a quarter of the multiplications in a chain: the server sums
// every block it finds this way.
func WeakSum(p []byte) WeakState {
	var h uint64
	for len(p)%4 != 0 {
		h = h*rollK + gear[p[0]]
		p = p[1:]
	}
	for ; len(p) >= 4; p = p[4:] {
		h = h*rollK4 + gear[p[0]]*rollK3 + gear[p[1]]*rollK2 + gear[p[2]]*rollK + gear[p[3]]
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

// castagnoli is the CRC-32C table; hash/crc32 uses the processor's
// instructions for it where they exist.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// StrongSum returns the strong sum of a block: its CRC-32C.
func StrongSum(p []byte) uint32 { return crc32.Checksum(p, castagnoli) }
