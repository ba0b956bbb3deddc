package cdc

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"testing"
	"testing/iotest"

	"github.com/zeebo/blake3"
)

// splitmix64 is the generator the gear table was drawn from; the tests use
// it for their inputs too, so that nothing outside this package can change
// the bytes a golden value was computed on.
type splitmix64 uint64

func (s *splitmix64) next() uint64 {
	*s += 0x9E3779B97F4A7C15
	z := uint64(*s)
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// randBytes returns n pseudo-random bytes, the same for the same seed
// forever.
func randBytes(seed uint64, n int) []byte {
	s := splitmix64(seed)
	b := make([]byte, (n+7)&^7)
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], s.next())
	}
	return b[:n]
}

// refSplit is the chunking rule of the package doc written as plainly as
// possible, one chunk and one byte at a time, to check the fast loop of
// cutter.next against.
func refSplit(data []byte, bits uint8) []Chunk {
	bits = clampBits(bits)
	lo, avg, hi := Sizes(bits)
	maskS := ^uint64(0) << (64 - (bits + 2))
	maskL := ^uint64(0) << (64 - (bits - 2))
	var chunks []Chunk
	for start := 0; start < len(data); {
		end := min(start+hi, len(data))
		var h uint64
		for k := lo - 64; start+k < end; k++ {
			h = h<<1 + gear[data[start+k]]
			if k < lo-1 {
				continue
			}
			mask := maskS
			if k >= avg {
				mask = maskL
			}
			if h&mask == 0 {
				end = start + k + 1
				break
			}
		}
		c := Chunk{Off: int64(start), Len: uint32(end - start)}
		sum := blake3.Sum256(data[start:end])
		copy(c.Hash[:], sum[:])
		chunks = append(chunks, c)
		start = end
	}
	return chunks
}

// writeInPieces feeds data to a new Chunker in pieces whose lengths are
// taken in turn from lens (0 means a zero-length Write), the last piece
// being the rest.
func writeInPieces(data []byte, bits uint8, lens []int) []Chunk {
	c := NewChunker(bits)
	for _, n := range lens {
		n = min(n, len(data))
		c.Write(data[:n])
		data = data[n:]
	}
	c.Write(data)
	return c.Finish()
}

func equalChunks(a, b []Chunk) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkChunks checks that chunks tile data with valid lengths and the
// right hashes.
func checkChunks(t *testing.T, data []byte, bits uint8, chunks []Chunk) {
	t.Helper()
	lo, _, hi := Sizes(bits)
	var off int64
	for i, c := range chunks {
		if c.Off != off {
			t.Fatalf("chunk %d at %d, want %d", i, c.Off, off)
		}
		if int(c.Len) > hi || c.Len == 0 || (int(c.Len) < lo && i != len(chunks)-1) {
			t.Fatalf("chunk %d of %d is %d bytes, outside [%d, %d]", i, len(chunks), c.Len, lo, hi)
		}
		sum := blake3.Sum256(data[c.Off : c.Off+int64(c.Len)])
		if !bytes.Equal(c.Hash[:], sum[:HashSize]) {
			t.Fatalf("chunk %d: wrong hash", i)
		}
		off += int64(c.Len)
	}
	if off != int64(len(data)) {
		t.Fatalf("chunks cover %d bytes of %d", off, len(data))
	}
}

func TestBitsFor(t *testing.T) {
	for _, tt := range []struct {
		size int64
		want uint8
	}{
		{-1, MinBits},
		{0, MinBits},
		{1, MinBits},
		{1000, MinBits},
		{1 << 16, 10},      // 4*256 = 1024 exactly
		{1<<16 + 1, 11},    // just above: 2048
		{1 << 18, 11},      // 4*512 = 2048 exactly
		{1 << 20, 12},      // 4 KiB for 1 MiB
		{8 << 20, 14},      // 4*2896.3 = 11585 -> 16 KiB
		{64 << 20, 15},     // 4*8192 = 32 KiB
		{1 << 28, MaxBits}, // 4*16384 = 64 KiB exactly
		{1<<28 + 1, MaxBits},
		{500 << 20, MaxBits},
		{math.MaxInt64, MaxBits},
	} {
		t.Run(fmt.Sprint(tt.size), func(t *testing.T) {
			if got := BitsFor(tt.size); got != tt.want {
				t.Errorf("BitsFor(%d) = %d, want %d", tt.size, got, tt.want)
			}
		})
	}
}

