package smartclient_test

import (
	"bytes"
	"io"
	"runtime"
	"testing"

	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/smartclient/internal/hostiletest"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/klauspost/compress/zstd"
)

// TestHostileCompressedManifest: the client asks for the manifest
// compressed (syncproto.GetZManifest), and refuses, before it requests a
// file and with the install as it was, a compressed stream that is not
// the manifest's frames ending with the last of its ManifestZ frames: a
// bomb, garbage, a stream that ends inside a frame, bytes or a frame
// after the last.
func TestHostileCompressedManifest(t *testing.T) {
	saw, _ := hostileRun(t, hostiletest.Lie{Name: "honest"})
	if !saw.ZAsked {
		t.Fatal("the client did not ask for the manifest compressed")
	}
	z := func(f func(plain []byte) []byte) func([]byte) []syncproto.ManifestZ {
		return func(plain []byte) []syncproto.ManifestZ { return hostiletest.Cut(f(plain)) }
	}
	plus := func(extra []byte) func([]byte) []syncproto.ManifestZ {
		return z(func(plain []byte) []byte { return hostiletest.Compress(append(bytes.Clone(plain), extra...)) })
	}
	for _, l := range []hostiletest.Lie{
		{Name: "bomb", Z: z(bomb), Want: smartclient.ErrBadManifest,
			WantMsg: []string{"compressed manifest: more bytes after its last frame", "bad frame magic"}},
		{Name: "garbage", Z: z(func([]byte) []byte { return []byte("this is no zstd stream, and no manifest either") }),
			Want: syncproto.ErrMalformed, WantMsg: []string{"reading manifest entry 0 of 4", "compressed manifest", "magic number mismatch"}},
		{Name: "ends inside a frame", Z: z(func(plain []byte) []byte { return hostiletest.Compress(plain[:len(plain)-5]) }),
			Want: io.ErrUnexpectedEOF, WantMsg: []string{"reading manifest entry 3 of 4", "payload"}},
		{Name: "bytes after the last frame", Z: plus([]byte{1, 2, 3}), Want: smartclient.ErrBadManifest,
			WantMsg: []string{"compressed manifest: more bytes after its last frame"}},
		{Name: "a frame after the last", Z: plus(syncproto.AppendFrame(nil, syncproto.ManifestSame{From: 0, Count: 1})), Want: smartclient.ErrBadManifest,
			WantMsg: []string{"compressed manifest: a ManifestSame frame of 8 bytes after its last frame"}},
		{Name: "more, then the patch offers", Z: func(plain []byte) []syncproto.ManifestZ {
			zs := hostiletest.Cut(hostiletest.Compress(plain))
			zs[len(zs)-1].More = true
			return zs
		}, Want: syncproto.ErrUnexpected, WantMsg: []string{"expected ManifestZ, got PatchOffer"}},
	} {
		t.Run(l.Name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			saw, _ := hostileRun(t, l)
			runtime.ReadMemStats(&after)
			if len(saw.Asked) > 0 || saw.AskedEnd {
				t.Errorf("the client requested %v after a bad manifest", saw.Asked)
			}
			// The bomb decompresses to 256 MiB: everything the process
			// allocated meanwhile, the liar's side included, stays far
			// under it.
			if got := after.TotalAlloc - before.TotalAlloc; got > 24<<20 {
				t.Errorf("allocated %d MiB during the sync; the decompressor is not bounded", got>>20)
			}
		})
	}
}

// bomb returns a zstd stream of the manifest's frames followed by 256 MiB
// of zeros, far beyond what a manifest of 4 entries may decompress to
// (syncproto.MaxManifestZ), in a few kilobytes.
func bomb(plain []byte) []byte {
	enc, err := zstd.NewWriter(nil, zstd.WithWindowSize(syncproto.ZWindow), zstd.WithEncoderConcurrency(1))
	if err != nil {
		panic(err)
	}
	var out bytes.Buffer
	enc.Reset(&out)
	enc.Write(plain)
	zeros := make([]byte, 1<<20)
	for range 256 {
		enc.Write(zeros)
	}
	enc.Close()
	return out.Bytes()
}
