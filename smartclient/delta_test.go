package smartclient

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/erpupdate/smartsync/internal/cdc"
	"github.com/erpupdate/smartsync/syncproto"
)

func TestListCheck(t *testing.T) {
	const bits = 12
	rng := rand.NewChaCha8([32]byte{5})
	old := make([]byte, 256<<10)
	rng.Read(old)
	patch := make([]byte, 3000)
	rng.Read(patch)
	next := bytes.Clone(old)
	copy(next[100<<10:], patch)
	cut := func(b []byte) []syncproto.ChunkRef {
		c := cdc.NewChunker(bits)
		c.Write(b)
		return refs(c.Finish())
	}
	base, list := cut(old), cut(next)

	// feed writes next as the server would send it: chunks the base has
	// as copies from it, the rest as data, in pieces of 1000 bytes.
	feed := func(c *listCheck, list []syncproto.ChunkRef) {
		at := map[syncproto.ChunkRef]int64{}
		var off int64
		for _, r := range base {
			at[r] = off
			off += int64(r.Len)
		}
		off = 0
		for _, r := range list {
			piece := next[off:min(off+int64(r.Len), int64(len(next)))]
			src, copied := at[r]
			for len(piece) > 0 {
				k := min(1000, len(piece))
				if copied {
					c.write(piece[:k], src, int64(len(piece)))
					src += int64(k)
				} else {
					c.write(piece[:k], -1, 0)
				}
				piece = piece[k:]
			}
			off += int64(r.Len)
		}
	}
	forged := func(i int) []syncproto.ChunkRef {
		l := append([]syncproto.ChunkRef(nil), list...)
		l[i].Hash[0] ^= 1
		return l
	}
	// The chunk that holds the patch is sent as data; find it.
	patched := -1
	var off int64
	for i, r := range list {
		if off <= 100<<10 && 100<<10 < off+int64(r.Len) {
			patched = i
		}
		off += int64(r.Len)
	}
	tests := []struct {
		name  string
		list  []syncproto.ChunkRef // the list the server claims
		sent  []syncproto.ChunkRef // how the bytes arrive
		ok    bool
		withB bool
	}{
		{"honest delta", list, list, true, true},
		{"honest whole file", list, list, true, false},
		{"forged hash of a data chunk", forged(patched), list, false, true},
		{"forged hash of a copied chunk", forged(0), list, false, true},
		{"list one chunk short", list[:len(list)-1], list, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &delta{list: tc.list}
			if tc.withB {
				d.base = base
			}
			c := newListCheck(d)
			feed(c, tc.sent)
			if c.ok() != tc.ok {
				t.Errorf("ok() = %v, want %v", c.ok(), tc.ok)
			}
		})
	}
	t.Run("list one chunk long", func(t *testing.T) {
		d := &delta{list: append(append([]syncproto.ChunkRef(nil), list...), syncproto.ChunkRef{Len: 10}), base: base}
		c := newListCheck(d)
		feed(c, list)
		if c.ok() {
			t.Error("a list naming more bytes than the file passed")
		}
	})
}
