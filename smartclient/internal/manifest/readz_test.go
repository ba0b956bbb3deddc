package manifest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/erpupdate/smartsync/internal/releasecheck"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/klauspost/compress/zstd"
)

// compressManifest turns a manifest sent whole (encodeEntries) into what
// a server sends a client that set GetZManifest: the header, then the
// other frames as ManifestZ frames, then a PatchOffer.
func compressManifest(t testing.TB, plain []byte) []byte {
	t.Helper()
	hdrLen := syncproto.HeaderSize + int(binary.BigEndian.Uint32(plain[4:8]))
	out := bytes.Clone(plain[:hdrLen])
	enc, err := syncproto.NewZEncoder(zstd.SpeedDefault)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	z := syncproto.NewZWriter(enc, func(m syncproto.ManifestZ) error {
		out = syncproto.AppendFrame(out, m)
		return nil
	})
	if err := z.WriteEncoded(plain[hdrLen:]); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return syncproto.AppendFrame(out, syncproto.PatchOffer{})
}

// TestReadCompressed reads a manifest sent compressed: the same manifest
// as sent whole, and the frame after it left to read.
func TestReadCompressed(t *testing.T) {
	var entries []syncproto.ManifestEntry
	for i := range 5000 {
		entries = append(entries, fileEntry(fmt.Sprintf("lib/part%05d/file.dll", i)))
	}
	plain := encodeEntries(t, entries...)
	want, err := Read(syncproto.NewReader(bytes.NewReader(plain)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	wire := compressManifest(t, plain)
	r := syncproto.NewReader(bytes.NewReader(wire))
	got, err := Read(r, Options{Compressed: true})
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest() != want.Digest() || got.Len() != want.Len() {
		t.Fatalf("read compressed: %d entries, digest %x; sent whole: %d, %x", got.Len(), got.Digest(), want.Len(), want.Digest())
	}
	if m, err := r.Read(); err != nil || m.Type() != syncproto.MsgPatchOffer {
		t.Fatalf("after the manifest: %v, %v; want the PatchOffer", m, err)
	}
	t.Logf("%d bytes whole, %d compressed", len(plain), len(wire))
	// A manifest sent whole to a client that asked for it compressed is
	// refused.
	if _, err := Read(syncproto.NewReader(bytes.NewReader(plain)), Options{Compressed: true}); !errors.Is(err, syncproto.ErrUnexpected) {
		t.Fatalf("a manifest sent whole, read compressed: %v, want ErrUnexpected", err)
	}
}

// FuzzManifestZ feeds the client's decompress-and-parse path any
// compressed stream, cut into ManifestZ frames anywhere, after a header
// of any count: nothing panics, and what is accepted is a manifest of
// the header's count of valid paths, whose stream ended with its last
// frame.
func FuzzManifestZ(f *testing.F) {
	seed := func(entries ...syncproto.ManifestEntry) {
		plain := encodeEntries(f, entries...)
		wire := compressManifest(f, plain)
		hdrLen := syncproto.HeaderSize + int(binary.BigEndian.Uint32(plain[4:8]))
		// The stream alone, as one frame's data.
		r := syncproto.NewReader(bytes.NewReader(wire[hdrLen:]))
		m, err := r.Read()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(len(entries)), m.(syncproto.ManifestZ).Data, uint16(7))
	}
	seed(fileEntry("smartclient"), fileEntry("lib/a.so"))
	seed(fileEntry("../x"))
	seed(dirEntry("TOTVS.app/Contents/Frameworks"), fileEntry("a"))
	seed()
	f.Fuzz(func(t *testing.T, count uint8, stream []byte, cut uint16) {
		var total uint64 = uint64(count) // entries of one byte, as the seeds
		wire := syncproto.AppendFrame(nil, syncproto.ManifestHeader{Build: "7.00.240501A", Count: uint32(count), TotalBytes: total})
		// The stream in up to two frames, as a sender may cut it.
		k := int(cut) % (len(stream) + 1)
		if k > 0 && k < len(stream) {
			wire = syncproto.AppendFrame(wire, syncproto.ManifestZ{More: true, Data: stream[:k]})
			stream = stream[k:]
		}
		if len(stream) > 0 && len(stream) <= syncproto.MaxChunk {
			wire = syncproto.AppendFrame(wire, syncproto.ManifestZ{Data: stream})
		}
		man, err := Read(syncproto.NewReader(bytes.NewReader(wire)), Options{Compressed: true})
		if err != nil {
			return
		}
		if man.Len() != int(count) {
			t.Fatalf("accepted %d entries of a header's %d", man.Len(), count)
		}
		for _, file := range man.All() {
			if err := releasecheck.CheckPath(file.Path); err != nil {
				t.Fatalf("accepted %q: %v", file.Path, err)
			}
		}
	})
}
