package appserver

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/cdc"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/zeebo/blake3"
)

// blockRequest is the request a client makes for base in blocks of bs.
func blockRequest(base []byte, bs int) *syncproto.BlockRequest {
	r := &syncproto.BlockRequest{BlockSize: uint32(bs), BaseSize: uint64(len(base))}
	for k := 0; k < len(base); k += bs {
		p := base[k:min(k+bs, len(base))]
		r.Sums = append(r.Sums, syncproto.BlockSum{Weak: cdc.WeakSum(p).Weak(), Strong: cdc.StrongSum(p)})
	}
	return r
}

// rebuild applies pieces to base as the client does, and returns the file
// and the bytes that were sent as data. It fails the test on a piece out
// of bounds or out of order.
func rebuild(t testing.TB, base, data []byte, pieces []piece) ([]byte, int) {
	t.Helper()
	var out []byte
	lit := 0
	for _, p := range pieces {
		switch {
		case p.Len <= 0:
			t.Fatalf("empty piece %+v", p)
		case p.Copy && p.Off+p.Len > int64(len(base)):
			t.Fatalf("copy %+v past the base's %d bytes", p, len(base))
		case p.Copy:
			out = append(out, base[p.Off:p.Off+p.Len]...)
		case p.Off != int64(len(out)) || p.Off+p.Len > int64(len(data)):
			t.Fatalf("data %+v not at the file's next byte %d (file of %d)", p, len(out), len(data))
		default:
			out = append(out, data[p.Off:p.Off+p.Len]...)
			lit += int(p.Len)
		}
	}
	return out, lit
}

func TestMatchBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	base := random(100_000)
	const bs = 512
	tests := []struct {
		name    string
		base    []byte
		data    []byte
		maxData int // at most this many bytes sent as data
		minData int // and at least this many
		pieces  int // exactly this many pieces, when not 0
	}{
		{"same file", base, base, 0, 0, 1},
		{"empty file", base, nil, 0, 0, 0},
		{"new bytes only", base, random(5000), 5000, 5000, 1},
		{"overwrite in the middle", base, slices.Concat(base[:50_000], random(1000), base[51_000:]), 1000 + 2*bs, 1000, 3},
		{"insert shifts the rest", base, slices.Concat(base[:30_001], random(77), base[30_001:]), 77 + bs, 77, 3},
		// Less than a block lost on each side of the cut.
		{"cut shifts the rest", base, slices.Concat(base[:30_001], base[31_000:]), 2 * bs, 0, 0},
		// The short last block (160 bytes) is looked for at the end
		// only, as rsync does.
		{"grown at the end", base, slices.Concat(base, random(10)), 170, 170, 0},
		{"the short last block at the end", base, base[len(base)-100_000%bs:], 0, 0, 1},
		{"blocks moved around", base, slices.Concat(base[50_000:], base[:50_000]), 3 * bs, 0, 0},
		{"a base of zeros", make([]byte, 10*bs), make([]byte, 25*bs+3), 3, 3, 0},
		{"file shorter than a block", base, base[:bs-1], bs - 1, bs - 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pieces := matchBlocks(tc.data, blockRequest(tc.base, bs))
			got, lit := rebuild(t, tc.base, tc.data, pieces)
			if !bytes.Equal(got, tc.data) {
				t.Fatalf("rebuilt %d bytes, not the file's %d", len(got), len(tc.data))
			}
			if lit > tc.maxData || lit < tc.minData {
				t.Errorf("%d bytes sent as data, want %d..%d", lit, tc.minData, tc.maxData)
			}
			if tc.pieces != 0 && len(pieces) != tc.pieces {
				t.Errorf("%d pieces, want %d (copies of consecutive blocks merged): %+v", len(pieces), tc.pieces, pieces)
			}
		})
	}
}

// TestMatchBlocksHostileSums: sums a client made up cost the server a
// bounded amount of hashing and still give pieces within bounds; the
// client's check of the whole file catches what they copy wrongly.
func TestMatchBlocksHostileSums(t *testing.T) {
	data := bytes.Repeat([]byte("abcdefgh"), 1<<17) // 1 MiB
	const bs = 64
	// Every block has the weak sum of every window of data (all windows
	// are alike), but none the strong one: each offset is a weak match.
	w := cdc.WeakSum(data[:bs]).Weak()
	req := &syncproto.BlockRequest{BlockSize: bs, BaseSize: bs * syncproto.MaxBlockSums, Sums: make([]syncproto.BlockSum, syncproto.MaxBlockSums)}
	for i := range req.Sums {
		req.Sums[i] = syncproto.BlockSum{Weak: w, Strong: ^cdc.StrongSum(data[:bs])}
	}
	pieces := matchBlocks(data, req)
	if len(pieces) != 1 || pieces[0].Copy || pieces[0].Len != int64(len(data)) {
		t.Errorf("pieces %+v; want the whole file as data", pieces[:min(3, len(pieces))])
	}
	if _, lit := rebuild(t, make([]byte, req.BaseSize), data, pieces); lit != len(data) {
		t.Errorf("%d bytes of data, want %d", lit, len(data))
	}
}

