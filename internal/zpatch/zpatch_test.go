package zpatch

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// random returns n pseudo-random bytes from seed.
func random(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// text returns n bytes of compressible text from seed, as source code is.
func text(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	words := strings.Fields("func return if err != nil { } package import type struct int64 byte for range := = ( ) the patch old new segment window")
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(8) == 0 {
			b.WriteByte('\n')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

// edit returns a copy of b with a few bytes changed at every step bytes,
// as a rebuild changes addresses.
func edit(b []byte, step int) []byte {
	c := bytes.Clone(b)
	for i := step / 2; i < len(c); i += step {
		c[i] ^= 0x5a
	}
	return c
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func mustMake(t testing.TB, old, new []byte, o Options) []byte {
	t.Helper()
	var p bytes.Buffer
	if err := Make(context.Background(), &p, bytes.NewReader(old), int64(len(old)), bytes.NewReader(new), int64(len(new)), o); err != nil {
		t.Fatalf("Make: %v", err)
	}
	return p.Bytes()
}

// limitWriter fails the test that writes more than max bytes to it.
type limitWriter struct {
	t   testing.TB
	max int64
	buf bytes.Buffer
}

func (w *limitWriter) Write(p []byte) (int, error) {
	if int64(w.buf.Len()+len(p)) > w.max {
		w.t.Errorf("Apply wrote %d bytes, past the declared size %d", w.buf.Len()+len(p), w.max)
	}
	return w.buf.Write(p)
}

func apply(t testing.TB, old, patch []byte, size int64) ([]byte, error) {
	t.Helper()
	w := &limitWriter{t: t, max: size}
	err := Apply(context.Background(), w, bytes.NewReader(old), int64(len(old)), bytes.NewReader(patch), size)
	return w.buf.Bytes(), err
}

func TestRoundTrip(t *testing.T) {
	base := cat(text(1, 300<<10), random(2, 200<<10), text(3, 100<<10)) // 600 KiB
	big := cat(text(4, 3<<20), random(5, 2<<20), text(6, 1<<20))        // 6 MiB
	small := Options{Segment: MinSegment, Window: 512 << 10}
	tests := []struct {
		name     string
		old, new []byte
		o        Options
		maxPatch int // 0: no bound
	}{
		{"both empty", nil, nil, Options{}, fileHeader},
		{"empty old", nil, text(7, 5000), Options{}, 0},
		{"empty new", base, nil, Options{}, fileHeader},
		{"identical", base, base, Options{}, 1000},
		{"one byte", []byte{1}, []byte{2}, Options{}, 0},
		{"unrelated", random(8, 100<<10), random(9, 100<<10), Options{}, 0},
		{"appended", base, cat(base, text(10, 20<<10)), Options{}, 8 << 10},
		{"shifted", base, cat(text(11, 777), base), Options{}, 2 << 10},
		{"edited", base, edit(base, 4096), Options{}, 8 << 10},
		{"truncated", base, base[:len(base)-12345], Options{}, 1000},
		// Several segments, none a multiple of the segment.
		{"segments", base, cat(text(12, 1234), edit(base, 8192), random(13, 4321)), small, 16 << 10},
		{"old larger than window", cat(random(14, 1<<20), base), edit(base, 8192), small, 16 << 10},
		{"large", big, cat(edit(big, 1<<16), text(15, 12345)), Options{}, 64 << 10},
		{"large shifted", big, cat(random(16, 100<<10), big[:5<<20]), Options{}, 150 << 10},
		{"best level", base, edit(base, 4096), Options{Level: 4, Segment: MinSegment}, 8 << 10},
		{"fastest level", base, edit(base, 4096), Options{Level: 1}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustMake(t, tt.old, tt.new, tt.o)
			if tt.maxPatch > 0 && len(p) > tt.maxPatch {
				t.Errorf("patch of %d bytes for %d new, want at most %d", len(p), len(tt.new), tt.maxPatch)
			}
			got, err := apply(t, tt.old, p, int64(len(tt.new)))
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if !bytes.Equal(got, tt.new) {
				t.Fatalf("Apply rebuilt %d bytes that differ from the %d new", len(got), len(tt.new))
			}
		})
	}
}

// TestDeterministic: the same files give the same patch, so that a
// server's cache never depends on when the patch was made, and neither
// Make nor Apply leaves a goroutine behind.
func TestDeterministic(t *testing.T) {
	old := cat(text(90, 700<<10), random(91, 100<<10))
	new := cat(edit(old, 3000), text(92, 50<<10))
	before := runtime.NumGoroutine()
	o := Options{Segment: MinSegment, Window: 512 << 10}
	a, b := mustMake(t, old, new, o), mustMake(t, old, new, o)
	if !bytes.Equal(a, b) {
		t.Errorf("two patches of the same files differ (%d and %d bytes)", len(a), len(b))
	}
	if got, err := apply(t, old, a, int64(len(new))); err != nil || !bytes.Equal(got, new) {
		t.Fatalf("Apply: %v", err)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("%d goroutines after Make and Apply, %d before", after, before)
	}
}

// TestPlacement: segments whose bytes moved far in the old file get their
// window where the bytes are, found by their chunks; at its proportional
// position each window would miss them and the patch would be as large as
// the data.
func TestPlacement(t *testing.T) {
	const block = MinSegment
	parts := [][]byte{random(20, block), random(21, block), random(22, block), random(23, block), random(24, block), random(25, block)}
	old := cat(parts...)
	new := cat(parts[5], parts[4], parts[3], parts[2], parts[1], parts[0])
	o := Options{Segment: block, Window: block + block/2}
	p := mustMake(t, old, new, o)
	if len(p) > len(new)/20 {
		t.Errorf("patch of %d bytes for %d bytes moved in blocks, want at most %d", len(p), len(new), len(new)/20)
	}
	got, err := apply(t, old, p, int64(len(new)))
	if err != nil || !bytes.Equal(got, new) {
		t.Fatalf("Apply: %v (equal %v)", err, bytes.Equal(got, new))
	}
}

// TestPlacementRepeats: chunks found many times in the old file (a run of
// zeros) do not place a window; the segment's other chunks do.
func TestPlacementRepeats(t *testing.T) {
	b := random(26, MinSegment)
	old := cat(make([]byte, 1<<20), random(27, 1<<20), b)
	new := cat(make([]byte, 200<<10), b[:MinSegment-200<<10])
	p := mustMake(t, old, new, Options{Segment: MinSegment, Window: MinSegment + MinSegment/2})
	if len(p) > 8<<10 {
		t.Errorf("patch of %d bytes, want at most %d", len(p), 8<<10)
	}
	got, err := apply(t, old, p, int64(len(new)))
	if err != nil || !bytes.Equal(got, new) {
		t.Fatalf("Apply: %v (equal %v)", err, bytes.Equal(got, new))
	}
}

// segments returns the offsets in p of its segment headers.
func segments(t *testing.T, p []byte) []int {
	t.Helper()
	var offs []int
	for at := fileHeader; at < len(p); {
		offs = append(offs, at)
		at += segHeader + int(binary.BigEndian.Uint32(p[at+16:]))
	}
	return offs
}

func TestApplyCorrupt(t *testing.T) {
	old := cat(text(30, 400<<10), random(31, 100<<10))
	new := cat(edit(old, 5000), text(32, 300<<10))
	good := mustMake(t, old, new, Options{Segment: MinSegment})
	segs := segments(t, good)
	if len(segs) != 4 {
		t.Fatalf("%d segments, want 4", len(segs))
	}
	s1 := segs[1]
	with := func(at int, v []byte) []byte {
		p := bytes.Clone(good)
		copy(p[at:], v)
		return p
	}
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	u64 := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	size := int64(len(new))
	tests := []struct {
		name  string
		patch []byte
		old   []byte
		size  int64
		want  string
	}{
		{"empty", nil, old, size, "within the header"},
		{"magic", with(0, []byte("SZP2")), old, size, "magic"},
		{"size claim", good, old, size - 1, "made for old"},
		{"size claim larger", good, old, size + 1, "made for old"},
		{"other old", good, old[1:], size, "made for old"},
		{"header new size", with(12, u64(uint64(size+1))), old, size + 1, "segment 3"},
		{"truncated header", good[:s1+10], old, size, "segment 1 (new bytes from 262144, patch byte"},
		{"truncated frame", good[:s1+segHeader+10], old, size, "segment 1"},
		{"missing segment", good[:segs[3]], old, size, "segment 3"},
		{"trailing bytes", append(bytes.Clone(good), 0), old, size, "after the last segment"},
		{"zero length", with(s1, u32(0)), old, size, "length 0 outside"},
		{"segment too long", with(s1, u32(MaxSegment+1)), old, size, "outside 1..2097152"},
		{"segment past size", with(segs[3], u32(MaxSegment)), old, size, "past the"},
		{"short segment", with(s1, u32(MinSegment-1)), old, size, "not the last"},
		{"dictionary past old", with(s1+4, u64(uint64(len(old)-100))), old, size, "past the old file"},
		{"dictionary offset huge", with(s1+4, u64(1<<63)), old, size, "past the old file"},
		{"dictionary too long", with(s1+12, u32(MaxWindow+1)), old, size, "more than"},
		{"frame too long", with(s1+16, u32(uint32(FrameBound(MinSegment)+1))), old, size, "frame of"},
		{"frame length short", with(s1+16, u32(100)), old, size, "segment 1"},
		{"other dictionary", with(s1+4, u64(1)), old, size, "segment 1"},
		{"frame bytes", with(s1+segHeader+40, []byte{0xff, 0xff, 0xff, 0xff}), old, size, "segment 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := apply(t, tt.old, tt.patch, tt.size)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Apply: %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Apply: %v, want it to say %q", err, tt.want)
			}
		})
	}
}

