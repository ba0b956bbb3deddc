package fetch

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/erpupdate/smartsync/internal/cdc"
	"github.com/erpupdate/smartsync/smartclient/internal/installtest"
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
			d := &Delta{list: tc.list}
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
		d := &Delta{list: append(append([]syncproto.ChunkRef(nil), list...), syncproto.ChunkRef{Len: 10}), base: base}
		c := newListCheck(d)
		feed(c, list)
		if c.ok() {
			t.Error("a list naming more bytes than the file passed")
		}
	})
}

// TestSumBase: the block sums of a base read in large pieces into a
// reused buffer are those of its blocks one by one, for files ending on,
// before and after a block or a read's boundary, and blocks larger than a
// read; a base that changed since it was looked at gives none.
func TestSumBase(t *testing.T) {
	dir := t.TempDir()
	d := installtest.OpenCachedDisk(t, dir)
	var scratch []byte // shared by every case, as by a worker's files
	for _, tc := range []struct{ size, bs int }{
		{0, 1024}, {1, 1024}, {1023, 1024}, {1024, 1024}, {1025, 1024},
		{sumRead - 1, 1024}, {sumRead, 1024}, {sumRead + 1024 + 7, 1024}, {3 * sumRead, 1024},
		{sumRead + 5, 3000}, {5 * 3000, 3000}, {2*sumRead + 1, 100_000}, {250_000, 100_000},
	} {
		data := make([]byte, tc.size)
		rand.NewChaCha8([32]byte{byte(tc.size), byte(tc.bs)}).Read(data)
		name := fmt.Sprintf("base-%d-%d", tc.size, tc.bs)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		fi, err := d.Lstat(name)
		if err != nil {
			t.Fatal(err)
		}
		var want []syncproto.BlockSum
		for p := data; len(p) > 0; p = p[min(tc.bs, len(p)):] {
			b := p[:min(tc.bs, len(p))]
			want = append(want, syncproto.BlockSum{Weak: cdc.WeakSum(b).Weak(), Strong: cdc.StrongSum(b)})
		}
		got, err := sumBase(d, name, tc.bs, fi, &scratch)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("size %d, blocks of %d: %d sums, %v; want %d sums", tc.size, tc.bs, len(got), err, len(want))
		}
	}
	// A base rewritten after it was looked at is not summed.
	name := "changed"
	if err := os.WriteFile(filepath.Join(dir, name), make([]byte, 5000), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, _ := d.Lstat(name)
	if err := os.WriteFile(filepath.Join(dir, name), make([]byte, 6000), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := sumBase(d, name, 1024, fi, &scratch); err == nil {
		t.Errorf("a base that changed gave %d sums, no error", len(got))
	}
}
