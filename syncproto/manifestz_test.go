package syncproto

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// zFrames compresses frames as a sender does, and returns the ManifestZ
// frames, encoded, followed by a PatchOffer frame (what a server sends
// next).
func zFrames(t testing.TB, frames []byte, level zstd.EncoderLevel) []byte {
	t.Helper()
	enc, err := NewZEncoder(level)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	var out []byte
	z := NewZWriter(enc, func(m ManifestZ) error {
		out = AppendFrame(out, m)
		return nil
	})
	if err := z.WriteEncoded(frames); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return AppendFrame(out, PatchOffer{})
}

// entryFrames returns the frames of n entries of a bench manifest, and a
// ManifestEnd.
func entryFrames(n int) []byte {
	_, entries := benchManifest(n)
	var b []byte
	for _, e := range entries {
		b = AppendFrame(b, e)
	}
	return AppendFrame(b, ManifestEnd{Digest: [32]byte{1}})
}

// readZ reads n frames of the compressed manifest in wire, as a client
// does, and returns them, re-encoded, after End, and what src gives next.
func readZ(wire []byte, limit int64, n int) ([]byte, Message, error) {
	src := NewReader(bytes.NewReader(wire))
	z, err := NewZReader(src, limit)
	if err != nil {
		return nil, nil, err
	}
	defer z.Close()
	var got []byte
	for range n {
		t, p, err := z.ReadRaw()
		if err != nil {
			return got, nil, err
		}
		got = append(got, Magic[0], Magic[1], Version, byte(t), byte(len(p)>>24), byte(len(p)>>16), byte(len(p)>>8), byte(len(p)))
		got = append(got, p...)
	}
	if err := z.End(); err != nil {
		return got, nil, err
	}
	next, err := src.Read()
	return got, next, err
}

func TestZRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 20000} {
		frames := entryFrames(n)
		wire := zFrames(t, frames, zstd.SpeedDefault)
		// The frames: 1..MaxChunk bytes each, all but the last with More.
		r := NewReader(bytes.NewReader(wire))
		for k := 0; ; k++ {
			m, err := r.Read()
			if err != nil {
				t.Fatal(err)
			}
			z, ok := m.(ManifestZ)
			if !ok {
				t.Fatalf("%d entries: frame %d is %v", n, k, m.Type())
			}
			if len(z.Data) == 0 || len(z.Data) > MaxChunk {
				t.Fatalf("%d entries: frame %d of %d bytes", n, k, len(z.Data))
			}
			if !z.More {
				break
			}
		}
		got, next, err := readZ(wire, MaxManifestZ(uint32(n)), n+1)
		if err != nil {
			t.Fatalf("%d entries: %v", n, err)
		}
		if !bytes.Equal(got, frames) {
			t.Fatalf("%d entries: the frames differ after decompression (%d bytes, want %d)", n, len(got), len(frames))
		}
		if _, ok := next.(PatchOffer); !ok {
			t.Fatalf("%d entries: after the compressed manifest, read %#v, want the PatchOffer", n, next)
		}
		t.Logf("%d entries: %d bytes of frames, %d compressed", n, len(frames), len(wire))
	}
}

func TestZReaderRejects(t *testing.T) {
	frames := entryFrames(3000)
	compress := func(b []byte) []byte {
		enc, _ := zstd.NewWriter(nil, zstd.WithWindowSize(ZWindow))
		defer enc.Close()
		return enc.EncodeAll(b, nil)
	}
	wrap := func(data []byte, more bool) []byte { return AppendFrame(nil, ManifestZ{More: more, Data: data}) }
	bigWindow := func() []byte {
		enc, _ := zstd.NewWriter(nil, zstd.WithWindowSize(8<<20))
		defer enc.Close()
		var b bytes.Buffer
		enc.Reset(&b)
		enc.Write(bytes.Repeat(frames, 4))
		enc.Close()
		return b.Bytes()
	}
	for _, tc := range []struct {
		name  string
		wire  []byte
		limit int64
		want  error
	}{
		{"garbage", wrap([]byte("not zstd at all, not at all"), false), MaxManifestZ(3000), ErrMalformed},
		{"ends mid-frame", wrap(compress(frames[:len(frames)-5]), false), MaxManifestZ(3000), io.ErrUnexpectedEOF},
		{"bytes after the last frame", wrap(compress(append(bytes.Clone(frames), 1, 2, 3)), false), MaxManifestZ(3000), io.ErrUnexpectedEOF},
		{"a frame after the last", wrap(compress(AppendFrame(bytes.Clone(frames), Stay{})), false), MaxManifestZ(3000), ErrMalformed},
		{"past the bound", wrap(compress(frames), false), int64(len(frames)) - 1, ErrTooLarge},
		{"bomb", wrap(compress(append(bytes.Clone(frames), make([]byte, 100<<20)...)), false), MaxManifestZ(3000), ErrBadMagic},
		{"window too large", wrap(bigWindow(), false), 1 << 30, ErrMalformed},
		{"stream cut short", wrap(compress(frames)[:100], false), MaxManifestZ(3000), ErrMalformed},
		{"more never comes", wrap(compress(frames), true), MaxManifestZ(3000), io.ErrUnexpectedEOF},
		{"another message among", append(wrap(compress(frames)[:100], true), AppendFrame(nil, PatchOffer{})...), MaxManifestZ(3000), ErrUnexpected},
		{"zstd garbage after the stream", wrap(append(compress(frames), 0xff, 0xfe), false), MaxManifestZ(3000), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := readZ(tc.wire, tc.limit, 3001)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			t.Log(err)
		})
	}
}

// BenchmarkZManifest compresses a manifest of benchFiles entries at each
// level a server uses.
func BenchmarkZManifest(b *testing.B) {
	frames := entryFrames(benchFiles)
	for _, l := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression, zstd.SpeedBestCompression} {
		b.Run(l.String(), func(b *testing.B) {
			b.SetBytes(int64(len(frames)))
			b.ReportAllocs()
			var n int
			for b.Loop() {
				n = len(zFrames(b, frames, l))
			}
			b.ReportMetric(float64(n), "wire-bytes")
		})
	}
}

// TestZEmpty: a manifest of no entries sent whole has no frame after its
// header; its stream is still one ManifestZ frame, and reads as nothing.
func TestZEmpty(t *testing.T) {
	wire := zFrames(t, nil, zstd.SpeedDefault)
	got, next, err := readZ(wire, MaxManifestZ(0), 0)
	if err != nil || len(got) != 0 {
		t.Fatalf("read %d bytes, %v; want none", len(got), err)
	}
	if _, ok := next.(PatchOffer); !ok {
		t.Fatalf("after the compressed manifest, read %#v, want the PatchOffer", next)
	}
}
