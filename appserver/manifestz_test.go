package appserver

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/syncproto"
)

// frameReader is where a test client reads the frames after the
// manifest's header: the connection, or the stream of ManifestZ frames.
type frameReader interface {
	ReadRaw() (syncproto.MsgType, []byte, error)
}

// rawFrames reads frames from r, re-encoded as they came, up to and with
// the first of type last, or n of them when last is 0.
func rawFrames(r frameReader, n int, last syncproto.MsgType) ([]byte, error) {
	var b []byte
	for k := 0; last != 0 || k < n; k++ {
		t, p, err := r.ReadRaw()
		if err != nil {
			return b, fmt.Errorf("frame %d: %w", k, err)
		}
		b = append(b, syncproto.Magic[0], syncproto.Magic[1], syncproto.Version, byte(t), 0, 0, 0, 0)
		binary.BigEndian.PutUint32(b[len(b)-4:], uint32(len(p)))
		b = append(b, p...)
		if t == last {
			break
		}
	}
	return b, nil
}

// afterHeader asks for the manifest with get, naming kept by its sketch
// when get has GetSketch, and returns the frames after the header as they
// came, decompressed when get has GetZManifest (checking that they end
// where the stream does), and how many bytes that took on the wire.
func (c *testClient) afterHeader(get syncproto.GetManifest, kept []syncproto.ManifestEntry) ([]byte, int64, error) {
	if err := c.send(get); err != nil {
		return nil, 0, err
	}
	m, err := c.r.Expect(syncproto.MsgManifestHeader)
	if err != nil {
		return nil, 0, err
	}
	h := m.(syncproto.ManifestHeader)
	n, last := int(h.Count), syncproto.MsgType(0)
	if get.Flags&syncproto.GetSketch != 0 {
		var sums []uint64
		for _, e := range kept {
			v, _ := syncproto.EntrySketch(e, nil)
			sums = append(sums, v)
		}
		if err := c.send(syncproto.Sketch{Sums: sums}); err != nil {
			return nil, 0, err
		}
		last = syncproto.MsgManifestEnd
	}
	start := c.r.N
	var r frameReader = c.r
	var z *syncproto.ZReader
	if get.Flags&syncproto.GetZManifest != 0 {
		if z, err = syncproto.NewZReader(c.r, syncproto.MaxManifestZ(h.Count)); err != nil {
			return nil, 0, err
		}
		defer z.Close()
		r = z
	}
	b, err := rawFrames(r, n, last)
	if err == nil && z != nil {
		err = z.End()
	}
	if err == nil && get.Flags&syncproto.GetPatches != 0 {
		// The offers come after the manifest, uncompressed.
		_, err = c.r.Expect(syncproto.MsgPatchOffer)
	}
	return b, c.r.N - start, err
}

// TestServerManifestZ: a client that asks for the manifest compressed
// (GetZManifest) gets, after the same header, ManifestZ frames that
// decompress to exactly the frames a client that does not ask gets, whole
// or by sketch, and end with them; the patch offers follow uncompressed.
func TestServerManifestZ(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{}
	for i := range 3000 {
		files[fmt.Sprintf("lib/pkg%02d/file%04d.go", i%40, i)] = fmt.Sprint("content ", i)
	}
	writeTree(t, dir, files, oldTime)
	ts := startServer(t, linuxConfig(t, dir), nil, nil)
	dial := func() *testClient {
		c := mustDial(t, ts.addr)
		c.conn.SetDeadline(time.Now().Add(time.Minute))
		if _, err := c.hello(srvBuild, "linux", "z"); err != nil {
			t.Fatal(err)
		}
		return c
	}
	_, current, err := dial().manifest()
	if err != nil {
		t.Fatal(err)
	}
	// A client that keeps the manifest with every tenth entry older.
	kept := slices.Clone(current)
	for i := range kept {
		if i%10 == 0 {
			kept[i].MtimeNs--
		}
	}
	for _, tc := range []struct {
		name  string
		flags uint8
	}{
		{"whole", 0},
		{"whole with patch offers", syncproto.GetPatches},
		{"by sketch", syncproto.GetSketch},
		{"by sketch with patch offers", syncproto.GetSketch | syncproto.GetPatches},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plain, plainWire, err := dial().afterHeader(syncproto.GetManifest{Flags: tc.flags}, kept)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 { // the second whole one comes from the cache
				got, zWire, err := dial().afterHeader(syncproto.GetManifest{Flags: tc.flags | syncproto.GetZManifest}, kept)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, plain) {
					t.Fatalf("the compressed frames decompress to %d bytes, not the %d sent plain", len(got), len(plain))
				}
				if zWire >= plainWire/2 {
					t.Errorf("%d bytes on the wire compressed, %d plain", zWire, plainWire)
				}
				t.Logf("%d bytes plain, %d compressed", plainWire, zWire)
			}
		})
	}
}
