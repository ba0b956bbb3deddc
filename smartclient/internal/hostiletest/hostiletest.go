// Package hostiletest is a lying update server for tests: it speaks the
// real protocol over real TCP on 127.0.0.1, with lies built in (Lie): a
// manifest that names what no client may write, a header that does not add
// up, a stream that sends more or other bytes than declared, a delta that
// copies past its base, a chunk list that lies, a patch offer or a patch
// that lies. Serve tells a Lie to the
// client that connects and returns what it saw the client do (Saw), so
// that a test of any package can drive a hostile peer and check that the
// client refuses each lie with the error it names.
//
// It is for tests only, and imports syncproto, internal/cdc and
// internal/zpatch: nothing of the client it lies to.
package hostiletest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/cdc"
	"github.com/erpupdate/smartsync/internal/pki/pkitest"
	"github.com/erpupdate/smartsync/internal/zpatch"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"
)

// Build is the build the liar says it serves.
const Build = "7.00.240501A"

// Mtime is the modification time of a release's files whose File.Mtime
// is zero, older than any test.
var Mtime = time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC).UnixNano()

// File is one file of a release the liar serves.
type File struct {
	Path    string
	Mode    uint32
	Content []byte
	Mtime   time.Time // zero: Mtime
}

// Entries is the honest manifest of files.
func Entries(files []File) []syncproto.ManifestEntry {
	es := make([]syncproto.ManifestEntry, len(files))
	for i, f := range files {
		mt := Mtime
		if !f.Mtime.IsZero() {
			mt = f.Mtime.UnixNano()
		}
		es[i] = syncproto.ManifestEntry{Path: f.Path, Size: uint64(len(f.Content)), MtimeNs: mt, Mode: f.Mode, Hash: blake3.Sum256(f.Content)}
	}
	return es
}

// Lie scripts one hostile session. The zero Lie is an honest server.
// The liar tells what the fields up to Send say; the fields after say
// what the client must make of it, for the test to check.
type Lie struct {
	Name string // names the lie in a test's table
	// Entries turns the honest manifest into the lie; nil sends it as is.
	Entries func([]syncproto.ManifestEntry) []syncproto.ManifestEntry
	// Header changes the header computed from the entries.
	Header func(*syncproto.ManifestHeader)
	// Among is sent after the entries, as if it were one.
	Among syncproto.Message
	// Release, when set, is sent as the signed release before the
	// manifest (syncproto.Release).
	Release []byte
	// HangUp closes the connection right after the manifest, before
	// any patch offer.
	HangUp bool
	// BySketch, when set, sends the entries after the header instead of
	// the liar, with the client's sketch if it sent one (nil otherwise).
	BySketch func(w *syncproto.Writer, h syncproto.ManifestHeader, entries []syncproto.ManifestEntry, sketch []uint64)
	// Patches are the patches from history the liar holds: after the
	// manifest, to a client that asks for them (GetPatches), it offers
	// each, made with zpatch.Make from its base to the file of its
	// index, and sends it honestly when asked (see Stream.Patch).
	Patches []Patch
	// Offers turns the honest offers of Patches into the PatchOffer
	// frames sent; nil sends them honestly, in frames of at most
	// MaxPatchOffers, one empty frame when there are none.
	Offers func(honest []syncproto.PatchRef) []syncproto.PatchOffer
	// Z, to a client that asks for the manifest compressed
	// (GetZManifest), turns the frames after the header (plain: the
	// entries, Among, ManifestEnd, as told) into the ManifestZ frames
	// sent; nil compresses them honestly (see Compress and Cut).
	Z func(plain []byte) []syncproto.ManifestZ
	// Send answers the client's requests; nil sends what it asked for,
	// honestly.
	Send func(s *Stream)

	// Want is the error the client must give (errors.Is), nil for none.
	Want error
	// OrWant is another error that will do, when two parts of the
	// client may rightly find the lie.
	OrWant error
	// WantMsg are pieces of the error's text: the entry it names, the
	// reason.
	WantMsg []string
	// DropsKept: the lie makes the client drop the manifest it keeps.
	DropsKept bool
	// Bug, when set, describes a bug of the client that the lie shows:
	// the test is skipped until it is fixed.
	Bug string
}

