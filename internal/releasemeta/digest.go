package releasemeta

import (
	"encoding/binary"
	"time"

	"github.com/zeebo/blake3"
)

// Entry is one entry of a release, as both sides' manifests hold it.
type Entry struct {
	Path     string
	Size     uint64
	Mode     uint32 // permission bits; others are ignored
	Symlink  bool
	Dir      bool
	Preserve bool
	Hash     [32]byte
	Target   string
}

const digestPrefix = "smartsync-release-digest v1\x00"

// Digester computes a release's digest (see the package documentation).
type Digester struct {
	h   *blake3.Hasher
	buf []byte
}

// NewDigester starts a digest.
func NewDigester() *Digester {
	d := &Digester{h: blake3.New()}
	d.h.WriteString(digestPrefix)
	return d
}

// Add adds the next entry, in manifest order.
func (d *Digester) Add(e Entry) {
	b := d.buf[:0]
	b = appendString(b, e.Path)
	b = binary.BigEndian.AppendUint64(b, e.Size)
	b = binary.BigEndian.AppendUint32(b, e.Mode&0o777)
	var flags byte
	if e.Symlink {
		flags |= 1
	}
	if e.Dir {
		flags |= 2
	}
	if e.Preserve {
		flags |= 4
	}
	b = append(b, flags)
	b = append(b, e.Hash[:]...)
	b = appendString(b, e.Target)
	d.h.Write(b)
	d.buf = b
}

// Sum ends the digest with the post-install step: its path ("" for none)
// and its time limit, counted in whole seconds as the protocol sends it.
func (d *Digester) Sum(postInstall string, timeout time.Duration) Digest {
	b := append(d.buf[:0], 0xff)
	b = appendString(b, postInstall)
	secs := uint32(0)
	if postInstall != "" {
		secs = uint32(timeout / time.Second)
	}
	b = binary.BigEndian.AppendUint32(b, secs)
	d.h.Write(b)
	var sum Digest
	copy(sum[:], d.h.Sum(nil))
	return sum
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