// TestApplyDamaged flips every byte of a small patch and cuts it at every
// length: Apply rebuilds the new file exactly or fails with ErrCorrupt,
// and never writes past the size.
func TestApplyDamaged(t *testing.T) {
	old := text(40, 3000)
	new := cat(edit(old[:2000], 300), text(41, 500), old[2000:])
	good := mustMake(t, old, new, Options{})
	for i := range good {
		p := bytes.Clone(good)
		p[i] ^= 0xff
		got, err := apply(t, old, p, int64(len(new)))
		if err == nil && !bytes.Equal(got, new) {
			t.Errorf("byte %d flipped: Apply rebuilt a different file and no error", i)
		}
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Errorf("byte %d flipped: %v, want ErrCorrupt", i, err)
		}
	}
	for n := range len(good) {
		if _, err := apply(t, old, good[:n], int64(len(new))); !errors.Is(err, ErrCorrupt) {
			t.Errorf("cut at %d of %d bytes: %v, want ErrCorrupt", n, len(good), err)
		}
	}
}

// TestApplyMemoryBound: a hostile patch claiming the largest segment,
// dictionary and frame makes Apply allocate about the bound of the
// package comment, MaxWindow + 2*MaxSegment, not what a header could name.
func TestApplyMemoryBound(t *testing.T) {
	old := random(50, MaxWindow)
	size := int64(MaxSegment * 3)
	p := []byte(magic)
	p = binary.BigEndian.AppendUint64(p, uint64(len(old)))
	p = binary.BigEndian.AppendUint64(p, uint64(size))
	for range 3 {
		p = binary.BigEndian.AppendUint32(p, MaxSegment)
		p = binary.BigEndian.AppendUint64(p, 0)
		p = binary.BigEndian.AppendUint32(p, MaxWindow)
		p = binary.BigEndian.AppendUint32(p, uint32(FrameBound(MaxSegment)))
		// A valid frame of MaxSegment bytes, stored raw, padded to the
		// bound with a skippable frame.
		p = append(p, rawFrame(random(51, MaxSegment), FrameBound(MaxSegment))...)
	}
	w := &countWriter{t: t, max: size}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	err := Apply(context.Background(), w, bytes.NewReader(old), int64(len(old)), bytes.NewReader(p), size)
	runtime.ReadMemStats(&after)
	if err != nil || w.n != size {
		t.Fatalf("Apply: %v, %d bytes written of %d", err, w.n, size)
	}
	const bound = MaxWindow + 2*MaxSegment + 4<<20 // and the decoder's
	if got := after.TotalAlloc - before.TotalAlloc; got > bound {
		t.Errorf("Apply allocated %d bytes, more than %d", got, bound)
	}
}

