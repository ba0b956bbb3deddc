package smartclient_test

// Hostile-server tests: a server that speaks the real protocol over real
// TCP, with lies built in, and an install folder that must come out of
// every lie byte for byte as it went in, with nothing written beside it.
// In the manner of go-tuf's attack tests, each case asserts the specific
// error the client gives, not merely that it failed.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/cdc"
	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"
)

const liarBuild = "7.00.240501A"

// liarMtime is the release's modification time, older than the test.
var liarMtime = time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC).UnixNano()

// oldMtime is the old install's modification time.
var oldMtime = time.Date(2023, 11, 1, 8, 0, 0, 0, time.UTC)

// releaseFile is one file of a release.
type releaseFile struct {
	path    string
	mode    uint32
	content []byte
	mtime   time.Time // zero: liarMtime
}

// liarRelease is the release the liar serves when it tells the truth:
// one file that replaces a file of the old install, a new one of several
// chunks, a small last one, and one the old install already has as it
// is, which the client does not ask for.
func liarRelease() []releaseFile {
	big := make([]byte, 300<<10)
	rand.NewChaCha8([32]byte{7}).Read(big)
	return []releaseFile{
		{path: "app.bin", mode: 0o755, content: []byte("the new application binary")},
		{path: "lib/libnew.so", mode: 0o644, content: big},
		{path: "data/last.dat", mode: 0o644, content: []byte("the last file of the release")},
		{path: "readme.txt", mode: 0o644, content: []byte("read me"), mtime: oldMtime},
	}
}

// oldRelease is what the install folder holds before each lie.
func oldRelease() []releaseFile {
	return []releaseFile{
		{path: "app.bin", mode: 0o755, content: []byte("the old application binary")},
		{path: "lib/libold.so", mode: 0o644, content: []byte("an old library")},
		{path: "readme.txt", mode: 0o644, content: []byte("read me")},
		{path: "smartclient.ini", mode: 0o644, content: []byte("[TCP]\nServer=erp\nPort=1234\n")},
	}
}

func releaseEntries(files []releaseFile) []syncproto.ManifestEntry {
	es := make([]syncproto.ManifestEntry, len(files))
	for i, f := range files {
		mt := liarMtime
		if !f.mtime.IsZero() {
			mt = f.mtime.UnixNano()
		}
		es[i] = syncproto.ManifestEntry{Path: f.path, Size: uint64(len(f.content)), MtimeNs: mt, Mode: f.mode, Hash: blake3.Sum256(f.content)}
	}
	return es
}

// lie scripts one hostile session. The zero lie is an honest server.
type lie struct {
	name string
	// entries turns the honest manifest into the lie; nil sends it as is.
	entries func([]syncproto.ManifestEntry) []syncproto.ManifestEntry
	// header changes the header computed from the entries.
	header func(*syncproto.ManifestHeader)
	// among is sent after the entries, as if it were one.
	among syncproto.Message
	// hangUp closes the connection right after the manifest.
	hangUp bool
	// bySketch, when set, sends the entries after the header instead of
	// the liar, with the client's sketch if it sent one (nil otherwise).
	bySketch func(w *syncproto.Writer, h syncproto.ManifestHeader, entries []syncproto.ManifestEntry, sketch []uint64)
	// dropsKept: the lie makes the client drop the manifest it keeps.
	dropsKept bool
	// send answers the client's requests; nil sends what it asked for,
	// honestly.
	send func(s *liarStream)
	want error
	// orWant is another error that will do, when two parts of the
	// client may rightly find the lie.
	orWant error
	// wantMsg are pieces of the error's text: the entry it names, the
	// reason.
	wantMsg []string
	// bug, when set, describes a bug of the client that the lie shows:
	// the test is skipped until it is fixed.
	bug string
}

// liarSaw is what the liar saw the client do.
type liarSaw struct {
	asked    []uint32 // indices requested, whole or as deltas
	askedEnd bool     // RequestEnd received: the client went on to download
	// deltas are the DeltaRequests among asked, by index, each with the
	// chunks of all its frames.
	deltas map[uint32]*syncproto.DeltaRequest
	// blocks are the BlockRequests among asked, by index.
	blocks map[uint32]*syncproto.BlockRequest
	copied int64 // bytes the honest liar sent as FileCopy
	report *syncproto.Report
	// reportOnly marks a session that only reported (see serveLie).
	reportOnly bool
	serverErr  error // the client broke the protocol before the lie was told
	// again is what the liar saw in a second session, when the client
	// came back (it does, once, after a file built from block sums
	// failed its check), telling the same lie.
	again *liarSaw
}

// liarStream is the liar's side of the file transfer.
type liarStream struct {
	nc    net.Conn
	w     *syncproto.Writer
	files []releaseFile
	enc   *zstd.Encoder
	saw   *liarSaw
}

// msg sends m. Write errors are ignored here and below: a client that
// hangs up in the middle of a lie is what the tests want.
func (s *liarStream) msg(m syncproto.Message) { s.w.Write(m) }

// data sends b in chunks of at most MaxChunk bytes, zstd-compressed
// where that pays, as a real server sends them.
func (s *liarStream) data(b []byte) {
	for len(b) > 0 {
		n := min(len(b), syncproto.MaxChunk)
		s.w.WriteChunk(s.enc, b[:n])
		b = b[n:]
	}
}

// file sends file i honestly. An index past the release is one of the
// lies' added entries, whose content is "x" (see entry): a client that
// wrongly accepts one gets it, and the test, not the liar, says so.
func (s *liarStream) file(i int) {
	f := releaseFile{content: []byte("x")}
	if i < len(s.files) {
		f = s.files[i]
	}
	s.msg(syncproto.FileStart{Index: uint32(i), Size: uint64(len(f.content))})
	s.data(f.content)
	s.msg(syncproto.FileEnd{Hash: blake3.Sum256(f.content)})
}

// honest sends file i as it was asked for: whole, or as a delta.
func (s *liarStream) honest(i int) {
	if s.saw.deltas[uint32(i)] != nil || s.saw.blocks[uint32(i)] != nil {
		s.delta(i)
	} else {
		s.file(i)
	}
}

// delta sends file i honestly as the client asked for it with a
// DeltaRequest, as a real server does: its chunk list if asked for, then
// copies of the chunks the base has, merged where they follow each other
// in the base, and data for the rest.
func (s *liarStream) delta(i int) {
	if s.saw.blocks[uint32(i)] != nil {
		s.blockDelta(i)
		return
	}
	d := s.saw.deltas[uint32(i)]
	f := s.files[i]
	s.msg(syncproto.FileStart{Index: uint32(i), Size: uint64(len(f.content))})
	if d.Flags&syncproto.DeltaWantList != 0 {
		s.list(d.Bits, liarRefs(cutChunks(f.content, d.Bits)), syncproto.MaxChunkRefs, false)
	}
	s.assemble(f.content, d.Bits, d.Chunks)
	s.msg(syncproto.FileEnd{Hash: blake3.Sum256(f.content)})
}

// blockDelta sends file i honestly as the client asked for it with a
// BlockRequest, more simply than a real server: a block of the new file
// at the place of the base's block with the same sums is sent as a copy
// of it, everything else as data.
func (s *liarStream) blockDelta(i int) {
	r := s.saw.blocks[uint32(i)]
	content := s.files[i].content
	s.msg(syncproto.FileStart{Index: uint32(i), Size: uint64(len(content))})
	bs := int(r.BlockSize)
	for k := 0; k*bs < len(content); k++ {
		b := content[k*bs : min(k*bs+bs, len(content))]
		if k < len(r.Sums) && r.Sums[k] == (syncproto.BlockSum{Weak: cdc.WeakSum(b).Weak(), Strong: cdc.StrongSum(b)}) &&
			uint64(k*bs+len(b)) <= r.BaseSize {
			s.msg(syncproto.FileCopy{Off: uint64(k * bs), Len: uint32(len(b))})
			s.saw.copied += int64(len(b))
			continue
		}
		s.data(b)
	}
	s.msg(syncproto.FileEnd{Hash: blake3.Sum256(content)})
}

// assemble sends content, cut with bits, as copies of the chunks of
// base and data for the rest.
func (s *liarStream) assemble(content []byte, bits uint8, base []syncproto.ChunkRef) {
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
			s.msg(cp)
			s.saw.copied += int64(cp.Len)
		}
		cp = syncproto.FileCopy{}
	}
	for _, c := range cutChunks(content, bits) {
		o, ok := at[syncproto.ChunkRef{Len: c.Len, Hash: c.Hash}]
		switch {
		case ok && cp.Len > 0 && cp.Off+uint64(cp.Len) == o:
			cp.Len += c.Len
		case ok:
			flush()
			cp = syncproto.FileCopy{Off: o, Len: c.Len}
		default:
			flush()
			s.data(content[c.Off : c.Off+int64(c.Len)])
		}
	}
	flush()
}