// TestBitsForDefinition checks BitsFor against its definition on many
// sizes: avg is the least power of two with avg^2 >= 16*size, clamped.
func TestBitsForDefinition(t *testing.T) {
	s := splitmix64(1)
	for i := 0; i < 100000; i++ {
		size := int64(s.next() >> (1 + s.next()%63))
		b := BitsFor(size)
		if b < MinBits || b > MaxBits {
			t.Fatalf("BitsFor(%d) = %d, out of range", size, b)
		}
		avg := uint64(1) << b
		if b < MaxBits && avg*avg < 16*uint64(size) {
			t.Fatalf("BitsFor(%d) = %d: 1<<%d < 4*sqrt(size)", size, b, b)
		}
		// (avg/2)^2 is a multiple of 16, so this avoids overflowing 16*size.
		if b > MinBits && (avg/2)*(avg/2)/16 >= uint64(size) {
			t.Fatalf("BitsFor(%d) = %d: 1<<%d would do", size, b, b-1)
		}
	}
}

func TestSizes(t *testing.T) {
	for _, tt := range []struct {
		bits          uint8
		min, avg, max int
	}{
		{0, 256, 1024, 4096}, // clamped up
		{MinBits - 1, 256, 1024, 4096},
		{MinBits, 256, 1024, 4096},
		{13, 2048, 8192, 32768},
		{MaxBits, 16384, 65536, 262144},
		{MaxBits + 1, 16384, 65536, 262144}, // clamped down
		{255, 16384, 65536, 262144},
	} {
		t.Run(fmt.Sprint(tt.bits), func(t *testing.T) {
			lo, avg, hi := Sizes(tt.bits)
			if lo != tt.min || avg != tt.avg || hi != tt.max {
				t.Errorf("Sizes(%d) = %d, %d, %d; want %d, %d, %d", tt.bits, lo, avg, hi, tt.min, tt.avg, tt.max)
			}
			if got, want := NewChunker(tt.bits).Bits(), clampBits(tt.bits); got != want {
				t.Errorf("NewChunker(%d).Bits() = %d, want %d", tt.bits, got, want)
			}
		})
	}
}

// TestGearTable regenerates the literal table from its documented seed.
func TestGearTable(t *testing.T) {
	s := splitmix64(gearSeed)
	for i, g := range gear {
		if want := s.next(); g != want {
			t.Fatalf("gear[%d] = %#016x, want %#016x", i, g, want)
		}
	}
	if gearSeed != binary.BigEndian.Uint64([]byte("CDC1gear")) {
		t.Fatal("gearSeed is not \"CDC1gear\"")
	}
}

// TestGolden pins the chunking rules, which are part of the wire protocol:
// if it fails, the appserver and older smartclients no longer agree on
// chunks. Do not update the constants; restore the rules.
func TestGolden(t *testing.T) {
	data := randBytes(0x5EED, 4<<20)
	for _, tt := range []struct {
		bits  uint8
		count int
		sum   string // first 16 bytes of the BLAKE3 of AppendList's encoding
	}{
		{10, 3596, "6889fbaac780e0518af275321f195282"},
		{13, 452, "f91fb245614caa92c53069dd82e37eb6"},
		{16, 58, "d08e4c3bedc0e3742218bb8db41ea7a4"},
	} {
		t.Run(fmt.Sprint(tt.bits), func(t *testing.T) {
			chunks, err := Split(bytes.NewReader(data), tt.bits)
			if err != nil {
				t.Fatal(err)
			}
			sum := blake3.Sum256(AppendList(nil, tt.bits, chunks))
			got := hex.EncodeToString(sum[:16])
			_, avg, _ := Sizes(tt.bits)
			t.Logf("bits %d: %d chunks, mean %d bytes (avg parameter %d), list %s", tt.bits, len(chunks), len(data)/len(chunks), avg, got)
			if len(chunks) != tt.count || got != tt.sum {
				t.Errorf("bits %d: %d chunks with list hash %s, want %d with %s", tt.bits, len(chunks), got, tt.count, tt.sum)
			}
		})
	}
}