// countWriter counts what it is given, and fails the test that writes
// more than max bytes to it.
type countWriter struct {
	t      testing.TB
	max, n int64
}

func (w *countWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	if w.n > w.max {
		w.t.Errorf("Apply wrote %d bytes, past the declared size %d", w.n, w.max)
	}
	return len(p), nil
}

// rawFrame returns a zstd frame of b in raw blocks, then a skippable
// frame to make n bytes in all.
func rawFrame(b []byte, n int) []byte {
	f := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58} // magic, descriptor (window 128 MiB)
	for len(b) > 0 {
		k := min(len(b), 128<<10)
		h := uint32(k) << 3 // raw block
		if k == len(b) {
			h |= 1
		}
		f = append(f, byte(h), byte(h>>8), byte(h>>16))
		f = append(f, b[:k]...)
		b = b[k:]
	}
	f = append(f, 0x50, 0x2a, 0x4d, 0x18)
	f = binary.LittleEndian.AppendUint32(f, uint32(n-len(f)-4))
	for len(f) < n {
		f = append(f, 0xa5)
	}
	return f
}

func TestApplyCancel(t *testing.T) {
	old := text(60, 1<<20)
	new := edit(old, 999)
	p := mustMake(t, old, new, Options{Segment: MinSegment})
	ctx, cancel := context.WithCancel(context.Background())
	w := &cancelWriter{cancel: cancel}
	err := Apply(ctx, w, bytes.NewReader(old), int64(len(old)), bytes.NewReader(p), int64(len(new)))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply: %v, want context.Canceled", err)
	}
	if w.n != MinSegment {
		t.Errorf("Apply wrote %d bytes after the cancel, want one segment of %d", w.n, MinSegment)
	}
	var sink bytes.Buffer
	if err := Make(ctx, &sink, bytes.NewReader(old), int64(len(old)), bytes.NewReader(new), int64(len(new)), Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Make: %v, want context.Canceled", err)
	}
}