// list sends refs as a chunk list cut with bits, perFrame references a
// frame; more sets More on the last frame too.
func (s *liarStream) list(bits uint8, refs []syncproto.ChunkRef, perFrame int, more bool) {
	for k := 0; k == 0 || k < len(refs); k += perFrame {
		s.msg(syncproto.ChunkList{Bits: bits, More: more || k+perFrame < len(refs), Chunks: refs[k:min(k+perFrame, len(refs))]})
	}
}

// cutChunks returns the content-defined chunks of b, cut with bits.
func cutChunks(b []byte, bits uint8) []cdc.Chunk {
	chunks, err := cdc.Split(bytes.NewReader(b), bits)
	if err != nil {
		panic(err) // a bytes.Reader does not fail
	}
	return chunks
}

// liarRefs names chunks as the protocol does.
func liarRefs(chunks []cdc.Chunk) []syncproto.ChunkRef {
	refs := make([]syncproto.ChunkRef, len(chunks))
	for i, c := range chunks {
		refs[i] = syncproto.ChunkRef{Len: c.Len, Hash: c.Hash}
	}
	return refs
}

// raw sends bytes that need not be a valid frame.
func (s *liarStream) raw(b []byte) {
	s.w.Flush()
	s.nc.Write(b)
}

// frameHeader is a frame header with any type and length.
func frameHeader(t syncproto.MsgType, n uint32) []byte {
	b := []byte{syncproto.Magic[0], syncproto.Magic[1], syncproto.Version, byte(t), 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[4:], n)
	return b
}

// serveLie listens on 127.0.0.1:0 and tells l to the first client. wait
// returns what the liar saw, once the client has hung up.
func serveLie(t *testing.T, l lie, files []releaseFile) (addr string, wait func() liarSaw) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan liarSaw, 1)
	go func() {
		// Two sessions that sync, each perhaps followed by one that only
		// reports: a client whose transfer ended early reports on a
		// session of its own.
		var sessions []*liarSaw
		defer func() {
			var first liarSaw
			if len(sessions) == 0 {
				first.serverErr = errors.New("no session")
			} else {
				first = *sessions[0]
			}
			if len(sessions) > 1 {
				first.again = sessions[1]
				if sessions[1].serverErr != nil && first.serverErr == nil {
					first.serverErr = fmt.Errorf("second session: %w", sessions[1].serverErr)
				}
			}
			done <- first
		}()
		for len(sessions) < 2 || sessions[len(sessions)-1].report == nil {
			nc, err := ln.Accept()
			if err != nil {
				if len(sessions) == 0 {
					sessions = append(sessions, &liarSaw{serverErr: err})
				}
				return
			}
			var saw liarSaw
			nc.SetDeadline(time.Now().Add(30 * time.Second))
			saw.serverErr = tellLie(nc, l, files, &saw)
			nc.Close()
			if saw.reportOnly && len(sessions) > 0 && sessions[len(sessions)-1].report == nil {
				sessions[len(sessions)-1].report = saw.report
				continue
			}
			sessions = append(sessions, &saw)
		}
	}()
	return ln.Addr().String(), func() liarSaw {
		// The sync is over: no session is to come.
		ln.Close()
		select {
		case saw := <-done:
			return saw
		case <-time.After(30 * time.Second):
			t.Fatal("the hostile server's session did not end")
			return liarSaw{}
		}
	}
}

func tellLie(nc net.Conn, l lie, files []releaseFile, saw *liarSaw) error {
	r, w := syncproto.NewReader(nc), syncproto.NewWriter(nc)
	if _, err := r.Expect(syncproto.MsgHello); err != nil {
		return fmt.Errorf("waiting for Hello: %w", err)
	}
	w.Write(syncproto.Welcome{ServerBuild: liarBuild, Compatible: true, UpdatesEnabled: true})
	if err := w.Flush(); err != nil {
		return err
	}
	m, err := r.Read()
	if err != nil {
		return fmt.Errorf("waiting for GetManifest: %w", err)
	}
	if rep, ok := m.(syncproto.Report); ok {
		saw.report, saw.reportOnly = &rep, true
		w.Write(syncproto.ReportAck{})
		return w.Flush()
	}
	if m.Type() != syncproto.MsgGetManifest {
		return fmt.Errorf("got %v instead of GetManifest: %w", m.Type(), syncproto.ErrUnexpected)
	}
	sketch := m.(syncproto.GetManifest).Flags&syncproto.GetSketch != 0
	entries := releaseEntries(files)
	if l.entries != nil {
		entries = l.entries(entries)
	}
	h := syncproto.ManifestHeader{Build: liarBuild, Count: uint32(len(entries))}
	for _, e := range entries {
		h.TotalBytes += e.Size
	}
	if l.header != nil {
		l.header(&h)
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
	if l.bySketch != nil {
		l.bySketch(w, h, entries, sums)
		if err := w.Flush(); err != nil || l.hangUp {
			return err
		}
		return answerRequests(nc, r, w, l, files, saw)
	}
	d := syncproto.NewDigester(h)
	for _, e := range entries {
		d.Add(e)
		if err := w.Write(e); err != nil {
			return err
		}
	}
	if l.among != nil {
		w.Write(l.among)
	}
	if sketch {
		w.Write(syncproto.ManifestEnd{Digest: d.Sum()})
	}
	if err := w.Flush(); err != nil || l.hangUp {
		return err
	}
	return answerRequests(nc, r, w, l, files, saw)
}

// answerRequests reads the client's answer to the manifest, requests or a
// report when it gives up before downloading, or nothing when it hangs
// up, and tells the rest of the lie.
func answerRequests(nc net.Conn, r *syncproto.Reader, w *syncproto.Writer, l lie, files []releaseFile, saw *liarSaw) error {
	saw.deltas = map[uint32]*syncproto.DeltaRequest{}
	saw.blocks = map[uint32]*syncproto.BlockRequest{}
	var open *syncproto.DeltaRequest // a DeltaRequest with DeltaMore
	for !saw.askedEnd {
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
			saw.asked = append(saw.asked, m.Indices...)
		case syncproto.DeltaRequest:
			if saw.deltas[m.Index] != nil {
				return fmt.Errorf("client asked for %d twice", m.Index)
			}
			saw.asked = append(saw.asked, m.Index)
			saw.deltas[m.Index] = &m
			if m.Flags&syncproto.DeltaMore != 0 {
				open = &m
			}
		case syncproto.BlockRequest:
			if saw.deltas[m.Index] != nil || saw.blocks[m.Index] != nil {
				return fmt.Errorf("client asked for %d twice", m.Index)
			}
			saw.asked = append(saw.asked, m.Index)
			saw.blocks[m.Index] = &m
		case syncproto.RequestEnd:
			saw.askedEnd = true
		case syncproto.Report:
			saw.report = &m
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
	s := &liarStream{nc: nc, w: w, files: files, enc: enc, saw: saw}
	if l.send != nil {
		l.send(s)
	} else {
		for _, i := range saw.asked {
			s.honest(int(i))
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
			saw.report = &rep
			w.Write(syncproto.ReportAck{})
			w.Flush()
		}
	}
}

// scene is an install folder before a sync and the release the liar
// serves when it tells the truth.
type scene struct {
	old, release func() []releaseFile
	// kept: the install keeps the manifest of old, as the client keeps
	// the last one it received.
	kept bool
}

// classic is the scene of most lies: the files of the new release are
// small or new, so that each is asked for whole.
var classic = scene{old: oldRelease, release: liarRelease}

// oldInstall fills dir with an installed release: what every lie must
// leave as it is. The .smartclient folder is there, as after any earlier
// sync, but without a state file: a failed sync records its outcome there.
func oldInstall(t *testing.T, dir string, old []releaseFile) {
	t.Helper()
	for _, f := range old {
		p := filepath.Join(dir, filepath.FromSlash(f.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.content, fs.FileMode(f.mode)); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, oldMtime, oldMtime); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, ".smartclient"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// wholeTree describes everything under dir, the client's bookkeeping
// included: type, permissions, size, modification time and content hash
// of every file, type and permissions of every folder.
func wholeTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			m[filepath.ToSlash(rel)] = "folder " + fi.Mode().String()
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			m[filepath.ToSlash(rel)] = fmt.Sprintf("file %v %d %d %x", fi.Mode(), fi.Size(), fi.ModTime().UnixNano(), sha256.Sum256(data))
		default:
			target, _ := os.Readlink(p)
			m[filepath.ToSlash(rel)] = fmt.Sprintf("%v %s", fi.Mode(), target)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// hostileRun runs one sync against l in the classic scene; see
// hostileRunIn.
func hostileRun(t *testing.T, l lie) (liarSaw, string) {
	t.Helper()
	return hostileRunIn(t, l, classic)
}

// hostileRunIn runs one sync against l and checks what must hold whatever
// the lie: the error is the one wanted, the install folder is byte for
// byte what it was, and nothing appeared beside it. It returns what the
// liar saw and the install folder.
func hostileRunIn(t *testing.T, l lie, sc scene) (liarSaw, string) {
	t.Helper()
	parent := t.TempDir()
	dir := filepath.Join(parent, "install")
	oldInstall(t, dir, sc.old())
	if sc.kept {
		keepManifest(t, dir, sc.old())
	}
	before := wholeTree(t, dir)
	release := sc.release()
	addr, wait := serveLie(t, l, release)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := smartclient.Sync(ctx, smartclient.Options{Dir: dir, Server: addr, OS: "linux", Yes: true, Timeout: 5 * time.Second})
	saw := wait()
	if saw.serverErr != nil {
		t.Errorf("hostile server: %v", saw.serverErr)
	}
	switch {
	case l.want == nil && err != nil:
		t.Errorf("sync failed: %v", err)
	case l.want != nil && !errors.Is(err, l.want) && (l.orWant == nil || !errors.Is(err, l.orWant)):
		t.Errorf("got %v; want %v", err, l.want)
	}
	for _, s := range l.wantMsg {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("error %v does not say %s", err, s)
		}
	}
	if l.want != nil {
		after := wholeTree(t, dir)
		all := maps.Clone(before)
		maps.Copy(all, after)
		for _, k := range slices.Sorted(maps.Keys(all)) {
			// Files received whole and verified before the lie are kept
			// aside for the next sync, which checks them again against
			// its own manifest (TestResetMidTransferLeavesInstallUnchanged); they are not in
			// the install.
			if k == ".smartclient/resume" || strings.HasPrefix(k, ".smartclient/resume/") {
				continue
			}
			// So is the chunk list of a file received and verified
			// before the lie, a cache for the next delta; but only
			// the true list of a file of the release.
			if k == ".smartclient/chunks" || strings.HasPrefix(k, ".smartclient/chunks/") && trueList(t, dir, k, release) {
				continue
			}
			// The kept manifest, when the lie made a wrong one of it,
			// is dropped.
			if k == ".smartclient/manifest.cache" && l.dropsKept && after[k] == "" {
				continue
			}
			if before[k] != after[k] {
				t.Errorf("install changed: %s: was %q, is %q", k, before[k], after[k])
			}
		}
	}
	entries, rerr := os.ReadDir(parent)
	if rerr != nil || len(entries) != 1 || entries[0].Name() != "install" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("beside the install folder: %v, %v; want only install", names, rerr)
	}
	return saw, dir
}

// trueList reports whether the file k of dir, under .smartclient/chunks,
// is named for a file of the release and holds its chunk list, cut with
// the bits of its name.
func trueList(t *testing.T, dir, k string, release []releaseFile) bool {
	t.Helper()
	hash, bits, ok := strings.Cut(path.Base(k), "-")
	b, err := strconv.ParseUint(bits, 10, 8)
	if !ok || err != nil {
		return false
	}
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(k)))
	if err != nil {
		return false
	}
	for _, f := range release {
		if fmt.Sprintf("%x", blake3.Sum256(f.content)) == hash {
			return bytes.Equal(data, cdc.AppendList(nil, uint8(b), cutChunks(f.content, uint8(b))))
		}
	}
	return false
}

