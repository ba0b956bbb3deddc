package cdc

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/zeebo/blake3"
)

// rawList encodes a list field by field, whatever the fields say, with a
// valid checksum, so that each test reaches the check it means to test.
func rawList(magic string, bits uint8, size uint64, count uint32, lens ...uint32) []byte {
	b := append([]byte(magic), bits)
	b = binary.BigEndian.AppendUint64(b, size)
	b = binary.BigEndian.AppendUint32(b, count)
	for i, n := range lens {
		b = binary.BigEndian.AppendUint32(b, n)
		b = append(b, bytes.Repeat([]byte{byte(i)}, HashSize)...)
	}
	return reseal(b)
}

// reseal appends the checksum of b.
func reseal(b []byte) []byte {
	sum := blake3.Sum256(b)
	return append(b, sum[:16]...)
}

// testChunks returns chunks with the given lengths and distinct hashes.
func testChunks(lens ...uint32) []Chunk {
	chunks := make([]Chunk, len(lens))
	var off int64
	for i, n := range lens {
		chunks[i] = Chunk{Off: off, Len: n}
		for j := range chunks[i].Hash {
			chunks[i].Hash[j] = byte(16*i + j)
		}
		off += int64(n)
	}
	return chunks
}

// TestListGolden pins the list encoding, which caches and frames carry.
func TestListGolden(t *testing.T) {
	got := hex.EncodeToString(AppendList(nil, 10, testChunks(300, 4096, 5)))
	want := strings.Join([]string{
		"43444331",         // "CDC1"
		"0a",               // bits
		"0000000000001131", // size 4401
		"00000003",         // count
		"0000012c", "000102030405060708090a0b0c0d0e0f",
		"00001000", "101112131415161718191a1b1c1d1e1f",
		"00000005", "202122232425262728292a2b2c2d2e2f",
		"e6d552d257e1b72e334ed4f2207d4f58", // checksum
	}, "")
	if got != want {
		t.Errorf("encoding\n%s\nwant\n%s", got, want)
	}
}

func TestListRoundTrip(t *testing.T) {
	data := randBytes(11, 300<<10)
	for _, tt := range []struct {
		name   string
		bits   uint8
		chunks []Chunk
	}{
		{"empty", 10, nil},
		{"empty max bits", MaxBits, nil},
		{"one byte", 10, testChunks(1)},
		{"one max chunk", 10, testChunks(4096)},
		{"short last", 12, testChunks(1024, 16384, 1)},
		{"cut bits 10", 10, refSplit(data, 10)},
		{"cut bits 16", 16, refSplit(data, 16)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("frame header")
			enc := AppendList(prefix, tt.bits, tt.chunks)
			if !bytes.HasPrefix(enc, prefix) {
				t.Fatal("AppendList overwrote its prefix")
			}
			bits, chunks, err := DecodeList(enc[len(prefix):])
			if err != nil {
				t.Fatal(err)
			}
			if bits != tt.bits || !equalChunks(chunks, tt.chunks) {
				t.Fatalf("decoded bits %d and %d chunks, want %d and %d, or they differ", bits, len(chunks), tt.bits, len(tt.chunks))
			}
		})
	}
}

func TestAppendListClampsBitsAndIgnoresOff(t *testing.T) {
	chunks := testChunks(2000)
	chunks[0].Off = 12345
	bits, got, err := DecodeList(AppendList(nil, 3, chunks))
	if err != nil {
		t.Fatal(err)
	}
	if bits != MinBits || got[0].Off != 0 {
		t.Fatalf("decoded bits %d, Off %d; want %d, 0", bits, got[0].Off, MinBits)
	}
}

