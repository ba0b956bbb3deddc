package appserver

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/releases"
	"github.com/erpupdate/smartsync/internal/zpatch"
	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/zeebo/blake3"
)

// rebuilt returns a "rebuilt executable" of old: the same bytes with
// small changes spread all over, as a new build makes.
func rebuilt(old []byte, seed uint64) []byte {
	b := bytes.Clone(old)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := 0; i < len(b); i += 1000 + r.IntN(3000) {
		b[i] ^= byte(1 + r.IntN(255))
	}
	return append(b, "tail of the new build"...)
}

func randomText(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = "abcdefghij klmnop\n"[r.IntN(18)]
	}
	return b
}

// waitOffers opens sessions with GetPatches until the manifest comes with
// at least n offers.
func waitOffers(t *testing.T, addr string, n int) *viewSession {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := openSessionWith(t, addr, "p", syncproto.GetManifest{Flags: syncproto.GetPatches})
		if len(s.offers) >= n {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d patches offered after 20 s, want %d", len(s.offers), n)
		}
		s.c.conn.Close()
		time.Sleep(50 * time.Millisecond)
	}
}

// receivePatch requests file index as the patch from base and returns
// what FileStart, the FilePatch frames and FileEnd carried; data is set
// instead when the server sent the file whole.
func receivePatch(t *testing.T, s *viewSession, index uint32, base [32]byte) (patch, data []byte, end [32]byte) {
	t.Helper()
	if err := s.c.send(syncproto.PatchRequest{Index: index, Base: base}, syncproto.RequestEnd{}); err != nil {
		t.Fatal(err)
	}
	m, err := s.c.r.Expect(syncproto.MsgFileStart)
	if err != nil {
		t.Fatal(err)
	}
	if fs := m.(syncproto.FileStart); fs.Index != index || fs.Size != s.entries[index].Size {
		t.Fatalf("FileStart %+v", fs)
	}
	dec, err := syncproto.NewChunkDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	for {
		m, err := s.c.r.Read()
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case syncproto.FilePatch:
			patch = append(patch, m.Data...)
		case syncproto.FileData:
			chunk, err := syncproto.DecodeChunk(dec, m, nil)
			if err != nil {
				t.Fatal(err)
			}
			data = append(data, chunk...)
		case syncproto.FileEnd:
			return patch, data, m.Hash
		default:
			t.Fatalf("got %v inside a file", m.Type())
		}
	}
}

// TestPatchFromHistory: once a release is published over an older one,
// the server makes the patch of each changed file in the background and
// offers it; a client that holds the old file gets the patch, which
// rebuilds the new file exactly. A patch damaged in the cache is found
// before it is sent: the file goes whole, and the patch is made again. A
// patch that was not offered is refused.
func TestPatchFromHistory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"keep": "folder"}, oldTime)
	cfg := linuxConfig(t, dir)
	state := t.TempDir()
	exe1 := randomText(300<<10, 1)
	exe2 := rebuilt(exe1, 2)
	publishTree(t, cfg, state, pubBuild2, map[string]string{"bin/app": string(exe1), "small": "same"}, nil)
	publishTree(t, cfg, state, pubBuild3, map[string]string{"bin/app": string(exe2), "small": "same"}, nil)
	ts := startServerIn(t, cfg, state, nil, nil)

	s := waitOffers(t, ts.addr, 1)
	if len(s.offers) != 1 {
		t.Fatalf("offers %+v; want one, for bin/app", s.offers)
	}
	o := s.offers[0]
	if s.entries[o.Index].Path != "bin/app" || o.Base != blake3.Sum256(exe1) || o.Size >= uint64(len(exe2))/4 {
		t.Fatalf("offer %+v for %s; want bin/app from the old build, a fraction of its %d bytes", o, s.entries[o.Index].Path, len(exe2))
	}
	patch, data, end := receivePatch(t, s, o.Index, o.Base)
	if data != nil || uint64(len(patch)) != o.Size {
		t.Fatalf("got %d patch bytes and %d whole; want the %d offered", len(patch), len(data), o.Size)
	}
	var got bytes.Buffer
	if err := zpatch.Apply(context.Background(), &got, bytes.NewReader(exe1), int64(len(exe1)), bytes.NewReader(patch), int64(len(exe2))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), exe2) || end != blake3.Sum256(exe2) {
		t.Fatal("the patch does not rebuild the new file")
	}
	t.Logf("patch of %d bytes for a file of %d", len(patch), len(exe2))

	// The cache entry is damaged: the file is sent whole instead.
	store := releases.At(state)
	path := store.Dir + "/patches/" + releases.Hash(o.Base).String() + "-" + releases.Hash(s.entries[o.Index].Hash).String() + ".zp"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	s = openSessionWith(t, ts.addr, "q", syncproto.GetManifest{Flags: syncproto.GetPatches})
	if len(s.offers) != 1 {
		t.Fatalf("offers %+v", s.offers)
	}
	patch, data, end = receivePatch(t, s, o.Index, o.Base)
	if patch != nil || !bytes.Equal(data, exe2) || end != blake3.Sum256(exe2) {
		t.Fatalf("for a damaged patch the server sent %d patch bytes and %d whole; want the file whole", len(patch), len(data))
	}
	if !strings.Contains(ts.logs.String(), "damaged patch") {
		t.Errorf("the log does not name the damaged patch:\n%s", ts.logs)
	}
	// It is made again.
	s = waitOffers(t, ts.addr, 1)
	patch, _, _ = receivePatch(t, s, o.Index, o.Base)
	got.Reset()
	if err := zpatch.Apply(context.Background(), &got, bytes.NewReader(exe1), int64(len(exe1)), bytes.NewReader(patch), int64(len(exe2))); err != nil || !bytes.Equal(got.Bytes(), exe2) {
		t.Fatalf("the patch made again: %v", err)
	}

	// A patch not offered: from another base, or for a file without one.
	for _, req := range []syncproto.PatchRequest{{Index: o.Index, Base: [32]byte{1}}, {Index: 1 - o.Index, Base: o.Base}} {
		s = openSessionWith(t, ts.addr, "r", syncproto.GetManifest{Flags: syncproto.GetPatches})
		if err := s.c.send(req, syncproto.RequestEnd{}); err != nil {
			t.Fatal(err)
		}
		_, err := s.c.r.Read()
		var pe *syncproto.Error
		if !errors.As(err, &pe) || pe.Code != syncproto.CodeBadRequest || !strings.Contains(pe.Message, "no patch from") {
			t.Errorf("a request for a patch not offered: %v", err)
		}
	}
}