// cancelWriter cancels its context at the first write.
type cancelWriter struct {
	cancel func()
	n      int
}

func (w *cancelWriter) Write(p []byte) (int, error) {
	w.cancel()
	w.n += len(p)
	return len(p), nil
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// failReader fails every read.
type failReader struct{}

func (failReader) ReadAt([]byte, int64) (int, error) { return 0, errors.New("disk on fire") }

func TestErrors(t *testing.T) {
	old := text(70, 10000)
	new := edit(old, 1000)
	p := mustMake(t, old, new, Options{})
	ctx := context.Background()
	var sink bytes.Buffer
	err := Apply(ctx, &sink, failReader{}, int64(len(old)), bytes.NewReader(p), int64(len(new)))
	if err == nil || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("Apply with an unreadable old file: %v, want its read error and not ErrCorrupt", err)
	}
	err = Apply(ctx, &sink, bytes.NewReader(old), int64(len(old)), io.MultiReader(bytes.NewReader(p[:30]), iotest.ErrReader(errors.New("link down"))), int64(len(new)))
	if err == nil || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "link down") {
		t.Errorf("Apply with a failing patch reader: %v, want its error and not ErrCorrupt", err)
	}
	err = Apply(ctx, failWriter{}, bytes.NewReader(old), int64(len(old)), bytes.NewReader(p), int64(len(new)))
	if err == nil || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Apply with a failing writer: %v, want its error and not ErrCorrupt", err)
	}
	err = Make(ctx, failWriter{}, bytes.NewReader(old), int64(len(old)), bytes.NewReader(new), int64(len(new)), Options{})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Make with a failing writer: %v, want its error", err)
	}
	tests := []struct {
		name             string
		oldSize, newSize int64
		o                Options
		want             string
	}{
		{"too large", MaxFile + 1, 10, Options{}, "MaxFile"},
		{"negative", -1, 10, Options{}, "outside"},
		{"small segment", 10, 10, Options{Segment: MinSegment - 1}, "options segment"},
		{"large window", 10, 10, Options{Window: MaxWindow + 1}, "options segment"},
		{"short old", int64(len(old)) + 1, int64(len(new)), Options{}, "reading old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Make(ctx, &sink, bytes.NewReader(old), tt.oldSize, bytes.NewReader(new), tt.newSize, tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Make: %v, want it to say %q", err, tt.want)
			}
		})
	}
}

// fuzzOld is the old file of FuzzApply.
var fuzzOld = cat(text(80, 3000), random(81, 1000))

// FuzzApply: whatever the patch, Apply writes no byte past the size and
// either writes it all or fails with ErrCorrupt. With fromHeader the size
// is the one the patch's header claims, as the caller's would be for a
// patch made for it, so that the fuzzer gets past the header.
func FuzzApply(f *testing.F) {
	for i, n := range [][]byte{
		nil,
		text(82, 100),
		edit(fuzzOld, 200),
		cat(fuzzOld[2000:], text(83, 700), fuzzOld[:2000]),
		random(84, 3000),
		bytes.Repeat(fuzzOld, 75), // two segments
	} {
		o := Options{Segment: MinSegment}
		if i == 2 {
			o.Window = 1000 // a dictionary placed within the old file
		}
		p := mustMake(f, fuzzOld, n, o)
		f.Add(p, int64(len(n)), false)
		f.Add(p, int64(0), true)
	}
	f.Fuzz(func(t *testing.T, patch []byte, size int64, fromHeader bool) {
		if fromHeader && len(patch) >= fileHeader {
			size = int64(binary.BigEndian.Uint64(patch[12:]))
		}
		if size < 0 || size > 1<<20 {
			size &= 1<<20 - 1
		}
		w := &limitWriter{t: t, max: size}
		err := Apply(context.Background(), w, bytes.NewReader(fuzzOld), int64(len(fuzzOld)), bytes.NewReader(patch), size)
		switch {
		case err == nil && int64(w.buf.Len()) != size:
			t.Fatalf("Apply succeeded with %d bytes written of %d", w.buf.Len(), size)
		case err != nil && !errors.Is(err, ErrCorrupt):
			t.Fatalf("Apply: %v, not ErrCorrupt", err)
		}
	})
}