func TestDecodeListRejects(t *testing.T) {
	valid := AppendList(nil, 10, testChunks(256, 4096, 1000))
	flipped := bytes.Clone(valid)
	flipped[len(valid)-20] ^= 1 // inside the last hash
	badSum := bytes.Clone(valid)
	badSum[len(badSum)-1] ^= 1
	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"nil", nil},
		{"short", valid[:listHeader+listChecksum-1]},
		{"magic", rawList("CDC2", 10, 10, 1, 10)},
		{"bits low", rawList("CDC1", MinBits-1, 10, 1, 10)},
		{"bits high", rawList("CDC1", MaxBits+1, 10, 1, 10)},
		{"count above data", rawList("CDC1", 10, 10, 2, 10)},
		{"count huge", rawList("CDC1", 10, 10, math.MaxUint32, 10)},
		{"count below data", rawList("CDC1", 10, 20, 1, 10, 10)},
		{"trailing byte", reseal(append(bytes.Clone(valid[:len(valid)-16]), 0))},
		{"truncated", valid[:len(valid)-1]},
		{"checksum", badSum},
		{"content", flipped},
		{"zero-length chunk", rawList("CDC1", 10, 300, 2, 0, 300)},
		{"zero-length last", rawList("CDC1", 10, 300, 2, 300, 0)},
		{"short chunk", rawList("CDC1", 10, 555, 2, 255, 300)},
		{"long chunk", rawList("CDC1", 10, 4197, 2, 4097, 100)},
		{"long last", rawList("CDC1", 10, 4397, 2, 300, 4097)},
		{"long for bits", rawList("CDC1", 10, 5000, 1, 5000)},
		{"size above sum", rawList("CDC1", 10, 601, 2, 300, 300)},
		{"size below sum", rawList("CDC1", 10, 599, 2, 300, 300)},
		{"size huge", rawList("CDC1", 10, 1<<63, 1, 300)},
		{"size without chunks", rawList("CDC1", 10, 5, 0)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bits, chunks, err := DecodeList(tt.data)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("DecodeList = %d, %d chunks, %v; want ErrCorrupt", bits, len(chunks), err)
			}
			if bits != 0 || chunks != nil {
				t.Errorf("DecodeList returned bits %d and %d chunks with its error", bits, len(chunks))
			}
			t.Log(err)
		})
	}
}

func FuzzDecodeList(f *testing.F) {
	data := randBytes(12, 64<<10)
	for bits := uint8(MinBits); bits <= MaxBits; bits += 3 {
		f.Add(AppendList(nil, bits, refSplit(data, bits)), false)
		f.Add(AppendList(nil, bits, nil), false)
	}
	f.Add(AppendList(nil, 10, testChunks(1)), false)
	f.Add(AppendList(nil, 11, testChunks(512, 8192, 7)), false)
	f.Add(rawList("CDC1", 10, 555, 2, 255, 300), true)
	f.Add(rawList("CDC1", 10, 10, math.MaxUint32, 10), true)
	f.Fuzz(func(t *testing.T, data []byte, seal bool) {
		// Sealing lets the fuzzer reach the checks behind the checksum.
		if seal && len(data) >= listChecksum {
			data = reseal(bytes.Clone(data[:len(data)-listChecksum]))
		}
		bits, chunks, err := DecodeList(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if again := AppendList(nil, bits, chunks); !bytes.Equal(again, data) {
			t.Fatalf("accepted list re-encodes differently:\n%x\n%x", data, again)
		}
		lo, _, hi := Sizes(bits)
		var off int64
		for i, c := range chunks {
			if c.Off != off || c.Len == 0 || int(c.Len) > hi || (int(c.Len) < lo && i < len(chunks)-1) {
				t.Fatalf("accepted chunk %d: %+v at %d", i, c, off)
			}
			off += int64(c.Len)
		}
	})
}

// FuzzWriteSplit checks that no way of splitting a stream into Write calls
// changes its chunks. The input is the fuzzer's bytes followed by up to
// 64 KiB of pseudo-random bytes, so that chunks of many sizes occur while
// each run stays short; TestWriteSplits covers the long chunks of the
// largest bits.
func FuzzWriteSplit(f *testing.F) {
	f.Add([]byte("hello"), []byte{1, 2, 3}, uint8(0), uint16(100))
	f.Add(randBytes(13, 5000), []byte{0, 7, 255, 16, 1}, uint8(2), uint16(0))
	f.Add(make([]byte, 9000), []byte{8, 8, 8, 0, 0}, uint8(3), uint16(1000))
	f.Add([]byte{}, []byte{255, 255, 255, 255}, uint8(6), uint16(65535))
	f.Fuzz(func(t *testing.T, data, splits []byte, bits uint8, pad uint16) {
		bits = MinBits + bits%(MaxBits-MinBits+1)
		data = append(bytes.Clone(data), randBytes(uint64(len(data)), int(pad))...)
		lens := make([]int, len(splits))
		for i, s := range splits {
			lens[i] = int(s) * int(s)
		}
		want := refSplit(data, bits)
		if got := writeInPieces(data, bits, lens); !equalChunks(got, want) {
			t.Fatalf("pieces %v: %d chunks, want %d, or they differ", lens, len(got), len(want))
		}
	})
}

func BenchmarkDecodeList(b *testing.B) {
	data := randBytes(64, 64<<20)
	for _, bits := range []uint8{10, 16} {
		enc := AppendList(nil, bits, refSplit(data, bits))
		b.Run(fmt.Sprintf("bits=%d", bits), func(b *testing.B) {
			b.SetBytes(int64(len(enc)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := DecodeList(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