// inputs returns test inputs that reach every region of a chunk and every
// way a chunk ends, for bits.
func inputs(bits uint8) map[string][]byte {
	lo, avg, hi := Sizes(bits)
	ins := map[string][]byte{
		"empty":  nil,
		"one":    {42},
		"random": randBytes(uint64(bits), 40*avg),
		// Long runs of one byte never match a mask: every chunk is cut at max.
		"zeros":   make([]byte, 5*hi+17),
		"pattern": bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz"), 4*hi/36),
	}
	for _, n := range []int{lo - window - 1, lo - window, lo - 2, lo - 1, lo, lo + 1, avg, hi - 1, hi, hi + 1, 2 * hi} {
		ins[fmt.Sprint("random", n)] = randBytes(uint64(n), n)
	}
	// Random data with stretches of zeros hits the forced cut between
	// content-defined ones.
	mixed := randBytes(7, 20*avg)
	clear(mixed[3*avg : 3*avg+2*hi])
	ins["mixed"] = mixed
	return ins
}

func TestChunkerMatchesReference(t *testing.T) {
	for bits := uint8(MinBits); bits <= MaxBits; bits++ {
		for name, data := range inputs(bits) {
			t.Run(fmt.Sprintf("bits=%d/%s", bits, name), func(t *testing.T) {
				want := refSplit(data, bits)
				got, err := Split(bytes.NewReader(data), bits)
				if err != nil {
					t.Fatal(err)
				}
				if !equalChunks(got, want) {
					t.Fatalf("Split gives %d chunks, the reference %d, or they differ", len(got), len(want))
				}
				checkChunks(t, data, bits, got)
				if len(data) == 0 && got != nil {
					t.Errorf("empty input gives %v, want no chunks", got)
				}
			})
		}
	}
}

func TestForcedCuts(t *testing.T) {
	_, _, hi := Sizes(12)
	chunks := refSplit(make([]byte, 3*hi+5), 12)
	if len(chunks) != 4 || chunks[0].Len != uint32(hi) || chunks[3].Len != 5 {
		t.Fatalf("zeros cut into %+v, want three of %d bytes and one of 5", chunks, hi)
	}
}

// TestWriteSplits checks that where Write calls split the stream never
// changes the chunks.
func TestWriteSplits(t *testing.T) {
	s := splitmix64(99)
	for _, bits := range []uint8{10, 12, 16} {
		for name, data := range inputs(bits) {
			want := refSplit(data, bits)
			for round := 0; round < 8; round++ {
				var lens []int
				switch round {
				case 0: // one byte at a time
					lens = make([]int, len(data))
					for i := range lens {
						lens[i] = 1
					}
				case 1: // odd sizes around the window
					for n := 0; n < len(data); n += 63 {
						lens = append(lens, 63, 0)
					}
				default:
					_, _, hi := Sizes(bits)
					for n := 0; n < len(data); {
						k := int(s.next() % uint64(1+2*hi>>round))
						lens = append(lens, k)
						n += k
					}
				}
				got := writeInPieces(data, bits, lens)
				if !equalChunks(got, want) {
					t.Fatalf("bits %d, %s, round %d: %d chunks, want %d, or they differ", bits, name, round, len(got), len(want))
				}
			}
		}
	}
}