// Saw is what the liar saw the client do.
type Saw struct {
	Asked    []uint32 // indices requested, whole or as deltas
	AskedEnd bool     // RequestEnd received: the client went on to download
	// Deltas are the DeltaRequests among asked, by index, each with the
	// chunks of all its frames.
	Deltas map[uint32]*syncproto.DeltaRequest
	// Blocks are the BlockRequests among asked, by index.
	Blocks map[uint32]*syncproto.BlockRequest
	// Patches are the PatchRequests among asked, by index.
	Patches map[uint32]*syncproto.PatchRequest
	// PatchesAsked: the client set GetPatches in GetManifest.
	PatchesAsked bool
	// ZAsked: the client set GetZManifest in GetManifest.
	ZAsked bool
	Copied int64 // bytes the honest liar sent as FileCopy
	Report *syncproto.Report
	// reportOnly marks a session that only reported (see Serve).
	reportOnly bool
	ServerErr  error // the client broke the protocol before the lie was told
	// Again is what the liar saw in a second session, when the client
	// came back (it does, once, after a file built from block sums
	// failed its check), telling the same lie.
	Again *Saw
}

// Patch is a patch from history the liar holds: from the file whose
// content is Base to the release's file Index.
type Patch struct {
	Index int
	Base  []byte
}

// Stream is the liar's side of the file transfer.
type Stream struct {
	Conn  net.Conn
	W     *syncproto.Writer
	Files []File
	enc   *zstd.Encoder
	Saw   *Saw
	// patches are the bytes of the liar's patches, by index and base.
	patches map[patchKey][]byte
}

type patchKey struct {
	index uint32
	base  [32]byte
}

// Msg sends m. Write errors are ignored here and below: a client that
// hangs up in the middle of a lie is what the tests want.
func (s *Stream) Msg(m syncproto.Message) { s.W.Write(m) }

// Data sends b in chunks of at most MaxChunk bytes, zstd-compressed
// where that pays, as a real server sends them.
func (s *Stream) Data(b []byte) {
	for len(b) > 0 {
		n := min(len(b), syncproto.MaxChunk)
		s.W.WriteChunk(s.enc, b[:n])
		b = b[n:]
	}
}

// File sends file i honestly. An index past the release is one of the
// lies' added entries, whose content is "x" (see Entry): a client that
// wrongly accepts one gets it, and the test, not the liar, says so.
func (s *Stream) File(i int) {
	f := File{Content: []byte("x")}
	if i < len(s.Files) {
		f = s.Files[i]
	}
	s.Msg(syncproto.FileStart{Index: uint32(i), Size: uint64(len(f.Content))})
	s.Data(f.Content)
	s.Msg(syncproto.FileEnd{Hash: blake3.Sum256(f.Content)})
}

// Honest sends file i as it was asked for: whole, as a patch, or as a
// delta.
func (s *Stream) Honest(i int) {
	if s.Saw.Patches[uint32(i)] != nil {
		s.Patch(i)
	} else if s.Saw.Deltas[uint32(i)] != nil || s.Saw.Blocks[uint32(i)] != nil {
		s.Delta(i)
	} else {
		s.File(i)
	}
}

// Delta sends file i honestly as the client asked for it with a
// DeltaRequest, as a real server does: its chunk list if asked for, then
// copies of the chunks the base has, merged where they follow each other
// in the base, and data for the rest.
func (s *Stream) Delta(i int) {
	if s.Saw.Blocks[uint32(i)] != nil {
		s.blockDelta(i)
		return
	}
	d := s.Saw.Deltas[uint32(i)]
	f := s.Files[i]
	s.Msg(syncproto.FileStart{Index: uint32(i), Size: uint64(len(f.Content))})
	if d.Flags&syncproto.DeltaWantList != 0 {
		s.List(d.Bits, Refs(CutChunks(f.Content, d.Bits)), syncproto.MaxChunkRefs, false)
	}
	s.Assemble(f.Content, d.Bits, d.Chunks)
	s.Msg(syncproto.FileEnd{Hash: blake3.Sum256(f.Content)})
}

// PatchBytes returns the patch the client asked for file i with
// (PatchRequest), nil when it asked for none.
func (s *Stream) PatchBytes(i int) []byte {
	r := s.Saw.Patches[uint32(i)]
	if r == nil {
		return nil
	}
	return s.patches[patchKey{r.Index, r.Base}]
}

