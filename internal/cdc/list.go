package cdc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/zeebo/blake3"
)

// The chunk list encoding, big-endian like syncproto:
//
//	magic    4 bytes  "CDC1"
//	bits     1 byte   in [MinBits, MaxBits]
//	size     8 bytes  total length of the file
//	count    4 bytes  number of chunks
//	count times:
//	  len    4 bytes  chunk length
//	  hash  16 bytes  chunk hash
//	checksum 16 bytes first 16 bytes of the BLAKE3-256 of all the above
//
// Offsets are implied by the lengths. Every field has a fixed width, so a
// list has exactly one encoding and a cache or frame can be compared byte
// for byte. The magic names the chunking rules too: lists cut by other rules
// must not be mistaken for these.
const (
	listMagic    = "CDC1"
	listHeader   = 4 + 1 + 8 + 4
	listEntry    = 4 + HashSize
	listChecksum = 16
)

// ErrCorrupt is wrapped by every error DecodeList returns.
var ErrCorrupt = errors.New("cdc: corrupt chunk list")

// AppendList appends to b a self-checking encoding of a file's chunk list:
// the magic "CDC1", bits, the total size, the count, each chunk's Len and
// Hash (offsets are implied and the chunks' Off fields are ignored), then
// the first 16 bytes of the BLAKE3-256 of everything it appended before.
// Bits is clamped as by Sizes. AppendList does not check the chunks: a list
// that did not come from a Chunker with these bits may not decode.
// AppendList panics if there are more than 2^32-1 chunks, which no file
// cut with MinBits or more reaches below 1 TiB.
func AppendList(b []byte, bits uint8, chunks []Chunk) []byte {
	if uint64(len(chunks)) > math.MaxUint32 {
		panic("cdc: AppendList: too many chunks")
	}
	var size uint64
	for _, c := range chunks {
		size += uint64(c.Len)
	}
	start := len(b)
	b = append(b, listMagic...)
	b = append(b, clampBits(bits))
	b = binary.BigEndian.AppendUint64(b, size)
	b = binary.BigEndian.AppendUint32(b, uint32(len(chunks)))
	for _, c := range chunks {
		b = binary.BigEndian.AppendUint32(b, c.Len)
		b = append(b, c.Hash[:]...)
	}
	sum := blake3.Sum256(b[start:])
	return append(b, sum[:listChecksum]...)
}

// DecodeList decodes an encoding made by AppendList, which must be all of
// data. It checks everything before trusting anything: the magic, the bits
// range, the count against the length of data (before allocating), the
// checksum, that every chunk but the last is between the minimum and the
// maximum size for bits and the last between 1 and the maximum, and that
// the lengths add up to the size. It recomputes each chunk's Off. Every
// error wraps ErrCorrupt.
func DecodeList(data []byte) (bits uint8, chunks []Chunk, err error) {
	if len(data) < listHeader+listChecksum {
		return 0, nil, fmt.Errorf("decoding chunk list: %d bytes, shorter than the smallest list: %w", len(data), ErrCorrupt)
	}
	if string(data[:4]) != listMagic {
		return 0, nil, fmt.Errorf("decoding chunk list: magic %q, want %q: %w", data[:4], listMagic, ErrCorrupt)
	}
	bits = data[4]
	if bits < MinBits || bits > MaxBits {
		return 0, nil, fmt.Errorf("decoding chunk list: bits %d out of [%d, %d]: %w", bits, MinBits, MaxBits, ErrCorrupt)
	}
	size := binary.BigEndian.Uint64(data[5:])
	count := binary.BigEndian.Uint32(data[13:])
	// The count must match the length exactly; checking this first also
	// bounds the allocation below by what the peer actually sent.
	body := len(data) - listHeader - listChecksum
	if body%listEntry != 0 || uint64(body/listEntry) != uint64(count) {
		return 0, nil, fmt.Errorf("decoding chunk list: %d chunks in %d bytes: %w", count, len(data), ErrCorrupt)
	}
	sum := blake3.Sum256(data[:len(data)-listChecksum])
	if !bytes.Equal(sum[:listChecksum], data[len(data)-listChecksum:]) {
		return 0, nil, fmt.Errorf("decoding chunk list: checksum mismatch: %w", ErrCorrupt)
	}
	if size > math.MaxInt64 {
		return 0, nil, fmt.Errorf("decoding chunk list: size %d too large: %w", size, ErrCorrupt)
	}
	if count == 0 {
		if size != 0 {
			return 0, nil, fmt.Errorf("decoding chunk list: no chunks for %d bytes: %w", size, ErrCorrupt)
		}
		return bits, nil, nil
	}
	lo, _, hi := Sizes(bits)
	chunks = make([]Chunk, count)
	var off uint64
	p := data[listHeader:]
	for i := range chunks {
		n := binary.BigEndian.Uint32(p)
		least := uint32(lo)
		if i == len(chunks)-1 {
			least = 1
		}
		if n < least || n > uint32(hi) {
			return 0, nil, fmt.Errorf("decoding chunk list: chunk %d is %d bytes, want [%d, %d]: %w", i, n, least, hi, ErrCorrupt)
		}
		// off <= size <= MaxInt64 and n < 2^32, so neither the sum nor
		// the conversion overflows.
		if off+uint64(n) > size {
			return 0, nil, fmt.Errorf("decoding chunk list: chunks run past the size %d: %w", size, ErrCorrupt)
		}
		chunks[i].Off = int64(off)
		chunks[i].Len = n
		copy(chunks[i].Hash[:], p[4:listEntry])
		off += uint64(n)
		p = p[listEntry:]
	}
	if off != size {
		return 0, nil, fmt.Errorf("decoding chunk list: chunks add up to %d bytes, want %d: %w", off, size, ErrCorrupt)
	}
	return bits, chunks, nil
}