func TestFinishResets(t *testing.T) {
	a, b := randBytes(1, 100<<10), randBytes(2, 70<<10)
	c := NewChunker(11)
	c.Write(a)
	if got := c.Finish(); !equalChunks(got, refSplit(a, 11)) {
		t.Fatal("first stream cut wrong")
	}
	if got := c.Finish(); got != nil {
		t.Fatalf("Finish twice gives %d chunks, want none", len(got))
	}
	c.Write(b[:1000])
	c.Write(b[1000:])
	if got := c.Finish(); !equalChunks(got, refSplit(b, 11)) {
		t.Fatal("second stream on the same Chunker cut wrong")
	}
}

func TestSplitReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(randBytes(3, 10000)), iotest.ErrReader(boom))
	if _, err := Split(r, 10); !errors.Is(err, boom) {
		t.Fatalf("Split = %v, want %v", err, boom)
	}
	// A reader that returns data with io.EOF must lose none of it.
	data := randBytes(4, 50000)
	got, err := Split(iotest.DataErrReader(iotest.OneByteReader(bytes.NewReader(data))), 10)
	if err != nil || !equalChunks(got, refSplit(data, 10)) {
		t.Fatalf("Split with a data-and-EOF reader: %v", err)
	}
}

// changed returns how many chunks of a are not in b, by hash.
func changed(a, b []Chunk) int {
	have := make(map[[HashSize]byte]bool, len(b))
	for _, c := range b {
		have[c.Hash] = true
	}
	n := 0
	for _, c := range a {
		if !have[c.Hash] {
			n++
		}
	}
	return n
}

// TestEdits checks the point of content-defined chunking: a local edit in
// a large file changes only the chunks around it.
func TestEdits(t *testing.T) {
	const size = 8 << 20
	orig := randBytes(8, size)
	patch := randBytes(9, 4096)
	mid := size/2 + 12345
	inserted := append(append(append([]byte(nil), orig[:mid]...), patch...), orig[mid:]...)
	overwritten := append([]byte(nil), orig...)
	copy(overwritten[mid:], patch)
	for bits := uint8(MinBits); bits <= MaxBits; bits++ {
		before := refSplit(orig, bits)
		for _, edit := range []struct {
			name string
			data []byte
		}{{"insert", inserted}, {"overwrite", overwritten}} {
			after, err := Split(bytes.NewReader(edit.data), bits)
			if err != nil {
				t.Fatal(err)
			}
			added, lost := changed(after, before), changed(before, after)
			t.Logf("bits %d, %s 4 KiB: %d of %d chunks new, %d of %d gone", bits, edit.name, added, len(after), lost, len(before))
			// Where the average chunk is smaller than the edit, the
			// edited bytes alone fill several new chunks, and their
			// number varies as much as chunk sizes do.
			_, avg, _ := Sizes(bits)
			limit := 3
			if avg < len(patch) {
				limit += 2 * len(patch) / avg
			}
			if added > limit || lost > limit {
				t.Errorf("bits %d, %s: %d chunks new and %d gone, want at most %d", bits, edit.name, added, lost, limit)
			}
		}
	}
}

func BenchmarkSplit(b *testing.B) {
	data := randBytes(64, 64<<20)
	for _, bits := range []uint8{10, 16} {
		b.Run(fmt.Sprintf("bits=%d", bits), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Split(bytes.NewReader(data), bits); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGearScan measures the boundary search alone, without hashing,
// fed in 256 KiB pieces as a file would be.
func BenchmarkGearScan(b *testing.B) {
	data := randBytes(64, 64<<20)
	for _, bits := range []uint8{10, 16} {
		b.Run(fmt.Sprintf("bits=%d", bits), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			cuts := 0
			for b.Loop() {
				cuts = 0
				c := newCutter(bits)
				for p := data; len(p) > 0; {
					piece := p[:min(len(p), 256<<10)]
					p = p[len(piece):]
					for len(piece) > 0 {
						k, cut := c.next(piece)
						piece = piece[k:]
						if cut {
							cuts++
						}
					}
				}
			}
			b.ReportMetric(float64(len(data))/float64(cuts), "B/chunk")
		})
	}
}
