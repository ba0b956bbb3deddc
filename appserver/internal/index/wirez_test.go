package index

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/syncproto"
	"github.com/klauspost/compress/zstd"
)

// TestWireZ checks that WireZ decompresses to exactly the frames of Wire
// after the header, and is made once.
func TestWireZ(t *testing.T) {
	dir := t.TempDir()
	for i := range 300 {
		p := filepath.Join(dir, "lib", "part"+string(rune('a'+i%26)), "f"+time.Duration(i).String()+".dll")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ix, err := Open(context.Background(), slog.New(slog.DiscardHandler), "linux", dir, t.TempDir(), Release{Build: "7.00.240501A"})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	man := ix.Latest()
	z, err := man.WireZ()
	if err != nil {
		t.Fatal(err)
	}
	w := man.Wire()
	if got := decompressZ(t, z, len(man.Files)); !bytes.Equal(got, w.Frames[w.hdrEnd:]) {
		t.Fatalf("WireZ decompresses to %d bytes, not the %d of the entries' frames", len(got), len(w.Frames)-w.hdrEnd)
	}
	if z2, _ := man.WireZ(); &z2[0] != &z[0] {
		t.Fatal("WireZ compressed the manifest again")
	}
}

// decompressZ reads the ManifestZ frames of wire, n frames from them, and
// returns the frames read, checking that the stream ends with them.
func decompressZ(t testing.TB, wire []byte, n int) []byte {
	t.Helper()
	src := syncproto.NewReader(bytes.NewReader(wire))
	z, err := syncproto.NewZReader(src, syncproto.MaxManifestZ(uint32(n)))
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	var got []byte
	for range n {
		m, err := z.Read()
		if err != nil {
			t.Fatal(err)
		}
		got = syncproto.AppendFrame(got, m)
	}
	if err := z.End(); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Read(); err != io.EOF {
		t.Fatalf("after the compressed manifest: %v", err)
	}
	return got
}

// TestWireZGoToolchain measures the compressed manifest of a real
// release, the Go 1.25.1 linux-amd64 toolchain that `make bench` fetches
// (SMARTSYNC_GO_TREES names the folder that holds go1.25.0 and go1.25.1):
// the whole manifest, and what goes by sketch to a client that keeps
// 1.25.0's, raw and compressed at each level.
func TestWireZGoToolchain(t *testing.T) {
	trees := os.Getenv("SMARTSYNC_GO_TREES")
	if trees == "" {
		t.Skip("SMARTSYNC_GO_TREES is not set")
	}
	open := func(v string) *Manifest {
		ix, err := Open(context.Background(), slog.New(slog.DiscardHandler), "linux", filepath.Join(trees, v), t.TempDir(), Release{Build: "7.00.240501A"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ix.Close() })
		return ix.Latest()
	}
	old, man := open("go1.25.0").Wire(), open("go1.25.1")
	w := man.Wire()
	// The sketch path: every entry the client does not keep, whole, and
	// a ManifestSame for each run of kept ones, then ManifestEnd.
	kept := map[uint64]bool{}
	for _, s := range old.Sketches {
		kept[s] = true
	}
	var bySketch []byte
	same := 0
	for i, s := range w.Sketches {
		if kept[s] {
			same++
			continue
		}
		if same > 0 {
			bySketch = syncproto.AppendFrame(bySketch, syncproto.ManifestSame{Count: uint32(same)})
			same = 0
		}
		bySketch = append(bySketch, w.Entry(i)...)
	}
	if same > 0 {
		bySketch = syncproto.AppendFrame(bySketch, syncproto.ManifestSame{Count: uint32(same)})
	}
	bySketch = syncproto.AppendFrame(bySketch, syncproto.ManifestEnd{Digest: w.Digest})
	t.Logf("%d entries; header %d bytes", len(man.Files), w.hdrEnd)
	for _, c := range []struct {
		name   string
		frames []byte
	}{{"whole", w.Frames[w.hdrEnd:]}, {"by sketch", bySketch}} {
		for _, l := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression, zstd.SpeedBestCompression} {
			enc, err := syncproto.NewZEncoder(l)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			var n int
			z := syncproto.NewZWriter(enc, func(m syncproto.ManifestZ) error { n += syncproto.HeaderSize + 1 + len(m.Data); return nil })
			z.WriteEncoded(c.frames)
			if err := z.Close(); err != nil {
				t.Fatal(err)
			}
			t.Logf("%-9s %-8s raw %8d bytes, compressed %8d (%.3f), %v", c.name, l, len(c.frames), n, float64(n)/float64(len(c.frames)), time.Since(start).Round(100*time.Microsecond))
			enc.Close()
		}
	}
}
