package fetch

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/zpatch"
	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/installtest"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest/manifesttest"
	"github.com/erpupdate/smartsync/smartclient/internal/session"
	"github.com/erpupdate/smartsync/smartclient/internal/state"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/zeebo/blake3"
)

// patchPair is an installed file and the next release of it: random
// bytes with a few of them changed and some inserted, as a rebuild does.
func patchPair(size int) (old, next []byte) {
	old = make([]byte, size)
	rand.NewChaCha8([32]byte{9, byte(size)}).Read(old)
	next = bytes.Clone(old)
	for i := 100; i < len(next); i += 997 {
		next[i] ^= 0x5a
	}
	return old, append(next[:size/2:size/2], append([]byte("inserted by the rebuild"), next[size/2:]...)...)
}

func makePatch(t testing.TB, old, next []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := zpatch.Make(context.Background(), &b, bytes.NewReader(old), int64(len(old)), bytes.NewReader(next), int64(len(next)), zpatch.Options{}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// offerFrames encodes offers as a server sends them, perFrame a frame.
func offerFrames(t testing.TB, offers []syncproto.PatchRef, perFrame int) []byte {
	t.Helper()
	var b bytes.Buffer
	w := syncproto.NewWriter(&b)
	for k := 0; k == 0 || k < len(offers); k += perFrame {
		if err := w.Write(syncproto.PatchOffer{More: k+perFrame < len(offers), Offers: offers[k:min(k+perFrame, len(offers))]}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestReadOffers: the offers kept are those from the content the state
// records at the entry's path; an offer past the manifest, for a folder
// or a link, out of order across frames, or a frame missing, is refused
// naming what.
func TestReadOffers(t *testing.T) {
	h := func(s string) [32]byte { return blake3.Sum256([]byte(s)) }
	hx := func(s string) string { b := h(s); return hex.EncodeToString(b[:]) }
	man := manifesttest.New(t, "7.00.240501A",
		manifest.File{Path: "a.exe", Size: 10, Mode: 0o755, Hash: h("new a")},
		manifest.File{Path: "b.dll", Size: 10, Mode: 0o644, Hash: h("new b")},
		manifest.File{Path: "empty", Dir: true},
		manifest.File{Path: "link", Target: "a.exe", Size: 5, Mode: fs.ModeSymlink | 0o777, Hash: h("a.exe")},
	)
	st := &state.State{Files: map[string]state.FileState{
		"a.exe": {Size: 5, Hash: hx("old a")},
		"b.dll": {Size: 5, Hash: hx("old b")},
	}}
	ref := func(i uint32, base string) syncproto.PatchRef {
		return syncproto.PatchRef{Index: i, Base: h(base), Size: 3}
	}
	sorted := func(rs ...syncproto.PatchRef) []syncproto.PatchRef { return rs }
	// h("older a") < h("old a")? Sort the pair as a server would.
	a1, a2 := ref(0, "old a"), ref(0, "older a")
	if bytes.Compare(a1.Base[:], a2.Base[:]) > 0 {
		a1, a2 = a2, a1
	}
	tests := []struct {
		name     string
		frames   []byte
		want     []int  // indices kept
		wantErr  string // "" for none
		perFrame int
	}{
		{name: "none", frames: offerFrames(t, nil, 1)},
		{name: "the held bases kept, others dropped", frames: offerFrames(t, sorted(a1, a2, ref(1, "other b")), 1), want: []int{0}},
		{name: "both held, in one frame", frames: offerFrames(t, sorted(a1, a2, ref(1, "old b")), 10), want: []int{0, 1}},
		{name: "past the manifest", frames: offerFrames(t, sorted(ref(0, "old a"), ref(4, "x")), 1), wantErr: "offer 1 names entry 4, past the manifest's 4 entries"},
		{name: "a folder", frames: offerFrames(t, sorted(ref(2, "x")), 1), wantErr: `entry 2 "empty", which is not a file`},
		{name: "a link", frames: offerFrames(t, sorted(ref(3, "x")), 1), wantErr: `entry 3 "link", which is not a file`},
		{name: "out of order across frames", frames: offerFrames(t, sorted(ref(1, "old b"), ref(0, "old a")), 1), wantErr: "offer 1 (entry 0) is not after offer 0 (entry 1)"},
		{name: "the same offer twice across frames", frames: offerFrames(t, sorted(ref(1, "old b"), ref(1, "old b")), 1), wantErr: "offer 1 (entry 1) is not after offer 0 (entry 1)"},
		{name: "the last frame missing", frames: offerFrames(t, sorted(ref(0, "old a"), ref(1, "old b")), 1)[:50], wantErr: "reading patch offers"},
		{name: "no offers at all", frames: nil, wantErr: "reading patch offers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			offers, err := ReadOffers(syncproto.NewReader(bytes.NewReader(tc.frames)), man, st)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v; want an error saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(offers) != len(tc.want) {
				t.Fatalf("kept %v; want indices %v", offers, tc.want)
			}
			for _, i := range tc.want {
				if o, ok := offers[i]; !ok || hex.EncodeToString(o.Base[:]) != st.Files[man.File(i).Path].Hash {
					t.Errorf("index %d: kept %v, %v; want the offer from the recorded content", i, o, ok)
				}
			}
		})
	}
	t.Run("over the session's limit", func(t *testing.T) {
		// A million offers and one, all valid and in order, none from a
		// held base: refused once past the limit, without keeping any.
		var b bytes.Buffer
		w := syncproto.NewWriter(&b)
		offers := make([]syncproto.PatchRef, syncproto.MaxPatchOffers)
		n := 0
		for n <= syncproto.MaxSessionPatchOffers {
			for k := range offers {
				offers[k] = syncproto.PatchRef{Index: 1, Size: 1}
				offers[k].Base[28], offers[k].Base[29], offers[k].Base[30], offers[k].Base[31] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
				n++
			}
			w.Write(syncproto.PatchOffer{More: true, Offers: offers})
		}
		w.Flush()
		_, err := ReadOffers(syncproto.NewReader(&b), man, st)
		if !errors.Is(err, syncproto.ErrUnexpected) || !strings.Contains(err.Error(), fmt.Sprintf("more than the %d offers", syncproto.MaxSessionPatchOffers)) {
			t.Fatalf("got %v; want the offers past the limit refused", err)
		}
	})
}

// FuzzReadOffers: whatever the frames, ReadOffers keeps only offers of
// files of the manifest from recorded bases, or fails; it never panics.
func FuzzReadOffers(f *testing.F) {
	h := blake3.Sum256([]byte("old"))
	f.Add(offerFrames(f, []syncproto.PatchRef{{Index: 0, Base: h, Size: 9}}, 1))
	f.Add(offerFrames(f, nil, 1))
	f.Add(offerFrames(f, []syncproto.PatchRef{{Index: 0, Base: h, Size: 9}, {Index: 1, Base: h, Size: 1}}, 1))
	man := manifesttest.New(f, "7.00.240501A", manifest.File{Path: "a", Size: 10, Hash: blake3.Sum256([]byte("new"))})
	st := &state.State{Files: map[string]state.FileState{"a": {Hash: hex.EncodeToString(h[:])}}}
	f.Fuzz(func(t *testing.T, b []byte) {
		offers, err := ReadOffers(syncproto.NewReader(bytes.NewReader(b)), man, st)
		if err != nil {
			return
		}
		for i, o := range offers {
			if i != 0 || o.Index != 0 || o.Base != h {
				t.Fatalf("kept offer %d %+v", i, o)
			}
		}
	})
}

// TestPlanPatch: a patch is asked for only from the installed file the
// state records, unchanged since, and only when it is smaller than the
// file.
func TestPlanPatch(t *testing.T) {
	dir := t.TempDir()
	d := installtest.OpenDisk(t, dir)
	old, next := patchPair(64 << 10)
	if err := os.WriteFile(filepath.Join(dir, "app.bin"), old, 0o755); err != nil {
		t.Fatal(err)
	}
	fi, err := d.Lstat("app.bin")
	if err != nil {
		t.Fatal(err)
	}
	base := blake3.Sum256(old)
	rf := manifest.File{Path: "app.bin", Size: int64(len(next)), Hash: blake3.Sum256(next)}
	recorded := state.FileState{Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano(), Hash: hex.EncodeToString(base[:])}
	offer := syncproto.PatchRef{Index: 0, Base: base, Size: 2000}
	tests := []struct {
		name   string
		rec    *state.FileState
		change func(*state.FileState, *syncproto.PatchRef)
		want   bool
	}{
		{"recorded and offered", &recorded, nil, true},
		{"no record", nil, nil, false},
		{"recorded with another size", &recorded, func(k *state.FileState, _ *syncproto.PatchRef) { k.Size++ }, false},
		{"recorded with another mtime", &recorded, func(k *state.FileState, _ *syncproto.PatchRef) { k.MtimeNs++ }, false},
		{"recorded with other content", &recorded, func(k *state.FileState, _ *syncproto.PatchRef) { k.Hash = strings.Repeat("ab", 32) }, false},
		{"a patch as large as the file", &recorded, func(_ *state.FileState, o *syncproto.PatchRef) { o.Size = uint64(len(next)) }, false},
		{"a patch one byte smaller than the file", &recorded, func(_ *state.FileState, o *syncproto.PatchRef) { o.Size = uint64(len(next)) - 1 }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := &state.State{Files: map[string]state.FileState{}}
			o := offer
			if tc.rec != nil {
				k := *tc.rec
				if tc.change != nil {
					tc.change(&k, &o)
				}
				st.Files["app.bin"] = k
			}
			got := planPatch(st, rf, &o, fi)
			if (got != nil) != tc.want {
				t.Fatalf("planPatch = %+v; want a patch: %v", got, tc.want)
			}
			if got != nil && (got.patch.Base != base || got.baseSize != int64(len(old)) || got.hasBase()) {
				t.Errorf("planned %+v; want the patch from the installed file", got)
			}
		})
	}
}

// patchRig is a Fetcher of one file asked for as a patch, over real TCP
// from a server that sends what a test says.
type patchRig struct {
	dir      string
	disk     *install.Disk
	man      *manifest.Manifest
	old      []byte
	next     []byte
	ln       net.Listener
	overrun  error // a write past the declared size or outside staging, seen by the disk's fault hook
	overrMu  sync.Mutex
	baseInfo fs.FileInfo
}

func newPatchRig(t testing.TB, size int) *patchRig {
	t.Helper()
	r := &patchRig{dir: t.TempDir()}
	r.old, r.next = patchPair(size)
	if err := os.WriteFile(filepath.Join(r.dir, "app.bin"), r.old, 0o755); err != nil {
		t.Fatal(err)
	}
	r.disk = installtest.OpenDisk(t, r.dir)
	var err error
	if r.baseInfo, err = r.disk.Lstat("app.bin"); err != nil {
		t.Fatal(err)
	}
	staged := install.StagingDir + "/app.bin"
	r.disk.Faults.Write = func(name string, off int64, n int) (int, error) {
		if name != staged || off < 0 || off+int64(n) > int64(len(r.next)) {
			r.overrMu.Lock()
			r.overrun = fmt.Errorf("a write of %d bytes at %d to %s", n, off, name)
			r.overrMu.Unlock()
		}
		return n, nil
	}
	r.disk.Faults.Op = func(op, name string) error {
		if op == "create" && !strings.HasPrefix(name, install.StagingDir+"/") {
			r.overrMu.Lock()
			r.overrun = fmt.Errorf("%s %s, outside staging", op, name)
			r.overrMu.Unlock()
		}
		return nil
	}
	r.man = manifesttest.New(t, "7.00.240501A", manifest.File{Path: "app.bin", Size: int64(len(r.next)), Mode: 0o755, MtimeNs: time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC).UnixNano(), Hash: blake3.Sum256(r.next)})
	if r.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.ln.Close() })
	return r
}