// bad returns an entries function that adds e to the honest manifest.
func bad(es ...syncproto.ManifestEntry) func([]syncproto.ManifestEntry) []syncproto.ManifestEntry {
	return func(honest []syncproto.ManifestEntry) []syncproto.ManifestEntry {
		return append(honest, es...)
	}
}

// entry is a manifest entry of one byte with mode 0o644, for a lie about
// its path.
func entry(p string) syncproto.ManifestEntry {
	return syncproto.ManifestEntry{Path: p, Size: 1, MtimeNs: liarMtime, Mode: 0o644, Hash: blake3.Sum256([]byte("x"))}
}

func moded(mode fs.FileMode) syncproto.ManifestEntry {
	e := entry("bin/special")
	e.Mode = uint32(mode)
	return e
}

func TestHostileServerHonestControl(t *testing.T) {
	// The harness itself: the liar telling the truth installs the
	// release, so every refusal below is for the lie, not the harness.
	saw, dir := hostileRun(t, lie{name: "honest"})
	if !slices.Equal(saw.asked, []uint32{0, 1, 2}) || saw.report == nil || saw.report.Outcome != syncproto.OutcomeUpdated {
		t.Fatalf("asked %v, report %+v; want the three changed files and an update", saw.asked, saw.report)
	}
	for _, f := range liarRelease() {
		if got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.path))); err != nil || !bytes.Equal(got, f.content) {
			t.Errorf("%s: %.30q, %v; want the release's content", f.path, got, err)
		}
	}
}