// Patch sends file i honestly as the patch the client asked for: its
// bytes in FilePatch frames of at most MaxChunk bytes.
func (s *Stream) Patch(i int) {
	f := s.Files[i]
	s.Msg(syncproto.FileStart{Index: uint32(i), Size: uint64(len(f.Content))})
	s.PatchData(s.PatchBytes(i))
	s.Msg(syncproto.FileEnd{Hash: blake3.Sum256(f.Content)})
}

// PatchData sends b as FilePatch frames of at most MaxChunk bytes.
func (s *Stream) PatchData(b []byte) {
	for len(b) > 0 {
		n := min(len(b), syncproto.MaxChunk)
		s.Msg(syncproto.FilePatch{Data: b[:n]})
		b = b[n:]
	}
}

// MakePatch returns the patch from base to content, as a server makes
// it (zpatch.Make, default options).
func MakePatch(base, content []byte) []byte {
	var b bytes.Buffer
	err := zpatch.Make(context.Background(), &b, bytes.NewReader(base), int64(len(base)), bytes.NewReader(content), int64(len(content)), zpatch.Options{})
	if err != nil {
		panic(err) // readers of memory do not fail, and test files are small
	}
	return b.Bytes()
}

// blockDelta sends file i honestly as the client asked for it with a
// BlockRequest, more simply than a real server: a block of the new file
// at the place of the base's block with the same sums is sent as a copy
// of it, everything else as data.
func (s *Stream) blockDelta(i int) {
	r := s.Saw.Blocks[uint32(i)]
	content := s.Files[i].Content
	s.Msg(syncproto.FileStart{Index: uint32(i), Size: uint64(len(content))})
	bs := int(r.BlockSize)
	for k := 0; k*bs < len(content); k++ {
		b := content[k*bs : min(k*bs+bs, len(content))]
		if k < len(r.Sums) && r.Sums[k] == (syncproto.BlockSum{Weak: cdc.WeakSum(b).Weak(), Strong: cdc.StrongSum(b)}) &&
			uint64(k*bs+len(b)) <= r.BaseSize {
			s.Msg(syncproto.FileCopy{Off: uint64(k * bs), Len: uint32(len(b))})
			s.Saw.Copied += int64(len(b))
			continue
		}
		s.Data(b)
	}
	s.Msg(syncproto.FileEnd{Hash: blake3.Sum256(content)})
}

// Assemble sends content, cut with bits, as copies of the chunks of
// base and data for the rest.
func (s *Stream) Assemble(content []byte, bits uint8, base []syncproto.ChunkRef) {
	at := map[syncproto.ChunkRef]uint64{}
	var off uint64
	for _, r := range base {
		if _, dup := at[r]; !dup {
			at[r] = off
		}
		off += uint64(r.Len)
	}
	var cp syncproto.FileCopy
	flush := func() {
		if cp.Len > 0 {
			s.Msg(cp)
			s.Saw.Copied += int64(cp.Len)
		}
		cp = syncproto.FileCopy{}
	}
	for _, c := range CutChunks(content, bits) {
		o, ok := at[syncproto.ChunkRef{Len: c.Len, Hash: c.Hash}]
		switch {
		case ok && cp.Len > 0 && cp.Off+uint64(cp.Len) == o:
			cp.Len += c.Len
		case ok:
			flush()
			cp = syncproto.FileCopy{Off: o, Len: c.Len}
		default:
			flush()
			s.Data(content[c.Off : c.Off+int64(c.Len)])
		}
	}
	flush()
}

// List sends refs as a chunk list cut with bits, perFrame references a
// frame; more sets More on the last frame too.
func (s *Stream) List(bits uint8, refs []syncproto.ChunkRef, perFrame int, more bool) {
	for k := 0; k == 0 || k < len(refs); k += perFrame {
		s.Msg(syncproto.ChunkList{Bits: bits, More: more || k+perFrame < len(refs), Chunks: refs[k:min(k+perFrame, len(refs))]})
	}
}

// CutChunks returns the content-defined chunks of b, cut with bits.
func CutChunks(b []byte, bits uint8) []cdc.Chunk {
	chunks, err := cdc.Split(bytes.NewReader(b), bits)
	if err != nil {
		panic(err) // a bytes.Reader does not fail
	}
	return chunks
}

