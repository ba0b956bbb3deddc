package appserver

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/syncproto"
)

// manifestBySketch asks for the manifest naming kept by its sketch, and
// rebuilds it as a client does: the entries, how many came whole, and the
// runs.
func (c *testClient) manifestBySketch(kept []syncproto.ManifestEntry) (entries []syncproto.ManifestEntry, whole int, runs []syncproto.ManifestSame, err error) {
	if err := c.send(syncproto.GetManifest{Flags: syncproto.GetSketch}); err != nil {
		return nil, 0, nil, err
	}
	m, err := c.r.Expect(syncproto.MsgManifestHeader)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("waiting for ManifestHeader: %w", err)
	}
	h := m.(syncproto.ManifestHeader)
	var sums []uint64
	for _, e := range kept {
		v, _ := syncproto.EntrySketch(e, nil)
		sums = append(sums, v)
	}
	if err := c.send(syncproto.Sketch{Sums: sums}); err != nil {
		return nil, 0, nil, err
	}
	d := syncproto.NewDigester(h)
	for uint32(len(entries)) < h.Count {
		m, err := c.r.Read()
		if err != nil {
			return nil, 0, nil, fmt.Errorf("entry %d of %d: %w", len(entries), h.Count, err)
		}
		switch m := m.(type) {
		case syncproto.ManifestEntry:
			entries = append(entries, m)
			whole++
			d.Add(m)
		case syncproto.ManifestSame:
			if len(runs) > 0 && m.From < runs[len(runs)-1].From+runs[len(runs)-1].Count {
				return nil, 0, nil, fmt.Errorf("run %+v goes back before %+v", m, runs[len(runs)-1])
			}
			runs = append(runs, m)
			for _, e := range kept[m.From : m.From+m.Count] {
				entries = append(entries, e)
				d.Add(e)
			}
		default:
			return nil, 0, nil, fmt.Errorf("got %v among the entries", m.Type())
		}
	}
	m, err = c.r.Expect(syncproto.MsgManifestEnd)
	if err != nil {
		return nil, 0, nil, err
	}
	if m.(syncproto.ManifestEnd).Digest != d.Sum() {
		return nil, 0, nil, fmt.Errorf("ManifestEnd's digest is not that of the manifest rebuilt")
	}
	return entries, whole, runs, nil
}

// TestServerManifestBySketch: a client that names the entries it keeps
// gets the others whole and the rest as runs of its own, in increasing
// order, and the digest of the whole; the manifest rebuilt is the one a
// client asking without a sketch gets.
func TestServerManifestBySketch(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{}
	for i := range 20 {
		files[fmt.Sprintf("lib/f%02d.bin", i)] = fmt.Sprint("content ", i)
	}
	writeTree(t, dir, files, oldTime)
	ts := startServer(t, linuxConfig(t, dir), nil, nil)
	c := mustDial(t, ts.addr)
	if _, err := c.hello(srvBuild, "linux", "sketch"); err != nil {
		t.Fatal(err)
	}
	_, current, err := c.manifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(current) != 20 {
		t.Fatalf("%d entries, want 20", len(current))
	}
	changed := slices.Clone(current)
	changed[3].Hash[0] ^= 1
	changed[11].MtimeNs++
	stranger := syncproto.ManifestEntry{Path: "gone.txt", Size: 1, Hash: [32]byte{7}}
	reversed := slices.Clone(current)
	slices.Reverse(reversed)
	tests := []struct {
		name  string
		kept  []syncproto.ManifestEntry
		whole int
		runs  int
	}{
		{"the same manifest", current, 0, 1},
		{"nothing kept", nil, 20, 0},
		{"two entries changed", changed, 2, 3},
		{"one gone, one more kept", slices.Concat([]syncproto.ManifestEntry{stranger}, current[:5], current[6:]), 1, 2},
		// The first entry is the client's last: after that run, none
		// of the client's earlier ones may follow.
		{"kept in reverse order", reversed, 19, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustDial(t, ts.addr)
			c.conn.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.hello(srvBuild, "linux", "sketch"); err != nil {
				t.Fatal(err)
			}
			got, whole, runs, err := c.manifestBySketch(tc.kept)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, current) {
				t.Errorf("rebuilt manifest differs from the whole one")
			}
			if whole != tc.whole || len(runs) != tc.runs {
				t.Errorf("%d entries whole and runs %+v; want %d whole, %d runs", whole, runs, tc.whole, tc.runs)
			}
		})
	}
}

// TestServerHostileSketch: a client that sends something else than its
// sketch, or a sketch of more than MaxFiles entries, is refused with the
// code that says so; a sketch past what the server looks up is read, and
// its entries past that come whole.
func TestServerHostileSketch(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"a.txt": "a", "b.txt": "b"}, oldTime)
	ts := startServer(t, linuxConfig(t, dir), nil, nil)
	full := syncproto.Sketch{More: true, Sums: make([]uint64, syncproto.MaxSketchSums)}
	for _, tc := range []struct {
		name   string
		attack func(c *testClient) error
		code   syncproto.Code
	}{
		{"a request instead of the sketch", func(c *testClient) error {
			return c.send(syncproto.Request{Indices: []uint32{0}})
		}, syncproto.CodeProtocol},
		{"a sketch of more than MaxFiles entries", func(c *testClient) error {
			for range syncproto.MaxFiles / syncproto.MaxSketchSums {
				if err := c.w.Write(full); err != nil {
					return err
				}
			}
			return c.send(syncproto.Sketch{Sums: []uint64{1}})
		}, syncproto.CodeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustDial(t, ts.addr)
			c.conn.SetDeadline(time.Now().Add(time.Minute))
			if _, err := c.hello(srvBuild, "linux", "hostile-sketch"); err != nil {
				t.Fatal(err)
			}
			if err := c.send(syncproto.GetManifest{Flags: syncproto.GetSketch}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.r.Expect(syncproto.MsgManifestHeader); err != nil {
				t.Fatal(err)
			}
			if err := tc.attack(c); err != nil {
				t.Fatalf("attack: %v", err)
			}
			if codes, err := c.readUntilClosed(); err != nil || !slices.Equal(codes, []syncproto.Code{tc.code}) {
				t.Errorf("codes %v, %v; want [%v]", codes, err, tc.code)
			}
		})
	}
	t.Run("a sketch past the lookup limit", func(t *testing.T) {
		var current []syncproto.ManifestEntry
		var c *testClient
		for _, id := range []string{"whole", "long-sketch"} {
			c = mustDial(t, ts.addr)
			c.conn.SetDeadline(time.Now().Add(time.Minute))
			if _, err := c.hello(srvBuild, "linux", id); err != nil {
				t.Fatal(err)
			}
			if current == nil {
				var err error
				if _, current, err = c.manifest(); err != nil {
					t.Fatal(err)
				}
			}
		}
		// The manifest's entries after more strangers than the server
		// looks up: they come whole.
		kept := slices.Concat(make([]syncproto.ManifestEntry, 2*len(current)+1024), current)
		for i := range kept[:len(kept)-len(current)] {
			kept[i] = syncproto.ManifestEntry{Path: fmt.Sprint("stranger", i)}
		}
		got, whole, _, err := c.manifestBySketch(kept)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, current) || whole != len(current) {
			t.Errorf("rebuilt %d entries (%d whole); want the %d of the manifest, all whole", len(got), whole, len(current))
		}
	})
}