// TestHostileManifestRefusedBeforeAnyDownload: every manifest lie is
// refused with ErrBadManifest naming the entry and the reason, before the
// client requests a single file.
func TestHostileManifestRefusedBeforeAnyDownload(t *testing.T) {
	var lies []lie
	for _, tc := range []struct{ name, path, why string }{
		{"absolute", "/etc/passwd", "absolute"},
		{"parent first", "../outside.txt", `".."`},
		{"parent inside", "lib/../../outside.txt", `".."`},
		{"drive letter", "C:/Windows/evil.dll", "drive letter"},
		{"drive-relative", "c:evil.dll", "drive letter"},
		{"UNC", `\\server\share\evil.dll`, "UNC"},
		{"UNC with slashes", "//server/share/evil.dll", "UNC"},
		{"long-path prefix", `\\?\C:\evil.dll`, "UNC"},
		{"device namespace", `\\.\PhysicalDrive0`, "UNC"},
		{"backslash", `lib\evil.dll`, "backslash"},
		{"backslash climbing out on Windows", `lib\..\..\evil.dll`, "backslash"},
		{"empty part", "lib//evil.dll", "empty part"},
		{"dot part", "lib/./evil.dll", `"."`},
		{"leading dot part", "./evil.dll", `"."`},
		{"trailing slash", "lib/", "empty part"},
		{"dot", ".", `"."`},
		{"empty", "", "empty path"},
		{"CON", "CON", "device CON"},
		{"NUL with extension", "NUL.txt", "device NUL"},
		{"com1 in a folder", "lib/com1.dll", "device COM1"},
		{"COM0", "com0", "device COM0"},
		{"LPT9", "Lpt9.log", "device LPT9"},
		{"PRN", "docs/prn", "device PRN"},
		{"AUX, two extensions", "aux.tar.gz", "device AUX"},
		{"COM superscript", "COM¹.txt", "device COM¹"},
		{"LPT superscript", "lpt³", "device LPT³"},
		{"device before a space", "NUL .txt", "device NUL"},
		{"CONIN$", "conin$", "device CONIN$"},
		{"trailing dot", "lib/evil.dll.", "dot or space"},
		{"trailing space", "evil.dll ", "dot or space"},
		{"trailing dot on a folder", "lib./x.so", "dot or space"},
		{"only dots", "...", "dot or space"},
		{"less than", "a<b", `'<'`},
		{"greater than", "a>b", `'>'`},
		{"colon (alternate data stream)", "app.bin:evil", `':'`},
		{"double quote", `a"b`, `'"'`},
		{"pipe", "a|b", `'|'`},
		{"question mark", "a?b", `'?'`},
		{"asterisk", "a*b", `'*'`},
		{"NUL byte", "a\x00b", "control character U+0000"},
		{"control character", "a\x01b", "control character U+0001"},
		{"newline", "a\nb", "control character U+000A"},
		{"unit separator", "a\x1fb", "control character U+001F"},
		{"DEL", "a\x7fb", "control character U+007F"},
		{"name over 255 bytes", "lib/" + strings.Repeat("a", 256), "limit 255"},
		{"UTF-8 name over 255 bytes", strings.Repeat("é", 128), "limit 255"},
		{"client state", ".smartclient/state.bin", "bookkeeping"},
		{"client journal, other case", ".SmartClient/journal.json", "bookkeeping"},
		{"client folder with a long s", ".ſmartclient/state.bin", "bookkeeping"},
		{"client folder behind an invisible character", ".smart\u200cclient/state.bin", "invisible"},
		{"client folder by its 8.3 name", "SMARTC~1/state.bin", "8.3"},
		{"backup folder", "bkp_remote.003/app.bin", "bookkeeping"},
		{"backup folder, other case", "BKP_REMOTE.001/x", "bookkeeping"},
		{"another file by its 8.3 name", "lib/LIBNEW~1.SO", "8.3"},
	} {
		lies = append(lies, lie{name: "path: " + tc.name, entries: bad(entry(tc.path)), want: smartclient.ErrBadManifest,
			wantMsg: []string{fmt.Sprintf("entry 4 %q", tc.path), tc.why}})
	}
	lies = append(lies,
		lie{name: "duplicate", entries: bad(entry("app.bin")), want: smartclient.ErrBadManifest,
			wantMsg: []string{`entries 0 and 4 are both "app.bin"`}},
		lie{name: "case-fold duplicate", entries: bad(entry("App.BIN")), want: smartclient.ErrBadManifest,
			wantMsg: []string{`entries 0 "app.bin" and 4 "App.BIN" are one file`}},
		lie{name: "case-fold duplicate ToLower misses (final sigma)", entries: bad(entry("λόγος.txt"), entry("ΛΌΓΟΣ.txt")), want: smartclient.ErrBadManifest,
			wantMsg: []string{`"λόγος.txt" and 5 "ΛΌΓΟΣ.txt" are one file`}},
		lie{name: "NFC and NFD duplicate", entries: bad(entry("café.txt"), entry("cafe\u0301.txt")), want: smartclient.ErrBadManifest,
			wantMsg: []string{fmt.Sprintf("%q and 5 %q are one file", "café.txt", "cafe\u0301.txt")}},
		lie{name: "NFC upper and NFD lower duplicate", entries: bad(entry("CAFÉ.txt"), entry("cafe\u0301.txt")), want: smartclient.ErrBadManifest,
			wantMsg: []string{"are one file"}},
		lie{name: "file below a file", entries: bad(entry("app.bin/evil")), want: smartclient.ErrBadManifest,
			wantMsg: []string{`entry 0 "app.bin" is a file, and entry 4 "app.bin/evil"`}},
		lie{name: "file above a file, other case", entries: bad(entry("LIB")), want: smartclient.ErrBadManifest,
			wantMsg: []string{`entry 4 "LIB" is a file, and entry 1 "lib/libnew.so"`}},
		lie{name: "file above a file, a neighbour between them", entries: bad(entry("lib"), entry("lib-x")), want: smartclient.ErrBadManifest,
			wantMsg: []string{`entry 4 "lib" is a file`}},
	)
	for _, tc := range []struct {
		name string
		mode fs.FileMode
		why  string
	}{
		{"folder", fs.ModeDir | 0o755, "a folder"},
		{"symbolic link", fs.ModeSymlink | 0o777, "a symbolic link"},
		{"named pipe", fs.ModeNamedPipe | 0o644, "a named pipe"},
		{"socket", fs.ModeSocket | 0o644, "a socket"},
		{"device", fs.ModeDevice | 0o644, "a device"},
		{"character device", fs.ModeDevice | fs.ModeCharDevice | 0o644, "a character device"},
		{"irregular", fs.ModeIrregular | 0o644, "an irregular file"},
		{"setuid", fs.ModeSetuid | 0o755, "setuid"},
		{"setgid", fs.ModeSetgid | 0o755, "setgid"},
		{"Unix setuid bit", 0o4755, "setuid"},
		{"sticky", fs.ModeSticky | 0o755, "other than the permissions"},
		{"raw st_mode", 0o100644, "other than the permissions"},
	} {
		lies = append(lies, lie{name: "mode: " + tc.name, entries: bad(moded(tc.mode)), want: smartclient.ErrBadManifest,
			wantMsg: []string{`entry 4 "bin/special"`, tc.why}})
	}
	huge := entry("huge.bin")
	huge.Size = 64<<30 + 1
	maxed := entry("maxed.bin")
	maxed.Size = 1<<64 - 1
	past := entry("past.bin")
	past.MtimeNs = -1
	lies = append(lies,
		lie{name: "size over the cap", entries: bad(huge), want: smartclient.ErrBadManifest,
			wantMsg: []string{`entry 4 "huge.bin"`, "declares 68719476737 bytes, over the limit"}},
		lie{name: "size of 2^64-1, that would overflow the total", entries: bad(maxed), want: smartclient.ErrBadManifest,
			wantMsg: []string{`entry 4 "maxed.bin"`, "over the limit"}},
		lie{name: "mtime before 1970", entries: bad(past), want: smartclient.ErrBadManifest,
			wantMsg: []string{`entry 4 "past.bin"`, "before 1970"}},
		lie{name: "total bytes more than the entries", header: func(h *syncproto.ManifestHeader) { h.TotalBytes++ },
			want: smartclient.ErrBadManifest, wantMsg: []string{"header says"}},
		lie{name: "total bytes less than the entries", header: func(h *syncproto.ManifestHeader) { h.TotalBytes = 1 },
			want: smartclient.ErrBadManifest, wantMsg: []string{"header says 1"}},
		// A count the entries do not reach, then silence: the
		// connection was lost, whatever the server meant.
		lie{name: "count larger than the entries sent, then hang up", header: func(h *syncproto.ManifestHeader) { h.Count += 2 },
			hangUp: true, want: io.EOF, wantMsg: []string{"reading manifest entry 4 of 6"}},
		lie{name: "count over the protocol's limit", header: func(h *syncproto.ManifestHeader) { h.Count = syncproto.MaxFiles + 1 },
			want: syncproto.ErrMalformed, wantMsg: []string{"limit 1048576"}},
		lie{name: "path not UTF-8", entries: bad(entry("a\xffb")), want: syncproto.ErrMalformed, wantMsg: []string{"not valid UTF-8"}},
		lie{name: "another message among the entries", header: func(h *syncproto.ManifestHeader) { h.Count++ },
			among: syncproto.FileStart{Index: 0, Size: 1}, want: syncproto.ErrUnexpected, wantMsg: []string{"expected ManifestEntry, got FileStart"}},
	)

	for _, l := range lies {
		t.Run(l.name, func(t *testing.T) {
			saw, _ := hostileRun(t, l)
			if len(saw.asked) > 0 || saw.askedEnd {
				t.Errorf("the client requested %v after a bad manifest", saw.asked)
			}
		})
	}
}

// TestHostileServerDeclaresMoreThanFreeSpace: a manifest of files each
// under the size cap that together do not fit on the disk is refused
// before a file is requested.
func TestHostileServerDeclaresMoreThanFreeSpace(t *testing.T) {
	const each = 60 << 30
	have, err := smartclient.FreeSpace(t.TempDir())
	if err != nil {
		t.Skipf("free space unknown here: %v", err)
	}
	n := int(have/each) + 1
	if n > 64 {
		t.Skipf("%d bytes free: a manifest that does not fit would need %d files of 60 GiB", have, n)
	}
	l := lie{
		entries: func(honest []syncproto.ManifestEntry) []syncproto.ManifestEntry {
			for i := range n {
				e := entry(fmt.Sprintf("data/part%03d.bin", i))
				e.Size = each
				honest = append(honest, e)
			}
			return honest
		},
		// Preflight finds it; checkFreeSpace says the same with
		// ErrNoSpace, whichever of the two Sync ends up calling.
		want: smartclient.ErrPreflight, orWant: smartclient.ErrNoSpace,
		wantMsg: []string{"not enough free space", "need "},
	}
	saw, _ := hostileRun(t, l)
	if len(saw.asked) > 0 || saw.askedEnd {
		t.Errorf("the client requested %v of a release that does not fit", saw.asked)
	}
}

