package index

import (
	"fmt"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/syncproto"
	"github.com/klauspost/compress/zstd"
)

// PostInstall returns the manifest's path of the post-install program, or
// "" when this folder has none (each OS folder may carry its own).
func (m *Manifest) PostInstall() string {
	m.postOnce.Do(func() {
		if m.rel == nil || m.rel.PostInstall == "" {
			return
		}
		for _, f := range m.Files {
			if !f.Dir && strings.EqualFold(f.Path, m.rel.PostInstall) {
				m.postInstall = f.Path
				return
			}
		}
	})
	return m.postInstall
}

// Wire is a manifest as the protocol sends it (see syncproto's doc): its
// frames, the header's and then each entry's, and its digest.
type Wire struct {
	// Frames holds the encoded frames, header first.
	Frames []byte
	// Digest is the manifest's digest, which a client names to learn
	// that it is up to date.
	Digest [32]byte
	// Sketches holds each entry's sketch (syncproto.PayloadSketch), for
	// manifests by difference.
	Sketches []uint64

	// hdrEnd is where the header's frame ends in Frames, ends[i] where
	// entry i's frame ends.
	hdrEnd int
	ends   []int
}

// Header returns the header's frame.
func (w *Wire) Header() []byte { return w.Frames[:w.hdrEnd] }

// Entry returns the frame of entry i.
func (w *Wire) Entry(i int) []byte {
	start := w.hdrEnd
	if i > 0 {
		start = w.ends[i-1]
	}
	return w.Frames[start:w.ends[i]]
}

// Wire returns the manifest as frames, made once per manifest: a session
// only copies the bytes.
func (m *Manifest) Wire() *Wire {
	m.wireOnce.Do(func() {
		hdr := syncproto.ManifestHeader{Build: m.Build, Count: uint32(len(m.Files)), TotalBytes: uint64(m.TotalBytes)}
		if hdr.PostInstall = m.PostInstall(); hdr.PostInstall != "" {
			hdr.PostInstallTimeout = uint32(m.rel.PostInstallTimeout / time.Second)
		}
		d := syncproto.NewDigester(hdr)
		b := syncproto.AppendFrame(nil, hdr)
		w := &Wire{hdrEnd: len(b), ends: make([]int, 0, len(m.Files)), Sketches: make([]uint64, 0, len(m.Files))}
		for _, f := range m.Files {
			e := syncproto.ManifestEntry{Path: f.Path, Size: uint64(f.Size), MtimeNs: f.MtimeNs, Mode: uint32(f.Mode), Hash: f.Hash, Target: f.Target}
			if f.Target != "" {
				e.Flags |= syncproto.FlagSymlink
			}
			if f.Preserve {
				e.Flags |= syncproto.FlagPreserve
			}
			if f.Dir {
				e.Flags |= syncproto.FlagDir
			}
			d.Add(e)
			start := len(b)
			b = syncproto.AppendFrame(b, e)
			w.ends = append(w.ends, len(b))
			w.Sketches = append(w.Sketches, syncproto.PayloadSketch(b[start+syncproto.HeaderSize:]))
		}
		w.Frames, w.Digest = b, d.Sum()
		m.wire = w
	})
	return m.wire
}

// WireZLevel is the zstd level of compressed manifests, for WireZ and
// for those a server sends by sketch. Measured on the Go 1.25.1
// toolchain's 11,039 entries (1,174,572 bytes of frames): SpeedFastest
// 493,353 bytes in 4 ms, SpeedDefault 488,848 in 7 ms, SpeedBestCompression
// 485,701 in 61 ms but with about 40 MB of tables; the hashes (353 KB)
// do not compress at any level.
const WireZLevel = zstd.SpeedDefault

// WireZ returns the frames of Wire after the header, compressed into
// ManifestZ frames (syncproto's doc, "Manifests compressed"), encoded:
// made once per manifest, so that a thousand clients that ask with
// GetZManifest cost one compression.
func (m *Manifest) WireZ() ([]byte, error) {
	m.wireZOnce.Do(func() {
		w := m.Wire()
		enc, err := syncproto.NewZEncoder(WireZLevel)
		if err != nil {
			m.wireZErr = fmt.Errorf("compressing the manifest: %w", err)
			return
		}
		defer enc.Close()
		var b []byte
		z := syncproto.NewZWriter(enc, func(c syncproto.ManifestZ) error {
			b = syncproto.AppendFrame(b, c)
			return nil
		})
		if err := z.WriteEncoded(w.Frames[w.hdrEnd:]); err != nil {
			m.wireZErr = err
			return
		}
		if err := z.Close(); err != nil {
			m.wireZErr = err
			return
		}
		m.wireZ = b
	})
	return m.wireZ, m.wireZErr
}