func FuzzMatchBlocks(f *testing.F) {
	f.Add([]byte("the quick brown fox jumps over the lazy dog, again and again"), []byte("the quick brown cat jumps over the lazy dog, again and again!"), uint8(0))
	f.Add(bytes.Repeat([]byte{0}, 300), bytes.Repeat([]byte{0}, 1000), uint8(3))
	f.Fuzz(func(t *testing.T, base, data []byte, k uint8) {
		if len(base) == 0 {
			return
		}
		bs := syncproto.MinBlockSize + int(k)
		got, _ := rebuild(t, base, data, matchBlocks(data, blockRequest(base, bs)))
		if !bytes.Equal(got, data) {
			t.Fatalf("rebuilt %q, want %q", got, data)
		}
	})
}

// TestServerBlockDelta: a client that names an older version of a small
// file by its blocks gets the new one as copies of those blocks, found at
// any offset, and data for the rest, among whole files; a block request
// for a file over MaxBlockFile is refused.
func TestServerBlockDelta(t *testing.T) {
	old := randomBytes(300<<10, 31)
	// The new version: 1000 bytes overwritten, 77 inserted, 500 cut.
	newer := slices.Clone(old)
	copy(newer[10_000:], randomBytes(1000, 32))
	newer = slices.Concat(newer[:150_001], randomBytes(77, 33), newer[150_001:250_000], newer[250_500:])
	files := map[string]string{
		"a.ini":   "x=1\n",
		"app.bin": string(newer),
		"big.bin": string(randomBytes(syncproto.MaxBlockFile+1, 34)),
	}
	dir := t.TempDir()
	writeTree(t, dir, files, oldTime)
	ts := startServer(t, linuxConfig(t, dir), nil, nil)

	c := mustDial(t, ts.addr)
	if _, err := c.hello(srvBuild, "linux", "blocks"); err != nil {
		t.Fatal(err)
	}
	_, entries, err := c.manifestWith(syncproto.GetManifest{Flags: syncproto.GetRaw})
	if err != nil {
		t.Fatal(err)
	}
	ix := indexOf(entries)
	bs := cdc.BlockSize(int64(len(old)))
	req := blockRequest(old, bs)
	req.Index = ix["app.bin"]
	if err := c.send(*req, syncproto.Request{Indices: []uint32{ix["a.ini"]}}, syncproto.RequestEnd{}); err != nil {
		t.Fatal(err)
	}
	dec, err := syncproto.NewChunkDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	got, err := c.receiveDelta(dec, ix["app.bin"], 0, old, false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.data, newer) || got.hash != blake3.Sum256(newer) {
		t.Fatalf("app.bin: received %d bytes, not the new version's %d", len(got.data), len(newer))
	}
	// Each edit costs its own bytes and less than a block on each side.
	if least := int64(len(newer) - 1000 - 77 - 6*bs); got.copied < least {
		t.Errorf("%d bytes copied from the base, want at least %d", got.copied, least)
	}
	if w, err := c.receiveFile(dec, ix["a.ini"]); err != nil || string(w.data) != files["a.ini"] {
		t.Fatalf("a.ini after the block delta: %q, %v", w.data, err)
	}

	bad := mustDial(t, ts.addr)
	if _, err := bad.hello(srvBuild, "linux", "blocks-too-big"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := bad.manifest(); err != nil {
		t.Fatal(err)
	}
	req = blockRequest(old, bs)
	req.Index = ix["big.bin"]
	if err := bad.send(*req, syncproto.RequestEnd{}); err != nil {
		t.Fatal(err)
	}
	bad.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if codes, err := bad.readUntilClosed(); err != nil || !slices.Equal(codes, []syncproto.Code{syncproto.CodeBadRequest}) {
		t.Errorf("block request for big.bin: codes %v, %v; want [%v]", codes, err, syncproto.CodeBadRequest)
	}
	if !strings.Contains(ts.logs.String(), fmt.Sprintf("big.bin has %d bytes; block requests are for files of at most %d", syncproto.MaxBlockFile+1, syncproto.MaxBlockFile)) {
		t.Errorf("the server's log does not say why it refused: %s", ts.logs.String())
	}
}

// BenchmarkMatchBlocks is the server's work for one block delta: a file
// of 1 MiB (the largest asked for by blocks) rebuilt in 8 places, 30% of
// it new, against its base's blocks.
func BenchmarkMatchBlocks(b *testing.B) {
	base := randomBytes(syncproto.MaxBlockFile, 41)
	data := slices.Clone(base)
	for k := range 8 {
		at := k * len(data) / 8
		copy(data[at:at+len(data)*3/80], randomBytes(len(data)*3/80, byte(50+k)))
	}
	req := blockRequest(base, cdc.BlockSize(int64(len(base))))
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if len(matchBlocks(data, req)) < 16 {
			b.Fatal("fewer pieces than edits")
		}
	}
}