// zstdBomb returns one zstd frame that decodes to n zero bytes. declared
// says whether the frame header states that size; window, when not 0,
// keeps the frame's window that small, so that a decoder cannot refuse
// it for its window and must count what it decodes.
func zstdBomb(t testing.TB, n int, declared bool, window int) []byte {
	t.Helper()
	zeros := make([]byte, n)
	var opts []zstd.EOption
	if window != 0 {
		opts = append(opts, zstd.WithWindowSize(window))
	}
	if declared {
		enc, err := zstd.NewWriter(nil, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer enc.Close()
		return enc.EncodeAll(zeros, nil)
	}
	var b bytes.Buffer
	enc, err := zstd.NewWriter(&b, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enc.Write(zeros); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	var h zstd.Header
	if err := h.Decode(b.Bytes()); err != nil || h.HasFCS {
		t.Fatalf("streamed zstd frame: header %+v, %v; want no content size", h, err)
	}
	return b.Bytes()
}

// streamLies are the lies told while files stream. Each is told after
// the client requested all three files of the release.
func streamLies(t testing.TB) []lie {
	files := liarRelease()
	app, lib, last := files[0].content, files[1].content, files[2].content
	bomb := zstdBomb(t, 64<<20, true, 0)
	bombSmallWindow := zstdBomb(t, 64<<20, true, 128<<10)
	bombNoSize := zstdBomb(t, 64<<20, false, 128<<10)
	var frames []byte
	small := zstdBomb(t, syncproto.MaxChunk, true, 0)
	for range 256 {
		frames = append(frames, small...) // 64 MiB in frames of 256 KiB
	}
	if len(frames) > syncproto.MaxChunk {
		t.Fatalf("the multi-frame bomb is %d bytes, over a chunk", len(frames))
	}
	return []lie{
		{name: "one chunk longer than the file", want: smartclient.ErrVerify, wantMsg: []string{"app.bin", "more bytes than the 26 declared"},
			send: func(s *liarStream) {
				s.msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.data(append(slices.Clip(app), "and more"...))
				s.msg(syncproto.FileEnd{Hash: blake3.Sum256(app)})
			}},
		{name: "an extra chunk after the declared bytes", want: syncproto.ErrUnexpected, wantMsg: []string{"app.bin", "expected FileEnd, got FileData"},
			send: func(s *liarStream) {
				s.msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.data(app)
				s.data([]byte("extra"))
				s.msg(syncproto.FileEnd{Hash: blake3.Sum256(app)})
			}},
		{name: "fewer bytes, then FileEnd", want: syncproto.ErrUnexpected, wantMsg: []string{"lib/libnew.so", "expected FileData or FileCopy, got FileEnd"},
			send: func(s *liarStream) {
				s.file(0)
				s.msg(syncproto.FileStart{Index: 1, Size: uint64(len(lib))})
				s.data(lib[:len(lib)-1])
				s.msg(syncproto.FileEnd{Hash: blake3.Sum256(lib)})
			}},
		{name: "hash mismatch on the last of three files", want: smartclient.ErrVerify, wantMsg: []string{"data/last.dat", "BLAKE3"},
			send: func(s *liarStream) {
				s.file(0)
				s.file(1)
				forged := bytes.ToUpper(last) // same size, other content
				s.msg(syncproto.FileStart{Index: 2, Size: uint64(len(forged))})
				s.data(forged)
				s.msg(syncproto.FileEnd{Hash: blake3.Sum256(last)}) // and a lie about it
			}},
		{name: "right content, FileEnd with another hash", want: smartclient.ErrVerify, wantMsg: []string{"data/last.dat"},
			send: func(s *liarStream) {
				s.file(0)
				s.file(1)
				s.msg(syncproto.FileStart{Index: 2, Size: uint64(len(last))})
				s.data(last)
				s.msg(syncproto.FileEnd{Hash: blake3.Sum256([]byte("other"))})
			}},
		{name: "zstd bomb: 64 MiB declared as RawLen 1000", want: syncproto.ErrMalformed, wantMsg: []string{"lib/libnew.so", "decoding chunk"},
			send: func(s *liarStream) {
				s.file(0)
				s.msg(syncproto.FileStart{Index: 1, Size: uint64(len(lib))})
				s.msg(syncproto.FileData{Encoding: syncproto.EncodingZstd, RawLen: 1000, Data: bomb})
			}},
		{name: "zstd bomb in a small window", want: syncproto.ErrMalformed, wantMsg: []string{"lib/libnew.so", "decoding chunk"},
			send: func(s *liarStream) {
				s.file(0)
				s.msg(syncproto.FileStart{Index: 1, Size: uint64(len(lib))})
				s.msg(syncproto.FileData{Encoding: syncproto.EncodingZstd, RawLen: 1000, Data: bombSmallWindow})
			}},
		{name: "zstd bomb in a small window, without a content size", want: syncproto.ErrMalformed, wantMsg: []string{"lib/libnew.so", "decoding chunk"},
			send: func(s *liarStream) {
				s.file(0)
				s.msg(syncproto.FileStart{Index: 1, Size: uint64(len(lib))})
				s.msg(syncproto.FileData{Encoding: syncproto.EncodingZstd, RawLen: 1000, Data: bombNoSize})
			}},
		{name: "zstd bomb of 256 frames in one chunk", want: syncproto.ErrMalformed, wantMsg: []string{"lib/libnew.so", "decoding chunk"},
			send: func(s *liarStream) {
				s.file(0)
				s.msg(syncproto.FileStart{Index: 1, Size: uint64(len(lib))})
				s.msg(syncproto.FileData{Encoding: syncproto.EncodingZstd, RawLen: 1000, Data: frames})
			}},
		{name: "zstd chunk decoding to less than its RawLen", want: syncproto.ErrMalformed, wantMsg: []string{"app.bin", "decodes to 5"},
			send: func(s *liarStream) {
				s.msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.msg(syncproto.FileData{Encoding: syncproto.EncodingZstd, RawLen: uint32(len(app)), Data: zstdBomb(t, 5, true, 0)})
			}},
		{name: "zstd chunk of garbage", want: syncproto.ErrMalformed, wantMsg: []string{"app.bin"},
			send: func(s *liarStream) {
				s.msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.msg(syncproto.FileData{Encoding: syncproto.EncodingZstd, RawLen: uint32(len(app)), Data: []byte("not zstd at all, not at all")})
			}},
		{name: "FileData frame of zero length", want: syncproto.ErrMalformed, wantMsg: []string{"app.bin", "decoding FileData"},
			send: func(s *liarStream) {
				s.msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.raw(frameHeader(syncproto.MsgFileData, 0))
			}},
		{name: "FileData of zero raw bytes", want: syncproto.ErrMalformed, wantMsg: []string{"app.bin", "chunk of 0 raw bytes"},
			send: func(s *liarStream) {
				s.msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.raw(append(frameHeader(syncproto.MsgFileData, 5), syncproto.EncodingRaw, 0, 0, 0, 0))
			}},
		{name: "raw FileData whose RawLen is not its length", want: syncproto.ErrMalformed, wantMsg: []string{"app.bin", "declares 9 bytes, carries 3"},
			send: func(s *liarStream) {
				s.msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.raw(append(frameHeader(syncproto.MsgFileData, 8), syncproto.EncodingRaw, 0, 0, 0, 9, 'a', 'b', 'c'))
			}},
		{name: "frame length 0xFFFFFFFF", want: syncproto.ErrTooLarge, wantMsg: []string{"app.bin", "4294967295 bytes"},
			send: func(s *liarStream) {
				s.msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.raw(frameHeader(syncproto.MsgFileData, 0xFFFFFFFF))
			}},
		{name: "frame length negative as an int32", want: syncproto.ErrTooLarge, wantMsg: []string{"app.bin", "2147483648 bytes"},
			send: func(s *liarStream) {
				s.msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.raw(frameHeader(syncproto.MsgFileData, 0x80000000))
			}},
		{name: "frame just over the FileData limit", want: syncproto.ErrTooLarge, wantMsg: []string{"app.bin"},
			send: func(s *liarStream) {
				limit, _ := syncproto.MaxPayload(syncproto.MsgFileData)
				s.msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.raw(frameHeader(syncproto.MsgFileData, uint32(limit+1)))
			}},
		{name: "unknown message type", want: syncproto.ErrUnknownType, wantMsg: []string{"app.bin", "type 200"},
			send: func(s *liarStream) {
				s.msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.raw(frameHeader(200, 0))
			}},
		{name: "bad magic", want: syncproto.ErrBadMagic, wantMsg: []string{"app.bin"},
			send: func(s *liarStream) { s.raw([]byte("HTTP/1.1 200 OK\r\n\r\n")) }},
		{name: "another protocol version", want: syncproto.ErrVersion, wantMsg: []string{"app.bin"},
			send: func(s *liarStream) {
				h := frameHeader(syncproto.MsgFileStart, 12)
				h[2] = syncproto.Version + 1
				s.raw(append(h, make([]byte, 12)...))
			}},
		{name: "a file not asked for", want: syncproto.ErrUnexpected, wantMsg: []string{"app.bin", "server sent file 3"},
			send: func(s *liarStream) { s.file(3) }},
		{name: "a file asked for, before its turn", want: syncproto.ErrUnexpected, wantMsg: []string{"app.bin", "server sent file 1"},
			send: func(s *liarStream) { s.file(1) }},
		{name: "an index outside the manifest", want: syncproto.ErrUnexpected, wantMsg: []string{"app.bin", "server sent file 99"},
			send: func(s *liarStream) {
				s.msg(syncproto.FileStart{Index: 99, Size: 5})
				s.data([]byte("evil!"))
				s.msg(syncproto.FileEnd{Hash: blake3.Sum256([]byte("evil!"))})
			}},
		{name: "the files in another order", want: syncproto.ErrUnexpected, wantMsg: []string{"lib/libnew.so", "server sent file 2"},
			send: func(s *liarStream) { s.file(0); s.file(2); s.file(1) }},
		{name: "the right file with another size", want: syncproto.ErrUnexpected, wantMsg: []string{"app.bin", "of 27 bytes, expected file 0 of 26 bytes"},
			send: func(s *liarStream) {
				s.msg(syncproto.FileStart{Index: 0, Size: uint64(len(app) + 1)})
				s.data(append(slices.Clip(app), '!'))
			}},
		{name: "another message instead of a file", want: syncproto.ErrUnexpected, wantMsg: []string{"app.bin", "expected FileStart, got Welcome"},
			send: func(s *liarStream) {
				s.msg(syncproto.Welcome{ServerBuild: liarBuild, Compatible: true, UpdatesEnabled: true})
			}},
	}
}

// TestHostileStreamAbortsTheWholeUpdate: a lie in any file, even the last
// of three, aborts the whole update with its own error; nothing of the
// release is applied and nothing staged is left.
func TestHostileStreamAbortsTheWholeUpdate(t *testing.T) {
	for _, l := range streamLies(t) {
		t.Run(l.name, func(t *testing.T) {
			saw, _ := hostileRun(t, l)
			if !saw.askedEnd || !slices.Equal(saw.asked, []uint32{0, 1, 2}) {
				t.Errorf("the client asked for %v (end %v); want the lie told after it asked for 0 1 2", saw.asked, saw.askedEnd)
			}
			if saw.report == nil || saw.report.Outcome != syncproto.OutcomeFailed || saw.report.Message == "" {
				t.Errorf("report %+v; want the failure and its reason told to the server", saw.report)
			}
		})
	}
}

// TestHostileZstdBombIsBounded: a chunk that decompresses to 64 MiB costs
// the client a small, bounded amount of memory, not the 64 MiB.
func TestHostileZstdBombIsBounded(t *testing.T) {
	var bombs []lie
	for _, l := range streamLies(t) {
		if strings.HasPrefix(l.name, "zstd bomb") {
			bombs = append(bombs, l)
		}
	}
	if len(bombs) != 4 {
		t.Fatalf("%d bomb cases", len(bombs))
	}
	for _, l := range bombs {
		t.Run(l.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			hostileRun(t, l)
			runtime.ReadMemStats(&after)
			// Everything the process allocated meanwhile, the server's
			// side and the test's included, stays well under the bomb.
			if got := after.TotalAlloc - before.TotalAlloc; got > 24<<20 {
				t.Errorf("allocated %d MiB during the sync; the decoder is not bounded", got>>20)
			}
		})
	}
}

// Deltas. The client asks for a file of 1 KiB to under 1 MiB whose path
// holds a regular file of at least 1 KiB as a block delta; for a larger
// one, when its path holds a regular file of at least 4 KiB, as a delta
// from that file's chunks, with the new file's chunk list; a new file of
// 1 MiB or more it asks for with an empty base and the list. The delta
// scene has one file of each kind.

// deltaOldRelease is the install before each delta lie: older versions of
// two files large enough to be bases.
func deltaOldRelease() []releaseFile {
	rng := rand.NewChaCha8([32]byte{17})
	app := make([]byte, 64<<10)
	rng.Read(app)
	pack := make([]byte, 3<<19)
	rng.Read(pack)
	return []releaseFile{
		{path: "app.bin", mode: 0o755, content: app},
		{path: "data/pack.pak", mode: 0o644, content: pack},
		{path: "readme.txt", mode: 0o644, content: []byte("read me")},
		{path: "smartclient.ini", mode: 0o644, content: []byte("[TCP]\nServer=erp\nPort=1234\n")},
	}
}

// deltaRelease is the release of the delta scene, asked for as
//
//	0 app.bin        64 KiB, 4 KiB of it new: a block delta
//	1 data/pack.pak  1.5 MiB with 4 KiB inserted: a delta with its list
//	2 data/new.pak   1 MiB, new: an empty base with the list
//	3 data/last.dat  small and new: whole
//
// and readme.txt, which the install has as it is.
func deltaRelease() []releaseFile {
	old := deltaOldRelease()
	rng := rand.NewChaCha8([32]byte{18})
	patch := make([]byte, 4096)
	rng.Read(patch)
	app := slices.Clone(old[0].content)
	copy(app[20<<10:], patch)
	pack := slices.Concat(old[1].content[:700<<10], patch, old[1].content[700<<10:])
	fresh := make([]byte, 1<<20)
	rng.Read(fresh)
	return []releaseFile{
		{path: "app.bin", mode: 0o755, content: app},
		{path: "data/pack.pak", mode: 0o644, content: pack},
		{path: "data/new.pak", mode: 0o644, content: fresh},
		{path: "data/last.dat", mode: 0o644, content: []byte("the last file of the release")},
		{path: "readme.txt", mode: 0o644, content: []byte("read me"), mtime: oldMtime},
	}
}

var deltaScene = scene{old: deltaOldRelease, release: deltaRelease}

// checkDeltaRequests checks that the client asked for the delta scene's
// files as the scene means: 0 as a block delta from the installed
// version, 1 as a delta from its chunks, 1 and 2 with their lists, 3
// whole.
func checkDeltaRequests(t *testing.T, saw liarSaw) {
	t.Helper()
	if !saw.askedEnd || !slices.Equal(saw.asked, []uint32{0, 1, 2, 3}) {
		t.Fatalf("the client asked for %v (end %v); want 0 1 2 3", saw.asked, saw.askedEnd)
	}
	old := deltaOldRelease()
	if b := saw.blocks[0]; b == nil {
		t.Errorf("app.bin was not asked for as a block delta")
	} else {
		base := old[0].content
		bs := cdc.BlockSize(int64(len(base)))
		var sums []syncproto.BlockSum
		for k := 0; k < len(base); k += bs {
			p := base[k:min(k+bs, len(base))]
			sums = append(sums, syncproto.BlockSum{Weak: cdc.WeakSum(p).Weak(), Strong: cdc.StrongSum(p)})
		}
		if int(b.BlockSize) != bs || b.BaseSize != uint64(len(base)) || !slices.Equal(b.Sums, sums) {
			t.Errorf("app.bin asked for with blocks of %d, a base of %d bytes and %d sums; want %d, %d and the %d sums of the installed version",
				b.BlockSize, b.BaseSize, len(b.Sums), bs, len(base), len(sums))
		}
	}
	for _, want := range []struct {
		i        int
		base     []byte // nil: an empty base
		wantList bool
	}{
		{1, old[1].content, true},
		{2, nil, true},
	} {
		i := want.i
		d := saw.deltas[uint32(i)]
		if d == nil {
			t.Fatalf("file %d was not asked for as a delta", i)
		}
		// The chunk size suits the base, or the new file when there is
		// none.
		bits := cdc.BitsFor(int64(len(deltaRelease()[i].content)))
		var base []syncproto.ChunkRef
		if want.base != nil {
			bits = cdc.BitsFor(int64(len(want.base)))
			base = liarRefs(cutChunks(want.base, bits))
		}
		if d.Bits != bits || (d.Flags&syncproto.DeltaWantList != 0) != want.wantList || !slices.Equal(d.Chunks, base) {
			t.Errorf("file %d asked for with bits %d, flags %#x, %d chunks; want bits %d, list %v, the %d chunks of the installed version",
				i, d.Bits, d.Flags, len(d.Chunks), bits, want.wantList, len(base))
		}
	}
	if saw.deltas[3] != nil || saw.blocks[3] != nil {
		t.Errorf("data/last.dat asked for as a delta")
	}
}

func TestHostileServerHonestDeltaControl(t *testing.T) {
	// The delta harness itself: the liar telling the truth installs the
	// release from copies of the installed versions and data, and keeps
	// the lists the client asked for.
	saw, dir := hostileRunIn(t, lie{name: "honest"}, deltaScene)
	checkDeltaRequests(t, saw)
	if saw.report == nil || saw.report.Outcome != syncproto.OutcomeUpdated {
		t.Fatalf("report %+v; want an update", saw.report)
	}
	release := deltaRelease()
	if least := int64(len(release[0].content)+len(release[1].content)) - 64<<10; saw.copied < least {
		t.Errorf("%d bytes sent as copies; want at least %d", saw.copied, least)
	}
	for _, f := range release {
		if got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.path))); err != nil || !bytes.Equal(got, f.content) {
			t.Errorf("%s: %d bytes, %v; want the release's content", f.path, len(got), err)
		}
	}
	lists, err := os.ReadDir(filepath.Join(dir, ".smartclient", "chunks"))
	if err != nil || len(lists) != 2 {
		t.Fatalf("kept lists %v, %v; want those of data/pack.pak and data/new.pak", lists, err)
	}
	for _, e := range lists {
		if !trueList(t, dir, ".smartclient/chunks/"+e.Name(), release[1:3]) {
			t.Errorf("kept list %s is not the true list of a large file of the release", e.Name())
		}
	}
}

