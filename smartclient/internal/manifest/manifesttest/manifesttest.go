// Package manifesttest makes manifests for tests the only way there is,
// through manifest.Read: a test's manifest is validated like the
// server's, so no test works on a manifest the client would refuse.
package manifesttest

import (
	"bytes"
	"testing"

	"github.com/erpupdate/smartsync/smartclient/internal/manifest"
	"github.com/erpupdate/smartsync/syncproto"
)

// Frames encodes files as a server sends the manifest of build: its
// header and an entry for each file, in order.
func Frames(t testing.TB, build string, files ...manifest.File) []byte {
	t.Helper()
	h := syncproto.ManifestHeader{Build: build, Count: uint32(len(files))}
	for _, f := range files {
		h.TotalBytes += uint64(f.Size)
	}
	var b bytes.Buffer
	w := syncproto.NewWriter(&b)
	if err := w.Write(h); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		e := syncproto.ManifestEntry{Path: f.Path, Size: uint64(f.Size), MtimeNs: f.MtimeNs, Mode: uint32(f.Mode.Perm()),
			Hash: f.Hash, Target: f.Target}
		if f.Preserve {
			e.Flags |= syncproto.FlagPreserve
		}
		if f.Target != "" {
			e.Flags |= syncproto.FlagSymlink
		}
		if f.Dir {
			e.Flags |= syncproto.FlagDir
		}
		if err := w.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// New returns the manifest of build that lists files, in order, as
// manifest.Read takes it from the server; the test fails if Read refuses
// it.
func New(t testing.TB, build string, files ...manifest.File) *manifest.Manifest {
	t.Helper()
	man, err := manifest.Read(syncproto.NewReader(bytes.NewReader(Frames(t, build, files...))), manifest.Options{})
	if err != nil {
		t.Fatalf("a test's manifest: %v", err)
	}
	return man
}
