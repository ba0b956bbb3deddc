package syncproto

import "github.com/zeebo/blake3"

// Digester computes a manifest's digest: the BLAKE3 of the payloads of its
// ManifestHeader and of every ManifestEntry in order, each preceded by its
// length. Both sides compute it from the messages themselves, so a client
// that installed a manifest knows its digest without being told, and
// GetManifest.Have can name it.
type Digester struct {
	h   *blake3.Hasher
	buf []byte
}

// NewDigester starts the digest of the manifest that h heads.
func NewDigester(h ManifestHeader) *Digester {
	d := &Digester{h: blake3.New()}
	d.add(h)
	return d
}

// Add adds the next entry.
func (d *Digester) Add(e ManifestEntry) { d.add(e) }

func (d *Digester) add(m Message) {
	d.buf = append(d.buf[:0], 0, 0, 0, 0)
	d.buf = m.appendPayload(d.buf)
	n := len(d.buf) - 4
	d.buf[0], d.buf[1], d.buf[2], d.buf[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	d.h.Write(d.buf)
}

// Sum returns the digest of the header and the entries added so far.
func (d *Digester) Sum() (sum [HashSize]byte) {
	copy(sum[:], d.h.Sum(nil))
	return sum
}

// EntrySketch returns the sketch of a manifest entry: the first SketchSize
// bytes of the BLAKE3 of its payload, as a number. buf is scratch space,
// returned for reuse.
func EntrySketch(e ManifestEntry, buf []byte) (uint64, []byte) {
	buf = e.appendPayload(buf[:0])
	return PayloadSketch(buf), buf
}

// PayloadSketch returns the sketch of the entry whose payload is p, as a
// frame holds it (see Reader.ReadRaw): the same as EntrySketch's, without
// decoding the entry.
func PayloadSketch(p []byte) uint64 {
	sum := blake3.Sum256(p)
	var v uint64
	for _, b := range sum[:SketchSize] {
		v = v<<8 | uint64(b)
	}
	return v
}