// TestNoOffersWithoutGetPatches: a client that does not ask gets no
// PatchOffer (a version-7 client without patches, or a test tool).
func TestNoOffersWithoutGetPatches(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"keep": "folder"}, oldTime)
	cfg := linuxConfig(t, dir)
	state := t.TempDir()
	exe1 := randomText(100<<10, 3)
	publishTree(t, cfg, state, pubBuild2, map[string]string{"app": string(exe1)}, nil)
	publishTree(t, cfg, state, pubBuild3, map[string]string{"app": string(rebuilt(exe1, 4))}, nil)
	ts := startServerIn(t, cfg, state, nil, nil)
	waitOffers(t, ts.addr, 1)
	s := openSession(t, ts.addr, "x")
	if got := s.fetchAll(t); len(got) != 1 {
		t.Fatalf("got %d files", len(got))
	}
}

// TestClientAppliesPatchFromHistory: a real smartclient that installed
// one published release gets the next one's changed file as a patch from
// history, rebuilt byte for byte, for a fraction of the file on the wire.
func TestClientAppliesPatchFromHistory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"keep": "folder"}, oldTime)
	cfg := linuxConfig(t, dir)
	state := t.TempDir()
	exe1 := randomText(300<<10, 1)
	exe2 := rebuilt(exe1, 2)
	publishTree(t, cfg, state, pubBuild2, map[string]string{"bin/app": string(exe1), "small": "same"}, nil)
	ts := startServerIn(t, cfg, state, nil, nil)
	inst := filepath.Join(t.TempDir(), "inst")
	o := smartclient.Options{Dir: inst, Server: ts.addr, OS: "linux", Yes: true, AllowUnsigned: true, Timeout: 5 * time.Second}
	if _, err := smartclient.Sync(context.Background(), o); err != nil {
		t.Fatalf("first sync: %v", err)
	}
	publishTree(t, cfg, state, pubBuild3, map[string]string{"bin/app": string(exe2), "small": "same"}, nil)
	waitOffers(t, ts.addr, 1)
	res, err := smartclient.Sync(context.Background(), o)
	if err != nil {
		t.Fatalf("second sync: %v", err)
	}
	got, _ := os.ReadFile(filepath.Join(inst, "bin", "app"))
	if !bytes.Equal(got, exe2) || res.Patched != 1 || res.WireBytes > int64(len(exe2))/4 {
		t.Fatalf("bin/app %d bytes, %d patched, %d on the wire; want the new build as a patch", len(got), res.Patched, res.WireBytes)
	}
	// The server records the client on release 2, which `releases`
	// counts once the record is written (at the latest when it stops).
	if err := ts.stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	list, err := ListReleases(state)
	if err != nil || len(list) != 2 || list[0].Clients != 0 || list[1].Clients != 1 {
		t.Errorf("ListReleases after the sync: %+v, %v; want the client on release 2", list, err)
	}
}