// deltaStreamLies are the lies about deltas, told in the delta scene
// after the client asked for its four files.
func deltaStreamLies() []lie {
	old, rel := deltaOldRelease(), deltaRelease()
	app, pack, fresh, last := rel[0].content, rel[1].content, rel[2].content, rel[3].content
	baseApp, basePack := int64(len(old[0].content)), int64(len(old[1].content))
	const appBits, packBits = 10, 13 // cdc.BitsFor of the bases
	_, _, packMax := cdc.Sizes(packBits)
	start := func(s *liarStream, i int) {
		s.msg(syncproto.FileStart{Index: uint32(i), Size: uint64(len(rel[i].content))})
	}
	packList := liarRefs(cutChunks(pack, packBits))
	// packStart starts data/pack.pak after app.bin, honestly.
	packStart := func(s *liarStream) {
		s.delta(0)
		start(s, 1)
	}
	copyLie := func(name string, cp syncproto.FileCopy, msg string) lie {
		return lie{name: name, want: smartclient.ErrVerify, wantMsg: []string{"app.bin", msg},
			send: func(s *liarStream) {
				start(s, 0)
				s.msg(cp)
				s.data(app[min(int(cp.Len), len(app)):])
				s.msg(syncproto.FileEnd{Hash: blake3.Sum256(app)})
			}}
	}
	return []lie{
		{name: "FileCopy for a file asked for whole", want: syncproto.ErrUnexpected,
			wantMsg: []string{"data/last.dat", "a copy for a file asked for whole"},
			send: func(s *liarStream) {
				s.delta(0)
				s.delta(1)
				s.delta(2)
				start(s, 3)
				s.msg(syncproto.FileCopy{Off: 0, Len: uint32(len(last))})
				s.msg(syncproto.FileEnd{Hash: blake3.Sum256(last)})
			}},
		{name: "FileCopy for a file asked for with an empty base", want: syncproto.ErrUnexpected,
			wantMsg: []string{"data/new.pak", "a copy for a file asked for whole"},
			send: func(s *liarStream) {
				s.delta(0)
				s.delta(1)
				start(s, 2)
				s.list(12, liarRefs(cutChunks(fresh, 12)), syncproto.MaxChunkRefs, false)
				s.msg(syncproto.FileCopy{Off: 0, Len: 4096})
			}},
		copyLie("FileCopy running one byte past the end of the base", syncproto.FileCopy{Off: uint64(baseApp) - 10, Len: 11},
			fmt.Sprintf("copy of 11 bytes at %d from an installed version of %d", baseApp-10, baseApp)),
		copyLie("FileCopy at the end of the base", syncproto.FileCopy{Off: uint64(baseApp), Len: 1},
			fmt.Sprintf("copy of 1 bytes at %d from an installed version of %d", baseApp, baseApp)),
		copyLie("FileCopy offset past the end of the base", syncproto.FileCopy{Off: uint64(baseApp) + 4096, Len: 1},
			fmt.Sprintf("at %d from an installed version", baseApp+4096)),
		copyLie("FileCopy whose end overflows 64 bits", syncproto.FileCopy{Off: 1<<64 - 16, Len: 32},
			"copy of 32 bytes at 18446744073709551600"),
		copyLie("FileCopy offset negative as an int64", syncproto.FileCopy{Off: 1 << 63, Len: 1},
			"at 9223372036854775808"),
		copyLie("FileCopy longer than the base", syncproto.FileCopy{Off: 0, Len: 1<<32 - 1},
			"copy of 4294967295 bytes at 0"),
		{name: "copies adding up to more than the file", want: smartclient.ErrVerify,
			wantMsg: []string{"app.bin", fmt.Sprintf("more bytes than the %d declared", len(app))},
			send: func(s *liarStream) {
				start(s, 0)
				s.msg(syncproto.FileCopy{Off: 0, Len: 40000})
				s.msg(syncproto.FileCopy{Off: 0, Len: 40000})
				s.msg(syncproto.FileEnd{Hash: blake3.Sum256(app)})
			}},
		{name: "a copy after the file's last byte", want: syncproto.ErrUnexpected,
			wantMsg: []string{"app.bin", "expected FileEnd, got FileCopy"},
			send: func(s *liarStream) {
				start(s, 0)
				s.data(app)
				s.msg(syncproto.FileCopy{Off: 0, Len: 1})
				s.msg(syncproto.FileEnd{Hash: blake3.Sum256(app)})
			}},
		{name: "copies of the right size, the base's content", want: smartclient.ErrVerify,
			wantMsg: []string{"app.bin", "BLAKE3"},
			send: func(s *liarStream) {
				start(s, 0)
				s.msg(syncproto.FileCopy{Off: 0, Len: uint32(baseApp)})
				s.msg(syncproto.FileEnd{Hash: blake3.Sum256(app)}) // and a lie about it
			}},
		{name: "copies from the wrong places, with a forged list", want: smartclient.ErrVerify,
			wantMsg: []string{"data/pack.pak", "BLAKE3"},
			send: func(s *liarStream) {
				packStart(s)
				// The true lengths, other hashes: a list the client must
				// not keep for a file that fails its check.
				forged := slices.Clone(packList)
				for i := range forged {
					forged[i].Hash = [16]byte{byte(i), byte(i >> 8), 0xf0}
				}
				s.list(packBits, forged, syncproto.MaxChunkRefs, false)
				// The base whole, then the inserted bytes: the right
				// size and every byte but the insert from the base.
				s.msg(syncproto.FileCopy{Off: 0, Len: uint32(basePack)})
				s.data(pack[700<<10 : 704<<10])
				s.msg(syncproto.FileEnd{Hash: blake3.Sum256(pack)})
			}},
		{name: "ChunkList cut with other bits", want: smartclient.ErrVerify,
			wantMsg: []string{"data/pack.pak", "chunk list cut with 14, asked for 13"},
			send: func(s *liarStream) {
				packStart(s)
				s.list(packBits+1, liarRefs(cutChunks(pack, packBits+1)), syncproto.MaxChunkRefs, false)
			}},
		{name: "ChunkList longer than the file", want: smartclient.ErrVerify,
			wantMsg: []string{"data/pack.pak", "chunk list longer than the file"},
			send: func(s *liarStream) {
				packStart(s)
				// The last chunk one byte longer.
				longer := slices.Clone(packList)
				longer[len(longer)-1].Len++
				s.list(packBits, longer, syncproto.MaxChunkRefs, false)
			}},
		{name: "ChunkList shorter than the file", want: smartclient.ErrVerify,
			wantMsg: []string{"data/pack.pak", fmt.Sprintf("chunk list of %d bytes for a file of %d", int64(len(pack))-int64(packList[len(packList)-1].Len), len(pack))},
			send: func(s *liarStream) {
				packStart(s)
				s.list(packBits, packList[:len(packList)-1], syncproto.MaxChunkRefs, false)
			}},
		{name: "ChunkList of the right length with a chunk over its parameter's maximum", want: smartclient.ErrVerify,
			wantMsg: []string{"data/pack.pak", fmt.Sprintf("over the %d its parameter allows", packMax)},
			send: func(s *liarStream) {
				packStart(s)
				// The first chunks merged into one just over the
				// maximum: the lengths still add up to the file's.
				var merged syncproto.ChunkRef
				k := 0
				for ; int(merged.Len) <= packMax; k++ {
					merged.Len += packList[k].Len
				}
				s.list(packBits, append([]syncproto.ChunkRef{merged}, packList[k:]...), syncproto.MaxChunkRefs, false)
			}},
		{name: "ChunkList that never ends", want: smartclient.ErrVerify,
			wantMsg: []string{"data/pack.pak", "chunk list longer than the file"},
			send: func(s *liarStream) {
				packStart(s)
				// More forever, one chunk of 1 KiB a frame; the liar stops
				// long after the client should have.
				for range 16 * len(pack) >> 10 {
					if s.w.Write(syncproto.ChunkList{Bits: packBits, More: true, Chunks: packList[:1]}) != nil {
						return
					}
				}
			}},
		{name: "ChunkList that never ends, of empty frames", want: smartclient.ErrVerify, orWant: syncproto.ErrUnexpected,
			wantMsg: []string{"data/pack.pak"},
			send: func(s *liarStream) {
				packStart(s)
				// A million frames of 14 bytes, then silence; a client
				// that reads them all then times out.
				for range 1 << 20 {
					if s.w.Write(syncproto.ChunkList{Bits: packBits, More: true}) != nil {
						return
					}
				}
			}},
		{name: "ChunkList with More, then the file's copies", want: syncproto.ErrUnexpected,
			wantMsg: []string{"data/pack.pak", "expected ChunkList, got FileCopy"},
			send: func(s *liarStream) {
				packStart(s)
				s.list(packBits, packList, syncproto.MaxChunkRefs, true)
				s.assemble(pack, packBits, liarRefs(cutChunks(old[1].content, packBits)))
			}},
		{name: "no ChunkList when one was asked for", want: syncproto.ErrUnexpected,
			wantMsg: []string{"data/pack.pak", "expected ChunkList, got FileData"},
			send: func(s *liarStream) {
				packStart(s)
				s.data(pack)
			}},
		{name: "ChunkList for a delta asked for without one", want: syncproto.ErrUnexpected,
			wantMsg: []string{"app.bin", "expected FileData or FileCopy, got ChunkList"},
			send: func(s *liarStream) {
				start(s, 0)
				s.list(appBits, liarRefs(cutChunks(app, appBits)), syncproto.MaxChunkRefs, false)
			}},
		{name: "ChunkList for a file asked for whole", want: syncproto.ErrUnexpected,
			wantMsg: []string{"data/last.dat", "expected FileData or FileCopy, got ChunkList"},
			send: func(s *liarStream) {
				s.delta(0)
				s.delta(1)
				s.delta(2)
				start(s, 3)
				s.list(cdc.MinBits, liarRefs(cutChunks(last, cdc.MinBits)), syncproto.MaxChunkRefs, false)
			}},
	}
}

