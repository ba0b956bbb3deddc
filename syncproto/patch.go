package syncproto

import "encoding/binary"

// Patches from history (see the package documentation, "Patches from
// history"): the server offers, after the manifest, the patches it holds
// for the files a client may have in an older release; the client asks
// for one with PatchRequest, naming the base it holds, and the server
// sends the patch in FilePatch frames between FileStart and FileEnd.

// Message types of patches.
const (
	MsgPatchOffer   MsgType = 30
	MsgPatchRequest MsgType = 31
	MsgFilePatch    MsgType = 32
)

// Limits of patches.
const (
	// MaxPatchOffers bounds the offers of one PatchOffer frame, and
	// MaxSessionPatchOffers those of one session (one per manifest entry
	// and older release kept, at most).
	MaxPatchOffers        = 4096
	MaxSessionPatchOffers = 1 << 20
)

// GetPatches, a GetManifest flag, says that the client applies patches
// from history: the server then follows the manifest with PatchOffer
// frames.
const GetPatches uint8 = 1 << 2

// PatchOffer lists patches the server holds for files of the manifest it
// just sent. All frames but the last have More set; a server with nothing
// to offer sends one empty frame. Offers are sorted by Index, and by Base
// within an index.
type PatchOffer struct {
	More   bool
	Offers []PatchRef
}

// PatchRef is one patch: it turns the file whose BLAKE3 is Base into the
// manifest's entry Index, and is Size bytes long.
type PatchRef struct {
	Index uint32
	Base  [HashSize]byte
	Size  uint64
}

// PatchRequest asks for manifest entry Index as the patch offered from
// Base, which the client holds at that entry's path.
type PatchRequest struct {
	Index uint32
	Base  [HashSize]byte
}

// FilePatch carries 1 to MaxChunk bytes of a patch, in order, between
// FileStart and FileEnd. A file is sent either as FilePatch frames or as
// FileData ones, never both: a server whose patch cannot be read sends the
// whole file instead.
type FilePatch struct {
	Data []byte
}

func (PatchOffer) Type() MsgType   { return MsgPatchOffer }
func (PatchRequest) Type() MsgType { return MsgPatchRequest }
func (FilePatch) Type() MsgType    { return MsgFilePatch }

func (m PatchOffer) appendPayload(b []byte) []byte {
	b = appendBool(b, m.More)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Offers)))
	for _, o := range m.Offers {
		b = binary.BigEndian.AppendUint32(b, o.Index)
		b = append(b, o.Base[:]...)
		b = binary.BigEndian.AppendUint64(b, o.Size)
	}
	return b
}

func (m PatchRequest) appendPayload(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, m.Index)
	return append(b, m.Base[:]...)
}

func (m FilePatch) appendPayload(b []byte) []byte { return append(b, m.Data...) }

// patchRefSize is one PatchRef on the wire.
const patchRefSize = 4 + HashSize + 8

func maxPatchPayload(t MsgType) (int, bool) {
	switch t {
	case MsgPatchOffer:
		return 1 + 4 + MaxPatchOffers*patchRefSize, true
	case MsgPatchRequest:
		return 4 + HashSize, true
	case MsgFilePatch:
		return MaxChunk, true
	}
	return 0, false
}

// decodePatch decodes the payload of a patch message. FilePatch.Data
// aliases the payload.
func decodePatch(t MsgType, d *decoder) Message {
	switch t {
	case MsgPatchOffer:
		o := PatchOffer{More: d.bool("more")}
		n := d.u32("offer count")
		switch {
		case d.err != nil:
			return o
		case n > MaxPatchOffers:
			d.fail("%d offers, limit %d", n, MaxPatchOffers)
			return o
		case int(n)*patchRefSize != len(d.b):
			d.fail("%d offers in %d bytes", n, len(d.b))
			return o
		case o.More && n == 0:
			d.fail("an empty frame with more to come")
			return o
		}
		if n > 0 {
			o.Offers = make([]PatchRef, n)
		}
		for i := range o.Offers {
			r := PatchRef{Index: d.u32("index"), Base: d.hash("base"), Size: d.u64("size")}
			if i > 0 {
				p := o.Offers[i-1]
				if r.Index < p.Index || r.Index == p.Index && string(r.Base[:]) <= string(p.Base[:]) {
					d.fail("offer %d is not after offer %d (by index, then base)", i, i-1)
					return o
				}
			}
			if r.Size == 0 {
				d.fail("a patch of 0 bytes")
				return o
			}
			o.Offers[i] = r
		}
		return o
	case MsgPatchRequest:
		return PatchRequest{Index: d.u32("index"), Base: d.hash("base")}
	default: // MsgFilePatch
		if len(d.b) == 0 {
			d.fail("an empty patch chunk")
		}
		p := FilePatch{Data: d.b}
		d.b = nil
		return p
	}
}