// run has the server send msgs for file 0, asked for as a patch of
// offered bytes, and returns the Fetch's error.
func (r *patchRig) run(t testing.TB, offered uint64, msgs ...syncproto.Message) error {
	t.Helper()
	go func() {
		nc, err := r.ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		w := syncproto.NewWriter(nc)
		for _, m := range msgs {
			if w.Write(m) != nil {
				return
			}
		}
		w.Flush()
		// Then the server hangs up: a client that waits for more gets
		// EOF, not a timeout.
		nc.(*net.TCPConn).CloseWrite()
		nc.Read(make([]byte, 1))
	}()
	nc, err := net.Dial("tcp", r.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := session.New(nc, 5*time.Second)
	d := &Delta{patch: &syncproto.PatchRef{Index: 0, Base: blake3.Sum256(r.old), Size: offered},
		baseSize: r.baseInfo.Size(), baseMtime: r.baseInfo.ModTime().UnixNano()}
	if err := r.disk.MkdirAll(install.StagingDir, 0o755); err != nil {
		t.Fatal(err)
	}
	fe := New(c, r.disk, r.man, map[int]*Delta{0: d}, nopProgress{}, slog.New(slog.DiscardHandler))
	return fe.Fetch(context.Background(), []int{0})
}

// check checks what must hold after any patch: the installed file as it
// was, nothing written past the declared size or outside staging, and a
// staged file only when the Fetch succeeded, with the new content.
func (r *patchRig) check(t testing.TB, err error) {
	t.Helper()
	r.overrMu.Lock()
	if r.overrun != nil {
		t.Fatalf("%v", r.overrun)
	}
	r.overrMu.Unlock()
	if got, rerr := os.ReadFile(filepath.Join(r.dir, "app.bin")); rerr != nil || !bytes.Equal(got, r.old) {
		t.Fatalf("the installed file changed: %v", rerr)
	}
	staged, serr := os.ReadFile(filepath.Join(r.dir, filepath.FromSlash(install.StagingDir), "app.bin"))
	switch {
	case err == nil && (serr != nil || !bytes.Equal(staged, r.next)):
		t.Fatalf("the patch applied, but staged %d bytes, %v; want the new file", len(staged), serr)
	case err != nil && !errors.Is(serr, fs.ErrNotExist):
		t.Fatalf("failed with %v, and left %d bytes staged (%v)", err, len(staged), serr)
	}
	os.RemoveAll(filepath.Join(r.dir, filepath.FromSlash(install.StagingDir)))
}

type nopProgress struct{}

func (nopProgress) Add(int64) {}
func (nopProgress) FileDone() {}

// patchFrames is FileStart, the patch in FilePatch frames of at most
// chunk bytes, and FileEnd with hash.
func patchFrames(size int, patch []byte, chunk int, hash [32]byte) []syncproto.Message {
	msgs := []syncproto.Message{syncproto.FileStart{Index: 0, Size: uint64(size)}}
	for len(patch) > 0 {
		n := min(len(patch), chunk)
		msgs = append(msgs, syncproto.FilePatch{Data: patch[:n]})
		patch = patch[n:]
	}
	return append(msgs, syncproto.FileEnd{Hash: hash})
}

// TestReceivePatch: a patch received in frames of any size rebuilds the
// file in staging; the whole file instead of the patch does too; every
// lie about a patch is refused with an error naming the file, nothing
// staged and the installed file as it was.
func TestReceivePatch(t *testing.T) {
	r := newPatchRig(t, 300<<10)
	patch := makePatch(t, r.old, r.next)
	size, sum := len(r.next), blake3.Sum256(r.next)
	if len(patch) >= size/10 {
		t.Fatalf("a patch of %d bytes for %d changed here and there: the pair is not what the test needs", len(patch), size)
	}
	longer := makePatch(t, r.old, append(bytes.Clone(r.next), "more"...))
	// A patch whose header declares the file's size and whose segments
	// rebuild more: the one for the longer file, its header's size cut.
	overrun := bytes.Clone(longer)
	copy(overrun[12:20], patch[12:20])
	wrong := bytes.Clone(r.next)
	wrong[5] ^= 1
	wrongPatch := makePatch(t, r.old, wrong)
	whole := func(data []byte) []syncproto.Message {
		msgs := []syncproto.Message{syncproto.FileStart{Index: 0, Size: uint64(size)}}
		for len(data) > 0 {
			n := min(len(data), syncproto.MaxChunk)
			msgs = append(msgs, syncproto.FileData{Encoding: syncproto.EncodingRaw, RawLen: uint32(n), Data: data[:n]})
			data = data[n:]
		}
		return append(msgs, syncproto.FileEnd{Hash: sum})
	}
	frames := func(p []byte) []syncproto.Message { return patchFrames(size, p, syncproto.MaxChunk, sum) }
	tests := []struct {
		name    string
		offered int
		msgs    []syncproto.Message
		want    error
		wantMsg string
	}{
		{"the patch in frames of MaxChunk", len(patch), frames(patch), nil, ""},
		{"the patch in frames of 7 bytes", len(patch), patchFrames(size, patch, 7, sum), nil, ""},
		{"the whole file instead", len(patch), whole(r.next), nil, ""},
		{"a patch rebuilding more bytes than declared", len(overrun), frames(overrun), ErrVerify, "does not apply"},
		{"a patch made for a longer file", len(longer), frames(longer), ErrVerify, "does not apply"},
		{"a patch of other content, with the manifest's hash", len(wrongPatch), frames(wrongPatch), ErrVerify, "content has BLAKE3"},
		{"a truncated patch, as offered", len(patch) - 10, frames(patch[:len(patch)-10]), ErrVerify, "does not apply"},
		{"a truncated patch, offered whole", len(patch), frames(patch[:len(patch)-10]), ErrVerify, fmt.Sprintf("ended after %d of the %d bytes offered", len(patch)-10, len(patch))},
		{"a patch longer than offered", len(patch) - 1, frames(patch), ErrVerify, fmt.Sprintf("longer than the %d bytes offered", len(patch)-1)},
		{"bytes after the patch's end", len(patch) + 3, frames(append(bytes.Clone(patch), 1, 2, 3)), ErrVerify, "bytes after the last segment"},
		{"FileData after FilePatch", len(patch), append(frames(patch)[:2:2], syncproto.FileData{RawLen: 1, Data: []byte("x")}), syncproto.ErrUnexpected, "mixed FileData into a patch"},
		{"FilePatch after FileData", len(patch), append(whole(r.next)[:2:2], syncproto.FilePatch{Data: patch}), syncproto.ErrUnexpected, "mixed FilePatch into a file sent whole"},
		{"FileCopy in a patch", len(patch), append(frames(patch)[:2:2], syncproto.FileCopy{Off: 0, Len: 1}), syncproto.ErrUnexpected, "expected FilePatch or FileEnd, got FileCopy"},
		{"FileEnd at once", len(patch), []syncproto.Message{syncproto.FileStart{Index: 0, Size: uint64(size)}, syncproto.FileEnd{Hash: sum}}, syncproto.ErrUnexpected, "expected FilePatch or FileData"},
		{"hang-up within the patch", len(patch), frames(patch)[:2], nil, "app.bin"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := r.run(t, uint64(tc.offered), tc.msgs...)
			switch {
			case tc.want == nil && tc.wantMsg == "" && err != nil:
				t.Fatalf("got %v; want the file", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("got %v; want %v", err, tc.want)
			case tc.wantMsg != "" && (err == nil || !strings.Contains(err.Error(), tc.wantMsg) || !strings.Contains(err.Error(), "app.bin")):
				t.Fatalf("got %v; want an error naming app.bin and saying %q", err, tc.wantMsg)
			}
			r.check(t, err)
		})
	}
	t.Run("a base changed since the plan", func(t *testing.T) {
		later := r.baseInfo.ModTime().Add(time.Second)
		p := filepath.Join(r.dir, "app.bin")
		os.Chtimes(p, later, later)
		defer os.Chtimes(p, r.baseInfo.ModTime(), r.baseInfo.ModTime())
		err := r.run(t, uint64(len(patch)), frames(patch)...)
		if err == nil || !strings.Contains(err.Error(), "the installed version changed") {
			t.Fatalf("got %v; want the changed base refused", err)
		}
	})
}

// FuzzReceivePatch: whatever the server sends as the patch of a file,
// the client writes no byte past the size declared nor outside staging,
// leaves a staged file only when it is the manifest's, leaves the
// installed file alone, and does not panic.
func FuzzReceivePatch(f *testing.F) {
	r := newPatchRig(f, 8<<10)
	patch := makePatch(f, r.old, r.next)
	f.Add(patch)
	f.Add(patch[:len(patch)/2])
	f.Add(makePatch(f, r.old, append(bytes.Clone(r.next), "more"...)))
	f.Add(makePatch(f, r.next, r.old))
	f.Add([]byte("SZP1"))
	size, sum := len(r.next), blake3.Sum256(r.next)
	f.Fuzz(func(t *testing.T, data []byte) {
		err := r.run(t, uint64(len(data)), patchFrames(size, data, syncproto.MaxChunk, sum)...)
		r.check(t, err)
	})
}