// TestHostileDeltaStreamAbortsTheWholeUpdate: a lie in a delta, or a
// delta's pieces where none were asked for, aborts the whole update with
// its own error; nothing of the release is applied, nothing staged is
// left, and no chunk list but the true one of a verified file is kept.
func TestHostileDeltaStreamAbortsTheWholeUpdate(t *testing.T) {
	for _, l := range deltaStreamLies() {
		t.Run(l.name, func(t *testing.T) {
			if l.bug != "" {
				t.Skip("BUG: " + l.bug)
			}
			saw, _ := hostileRunIn(t, l, deltaScene)
			checkDeltaRequests(t, saw)
			if saw.report == nil || saw.report.Outcome != syncproto.OutcomeFailed || saw.report.Message == "" {
				t.Errorf("report %+v; want the failure and its reason told to the server", saw.report)
			}
		})
	}
}

// TestBlockMismatchSyncsAgainWithoutBlocks: a file built from block sums
// that fails its check may be a false match of those sums, which would
// fail the same way at every sync. The client syncs again, once, without
// block sums: the update succeeds, and a server that still lies gets the
// error of the second attempt.
func TestBlockMismatchSyncsAgainWithoutBlocks(t *testing.T) {
	app := deltaRelease()[0].content
	// falseMatch sends app.bin, asked for by blocks, with the base's
	// first block where its sixth belongs: what a false match of the
	// sums does. Asked for another way, it tells the truth, or not.
	falseMatch := func(again bool) func(s *liarStream) {
		return func(s *liarStream) {
			for _, i := range s.saw.asked {
				r := s.saw.blocks[i]
				if i != 0 || (r == nil && again) {
					s.honest(int(i))
					continue
				}
				bs := len(app) / 16 // any length will do
				if r != nil {
					bs = int(r.BlockSize)
				}
				s.msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.data(app[:5*bs])
				s.msg(syncproto.FileCopy{Off: 0, Len: uint32(bs)})
				s.data(app[6*bs:])
				s.msg(syncproto.FileEnd{Hash: blake3.Sum256(app)})
			}
		}
	}
	t.Run("false match", func(t *testing.T) {
		saw, dir := hostileRunIn(t, lie{name: "false match", send: falseMatch(true)}, deltaScene)
		checkDeltaRequests(t, saw)
		if saw.report == nil || saw.report.Outcome != syncproto.OutcomeFailed {
			t.Errorf("first session's report %+v; want the failure", saw.report)
		}
		again := saw.again
		if again == nil {
			t.Fatal("the client did not sync again")
		}
		if len(again.blocks) != 0 {
			t.Errorf("the second attempt asked for %d files by block sums; want none", len(again.blocks))
		}
		if !slices.Contains(again.asked, 0) {
			t.Errorf("the second attempt asked for %v; want app.bin among them", again.asked)
		}
		if again.report == nil || again.report.Outcome != syncproto.OutcomeUpdated {
			t.Errorf("second session's report %+v; want an update", again.report)
		}
		for _, f := range deltaRelease() {
			if got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.path))); err != nil || !bytes.Equal(got, f.content) {
				t.Errorf("%s: %d bytes, %v; want the release's content", f.path, len(got), err)
			}
		}
	})
	t.Run("lies again", func(t *testing.T) {
		saw, _ := hostileRunIn(t, lie{name: "lies again", send: falseMatch(false),
			want: smartclient.ErrVerify, wantMsg: []string{"app.bin", "BLAKE3"}}, deltaScene)
		if saw.again == nil || len(saw.again.blocks) != 0 {
			t.Fatalf("second session %+v; want one, without block sums", saw.again)
		}
		if r := saw.again.report; r == nil || r.Outcome != syncproto.OutcomeFailed {
			t.Errorf("second session's report %+v; want the failure", r)
		}
	})
}