// Refs names chunks as the protocol does.
func Refs(chunks []cdc.Chunk) []syncproto.ChunkRef {
	refs := make([]syncproto.ChunkRef, len(chunks))
	for i, c := range chunks {
		refs[i] = syncproto.ChunkRef{Len: c.Len, Hash: c.Hash}
	}
	return refs
}

// Raw sends bytes that need not be a valid frame.
func (s *Stream) Raw(b []byte) {
	s.W.Flush()
	s.Conn.Write(b)
}

// FrameHeader is a frame header with any type and length.
func FrameHeader(t syncproto.MsgType, n uint32) []byte {
	b := []byte{syncproto.Magic[0], syncproto.Magic[1], syncproto.Version, byte(t), 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[4:], n)
	return b
}

// Serve listens on 127.0.0.1:0 and tells l to the first client. wait
// returns what the liar saw, once the client has hung up.
func Serve(t testing.TB, l Lie, files []File) (addr string, wait func() Saw) {
	t.Helper()
	ln := pkitest.Listen(t)
	done := make(chan Saw, 1)
	go func() {
		// Two sessions that sync, each perhaps followed by one that only
		// reports: a client whose transfer ended early reports on a
		// session of its own.
		var sessions []*Saw
		defer func() {
			var first Saw
			if len(sessions) == 0 {
				first.ServerErr = errors.New("no session")
			} else {
				first = *sessions[0]
			}
			if len(sessions) > 1 {
				first.Again = sessions[1]
				if sessions[1].ServerErr != nil && first.ServerErr == nil {
					first.ServerErr = fmt.Errorf("second session: %w", sessions[1].ServerErr)
				}
			}
			done <- first
		}()
		for len(sessions) < 2 || sessions[len(sessions)-1].Report == nil {
			nc, err := ln.Accept()
			if err != nil {
				if len(sessions) == 0 {
					sessions = append(sessions, &Saw{ServerErr: err})
				}
				return
			}
			var saw Saw
			nc.SetDeadline(time.Now().Add(30 * time.Second))
			saw.ServerErr = tellLie(nc, l, files, &saw)
			nc.Close()
			if saw.reportOnly && len(sessions) > 0 && sessions[len(sessions)-1].Report == nil {
				sessions[len(sessions)-1].Report = saw.Report
				continue
			}
			sessions = append(sessions, &saw)
		}
	}()
	return ln.Addr().String(), func() Saw {
		// The sync is over: no session is to come.
		ln.Close()
		select {
		case saw := <-done:
			return saw
		case <-time.After(30 * time.Second):
			t.Fatal("the hostile server's session did not end")
			return Saw{}
		}
	}
}

