package syncproto

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// benchManifest returns the header and entries of a manifest of n files
// shaped like a real release: paths a few folders deep with numbered
// names, sizes from a few hundred bytes to a few MB, mtimes spread over
// the weeks before a release, a few executables, preserved files and
// links, and random hashes.
func benchManifest(n int) (ManifestHeader, []ManifestEntry) {
	rng := rand.New(rand.NewPCG(1, 2))
	tops := []string{"assets", "bin", "lib", "plugins", "reports", "share"}
	kinds := []string{"textures", "sounds", "models", "scripts", "fonts", "locale"}
	subs := []string{"ui", "world", "common", "print", "forms", "icons", "de", "en"}
	exts := []string{".png", ".ogg", ".bin", ".lua", ".ttf", ".mo", ".dll", ".so", ".xml"}
	release := time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC)
	entries := make([]ManifestEntry, n)
	var total uint64
	for i := range entries {
		e := ManifestEntry{
			Path: fmt.Sprintf("%s/%s/%s/%s_%05d%s", tops[rng.IntN(len(tops))], kinds[rng.IntN(len(kinds))],
				subs[rng.IntN(len(subs))], []string{"icon", "item", "page", "part"}[rng.IntN(4)], i, exts[rng.IntN(len(exts))]),
			// Mostly small files, a long tail of large ones.
			Size:    uint64(200 + rng.IntN(1<<uint(8+rng.IntN(14)))),
			MtimeNs: release.Add(-time.Duration(rng.Int64N(int64(60 * 24 * time.Hour)))).UnixNano(),
			Mode:    0o644,
		}
		for k := 0; k < HashSize; k += 8 {
			v := rng.Uint64()
			for j := range 8 {
				e.Hash[k+j] = byte(v >> (8 * j))
			}
		}
		switch {
		case i%50 == 0:
			e.Mode = 0o755
		case i%500 == 1:
			e.Flags |= FlagPreserve
		case i%1000 == 2:
			e.Flags |= FlagSymlink
			e.Mode = 0o777
			e.Target = fmt.Sprintf("../common/link_%05d.bin", i)
			e.Size = uint64(len(e.Target))
		}
		total += e.Size
		entries[i] = e
	}
	h := ManifestHeader{Build: "7.00.240501A", Count: uint32(n), TotalBytes: total,
		PostInstall: "bin/postinstall.sh", PostInstallTimeout: 120}
	return h, entries
}

const benchFiles = 20000

// encodeManifest writes the manifest's frames to w and flushes them.
func encodeManifest(w *Writer, h ManifestHeader, entries []ManifestEntry) error {
	if err := w.Write(h); err != nil {
		return err
	}
	for _, e := range entries {
		if err := w.Write(e); err != nil {
			return err
		}
	}
	return w.Flush()
}

// BenchmarkManifestEncode is the framing of a manifest of 20,000 files,
// as a server without its cached frames would send it.
func BenchmarkManifestEncode(b *testing.B) {
	h, entries := benchManifest(benchFiles)
	w := NewWriter(io.Discard)
	if err := encodeManifest(w, h, entries); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(w.N)
	b.ReportAllocs()
	for b.Loop() {
		if err := encodeManifest(w, h, entries); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkManifestDecode is a client reading a manifest of 20,000 files:
// every frame read, checked and decoded.
func BenchmarkManifestDecode(b *testing.B) {
	h, entries := benchManifest(benchFiles)
	var buf bytes.Buffer
	if err := encodeManifest(NewWriter(&buf), h, entries); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r := NewReader(bytes.NewReader(data))
		m, err := r.Expect(MsgManifestHeader)
		if err != nil {
			b.Fatal(err)
		}
		for range m.(ManifestHeader).Count {
			if _, err := r.Expect(MsgManifestEntry); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := r.Read(); err != io.EOF {
			b.Fatalf("after the manifest: %v, want io.EOF", err)
		}
	}
}

// BenchmarkDigest is the digest of a manifest of 20,000 files, which the
// server computes once per release and the client once per manifest read.
func BenchmarkDigest(b *testing.B) {
	h, entries := benchManifest(benchFiles)
	var w bytes.Buffer
	if err := encodeManifest(NewWriter(&w), h, entries); err != nil {
		b.Fatal(err)
	}
	// The digest covers the payloads and a 4-byte length for each, about
	// the size of the frames.
	b.SetBytes(int64(w.Len() - (len(entries)+1)*(HeaderSize-4)))
	b.ReportAllocs()
	var sum [HashSize]byte
	for b.Loop() {
		d := NewDigester(h)
		for _, e := range entries {
			d.Add(e)
		}
		sum = d.Sum()
	}
	if sum == ([HashSize]byte{}) {
		b.Fatal("zero digest")
	}
}

// TestBenchManifestIsValid keeps the benchmarks' manifest a manifest the
// protocol accepts, and their decode loop honest about what it reads.
func TestBenchManifestIsValid(t *testing.T) {
	h, entries := benchManifest(benchFiles)
	var buf bytes.Buffer
	if err := encodeManifest(NewWriter(&buf), h, entries); err != nil {
		t.Fatal(err)
	}
	r := NewReader(&buf)
	m, err := r.Expect(MsgManifestHeader)
	if err != nil {
		t.Fatal(err)
	}
	if m.(ManifestHeader) != h {
		t.Fatalf("header %+v, want %+v", m, h)
	}
	var sum uint64
	paths := map[string]bool{}
	for i := range entries {
		m, err := r.Expect(MsgManifestEntry)
		if err != nil {
			t.Fatal(err)
		}
		e := m.(ManifestEntry)
		if e != entries[i] {
			t.Fatalf("entry %d: %+v, want %+v", i, e, entries[i])
		}
		if paths[e.Path] {
			t.Fatalf("path %s twice", e.Path)
		}
		paths[e.Path] = true
		sum += e.Size
	}
	if sum != h.TotalBytes {
		t.Errorf("entries add up to %d bytes, header says %d", sum, h.TotalBytes)
	}
	if _, err := r.Read(); err != io.EOF {
		t.Errorf("after the manifest: %v, want io.EOF", err)
	}
}

// BenchmarkSketch is the sketch of a manifest of 20,000 files: the client
// computes it from the manifest it keeps at every sync that is not a
// no-op, the server once per release.
func BenchmarkSketch(b *testing.B) {
	_, entries := benchManifest(benchFiles)
	b.ReportAllocs()
	var buf []byte
	var x uint64
	for b.Loop() {
		for _, e := range entries {
			var v uint64
			v, buf = EntrySketch(e, buf)
			x ^= v
		}
	}
	if x == 0 && len(entries)%2 == 1 {
		b.Fatal("sketches cancel out")
	}
}