// TestHostileForgedListSpoilsLaterDeltas: a server may send the true
// content of a file with a chunk list whose lengths add up but whose
// hashes lie. The client cannot check the list against the file without
// cutting it, but it must not let the lie outlive the session: a later
// update from an honest server must still succeed.
//
// Here the forged list names the last chunk of data/pack.pak with the
// hash of the last chunk of the next version, which differs from it only
// in its last byte. Kept and used as the base of the next delta, it has
// the honest server send a copy of the old last chunk where the new one
// belongs: the file fails its check, on every retry.
func TestHostileForgedListSpoilsLaterDeltas(t *testing.T) {
	const packBits = 13
	rel := deltaRelease()
	v2 := rel[1].content
	v3 := slices.Clone(v2)
	v3[len(v3)-1] ^= 0xff
	list2, list3 := liarRefs(cutChunks(v2, packBits)), liarRefs(cutChunks(v3, packBits))
	if len(list2) != len(list3) || !slices.Equal(list2[:len(list2)-1], list3[:len(list3)-1]) || list2[len(list2)-1].Len != list3[len(list3)-1].Len {
		t.Fatal("the next version is not cut as this one but for its last chunk's hash")
	}
	forged := slices.Clone(list2)
	forged[len(forged)-1].Hash = list3[len(list3)-1].Hash

	dir := filepath.Join(t.TempDir(), "install")
	oldInstall(t, dir, deltaOldRelease())
	sync := func(l lie, release []releaseFile) error {
		t.Helper()
		addr, wait := serveLie(t, l, release)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := smartclient.Sync(ctx, smartclient.Options{Dir: dir, Server: addr, OS: "linux", Yes: true, Timeout: 5 * time.Second})
		if saw := wait(); saw.serverErr != nil {
			t.Errorf("server: %v", saw.serverErr)
		}
		return err
	}

	// The lie: every file honestly, but data/pack.pak with the forged list.
	err := sync(lie{send: func(s *liarStream) {
		s.delta(0)
		s.msg(syncproto.FileStart{Index: 1, Size: uint64(len(v2))})
		s.list(packBits, forged, syncproto.MaxChunkRefs, false)
		s.assemble(v2, packBits, s.saw.deltas[1].Chunks)
		s.msg(syncproto.FileEnd{Hash: blake3.Sum256(v2)})
		s.delta(2)
		s.file(3)
	}}, rel)
	if err != nil && !errors.Is(err, smartclient.ErrVerify) {
		t.Fatalf("sync with the forged list: %v; want success or ErrVerify", err)
	}

	// The next release, from an honest server: it must install, and so
	// must a retry.
	next := deltaRelease()
	next[1].content = v3
	// A new mtime too: with the same size and mtime the client would not
	// fetch it at all (see TestPlanKnownFileWithOtherHash).
	next[1].mtime = time.Unix(0, liarMtime).Add(time.Hour)
	for try := range 2 {
		if err := sync(lie{}, next); err != nil {
			t.Errorf("honest update, try %d, after the forged list: %v", try+1, err)
		}
	}
	if t.Failed() {
		return
	}
	for _, f := range next {
		if got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.path))); err != nil || !bytes.Equal(got, f.content) {
			t.Errorf("%s: %d bytes, %v; want the next release's content", f.path, len(got), err)
		}
	}
}