func tellLie(nc net.Conn, l Lie, files []File, saw *Saw) error {
	r, w := syncproto.NewReader(nc), syncproto.NewWriter(nc)
	if _, err := r.Expect(syncproto.MsgHello); err != nil {
		return fmt.Errorf("waiting for Hello: %w", err)
	}
	w.Write(syncproto.Welcome{ServerBuild: Build, Compatible: true, UpdatesEnabled: true})
	if err := w.Flush(); err != nil {
		return err
	}
	m, err := r.Read()
	if err != nil {
		return fmt.Errorf("waiting for GetManifest: %w", err)
	}
	if rep, ok := m.(syncproto.Report); ok {
		saw.Report, saw.reportOnly = &rep, true
		w.Write(syncproto.ReportAck{})
		return w.Flush()
	}
	if m.Type() != syncproto.MsgGetManifest {
		return fmt.Errorf("got %v instead of GetManifest: %w", m.Type(), syncproto.ErrUnexpected)
	}
	sketch := m.(syncproto.GetManifest).Flags&syncproto.GetSketch != 0
	saw.PatchesAsked = m.(syncproto.GetManifest).Flags&syncproto.GetPatches != 0
	saw.ZAsked = m.(syncproto.GetManifest).Flags&syncproto.GetZManifest != 0
	patches, offers := makePatches(l, files)
	entries := Entries(files)
	if l.Entries != nil {
		entries = l.Entries(entries)
	}
	h := syncproto.ManifestHeader{Build: Build, Count: uint32(len(entries))}
	for _, e := range entries {
		h.TotalBytes += e.Size
	}
	if l.Header != nil {
		l.Header(&h)
	}
	if l.Release != nil {
		w.Write(syncproto.Release{Meta: l.Release})
	}
	w.Write(h)
	var sums []uint64
	if sketch {
		// A client that keeps a manifest names it; unless the lie is
		// about that, the liar sends every entry whole all the same,
		// then the digest.
		if err := w.Flush(); err != nil {
			return err
		}
		for more := true; more; {
			m, err := r.Expect(syncproto.MsgSketch)
			if err != nil {
				return fmt.Errorf("waiting for the sketch: %w", err)
			}
			more = m.(syncproto.Sketch).More
			sums = append(sums, m.(syncproto.Sketch).Sums...)
		}
	}
	// The frames after the header go to ew: w itself, or for a client
	// that asked for them compressed, a buffer compressed at the end.
	ew, plain := w, &bytes.Buffer{}
	if saw.ZAsked {
		ew = syncproto.NewWriter(plain)
	}
	if l.BySketch != nil {
		l.BySketch(ew, h, entries, sums)
	} else {
		d := syncproto.NewDigester(h)
		for _, e := range entries {
			d.Add(e)
			if err := ew.Write(e); err != nil {
				return err
			}
		}
		if l.Among != nil {
			ew.Write(l.Among)
		}
		if sketch {
			ew.Write(syncproto.ManifestEnd{Digest: d.Sum()})
		}
	}
	if saw.ZAsked {
		if err := ew.Flush(); err != nil {
			return err
		}
		zs := Cut(Compress(plain.Bytes()))
		if l.Z != nil {
			zs = l.Z(plain.Bytes())
		}
		for _, z := range zs {
			w.Write(z)
		}
	}
	if saw.PatchesAsked && !l.HangUp {
		sendOffers(w, l, offers)
	}
	if err := w.Flush(); err != nil || l.HangUp {
		return err
	}
	return answerRequests(nc, r, w, l, files, patches, saw)
}

// Compress returns b as one zstd stream, as a server compresses a
// manifest (syncproto.NewZEncoder).
func Compress(b []byte) []byte {
	enc, err := syncproto.NewZEncoder(zstd.SpeedDefault)
	if err != nil {
		panic(err) // fixed options
	}
	defer enc.Close()
	var out bytes.Buffer
	enc.Reset(&out)
	enc.Write(b)
	enc.Close()
	return out.Bytes()
}

// Cut cuts stream into ManifestZ frames of at most MaxChunk bytes, all
// but the last with More.
func Cut(stream []byte) []syncproto.ManifestZ {
	var zs []syncproto.ManifestZ
	for len(stream) > syncproto.MaxChunk {
		zs = append(zs, syncproto.ManifestZ{More: true, Data: stream[:syncproto.MaxChunk]})
		stream = stream[syncproto.MaxChunk:]
	}
	return append(zs, syncproto.ManifestZ{Data: stream})
}

// makePatches makes the patches of l and their honest offers, sorted as
// a server sorts them.
func makePatches(l Lie, files []File) (map[patchKey][]byte, []syncproto.PatchRef) {
	patches := map[patchKey][]byte{}
	var offers []syncproto.PatchRef
	for _, p := range l.Patches {
		k := patchKey{uint32(p.Index), blake3.Sum256(p.Base)}
		patches[k] = MakePatch(p.Base, files[p.Index].Content)
		offers = append(offers, syncproto.PatchRef{Index: k.index, Base: k.base, Size: uint64(len(patches[k]))})
	}
	slices.SortFunc(offers, func(a, b syncproto.PatchRef) int {
		if a.Index != b.Index {
			return cmp.Compare(a.Index, b.Index)
		}
		return bytes.Compare(a.Base[:], b.Base[:])
	})
	return patches, offers
}

// sendOffers sends the offers after the manifest: as l.Offers makes
// them of the honest ones, or honestly.
func sendOffers(w *syncproto.Writer, l Lie, honest []syncproto.PatchRef) {
	if l.Offers != nil {
		for _, o := range l.Offers(honest) {
			w.Write(o)
		}
		return
	}
	for {
		n := min(len(honest), syncproto.MaxPatchOffers)
		o := syncproto.PatchOffer{More: n < len(honest), Offers: honest[:n]}
		w.Write(o)
		honest = honest[n:]
		if !o.More {
			return
		}
	}
}

// answerRequests reads the client's answer to the manifest, requests or a
// report when it gives up before downloading, or nothing when it hangs
// up, and tells the rest of the lie.
func answerRequests(nc net.Conn, r *syncproto.Reader, w *syncproto.Writer, l Lie, files []File, patches map[patchKey][]byte, saw *Saw) error {
	saw.Deltas = map[uint32]*syncproto.DeltaRequest{}
	saw.Blocks = map[uint32]*syncproto.BlockRequest{}
	saw.Patches = map[uint32]*syncproto.PatchRequest{}
	var open *syncproto.DeltaRequest // a DeltaRequest with DeltaMore
	for !saw.AskedEnd {
		m, err := r.Read()
		if err != nil {
			return nil
		}
		if d, ok := m.(syncproto.DeltaRequest); ok && open != nil {
			if d.Index != open.Index || d.Bits != open.Bits {
				return fmt.Errorf("client interrupted the delta request for %d with one for %d", open.Index, d.Index)
			}
			open.Chunks = append(open.Chunks, d.Chunks...)
			if d.Flags&syncproto.DeltaMore == 0 {
				open = nil
			}
			continue
		}
		if open != nil {
			return fmt.Errorf("client sent %v inside the delta request for %d", m.Type(), open.Index)
		}
		switch m := m.(type) {
		case syncproto.Request:
			saw.Asked = append(saw.Asked, m.Indices...)
		case syncproto.DeltaRequest:
			if saw.Deltas[m.Index] != nil {
				return fmt.Errorf("client asked for %d twice", m.Index)
			}
			saw.Asked = append(saw.Asked, m.Index)
			saw.Deltas[m.Index] = &m
			if m.Flags&syncproto.DeltaMore != 0 {
				open = &m
			}
		case syncproto.PatchRequest:
			if saw.Deltas[m.Index] != nil || saw.Blocks[m.Index] != nil || saw.Patches[m.Index] != nil {
				return fmt.Errorf("client asked for %d twice", m.Index)
			}
			if patches[patchKey{m.Index, m.Base}] == nil {
				// A real server refuses it (CodeBadRequest).
				return fmt.Errorf("client asked for %d as a patch from %x, which was not offered", m.Index, m.Base)
			}
			saw.Asked = append(saw.Asked, m.Index)
			saw.Patches[m.Index] = &m
		case syncproto.BlockRequest:
			if saw.Deltas[m.Index] != nil || saw.Blocks[m.Index] != nil || saw.Patches[m.Index] != nil {
				return fmt.Errorf("client asked for %d twice", m.Index)
			}
			saw.Asked = append(saw.Asked, m.Index)
			saw.Blocks[m.Index] = &m
		case syncproto.RequestEnd:
			saw.AskedEnd = true
		case syncproto.Report:
			saw.Report = &m
			w.Write(syncproto.ReportAck{})
			w.Flush()
			return nil
		default:
			return fmt.Errorf("client sent %v", m.Type())
		}
	}
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		return err
	}
	defer enc.Close()
	s := &Stream{Conn: nc, W: w, Files: files, enc: enc, Saw: saw, patches: patches}
	if l.Send != nil {
		l.Send(s)
	} else {
		for _, i := range saw.Asked {
			s.Honest(int(i))
		}
	}
	w.Flush()
	// The client's last word, as a real server takes it.
	for {
		m, err := r.Read()
		if err != nil {
			return nil
		}
		if rep, ok := m.(syncproto.Report); ok {
			saw.Report = &rep
			w.Write(syncproto.ReportAck{})
			w.Flush()
		}
	}
}

// Bad returns an Entries function that adds es to the honest manifest.
func Bad(es ...syncproto.ManifestEntry) func([]syncproto.ManifestEntry) []syncproto.ManifestEntry {
	return func(honest []syncproto.ManifestEntry) []syncproto.ManifestEntry {
		return append(honest, es...)
	}
}

// Entry is a manifest entry of one byte with mode 0o644, for a lie about
// its path.
func Entry(p string) syncproto.ManifestEntry {
	return syncproto.ManifestEntry{Path: p, Size: 1, MtimeNs: Mtime, Mode: 0o644, Hash: blake3.Sum256([]byte("x"))}
}
