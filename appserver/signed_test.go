package appserver

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/releasemeta"
	"github.com/erpupdate/smartsync/syncproto"
)

// publisherKey is a fixed test key of the publisher.
func publisherKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

// clientDigest is the release digest as a client computes it from the
// messages it received.
func clientDigest(h syncproto.ManifestHeader, entries []syncproto.ManifestEntry) releasemeta.Digest {
	d := releasemeta.NewDigester()
	for _, e := range entries {
		d.Add(releasemeta.Entry{Path: e.Path, Size: e.Size, Mode: e.Mode, Symlink: e.Flags&syncproto.FlagSymlink != 0,
			Dir: e.Flags&syncproto.FlagDir != 0, Preserve: e.Flags&syncproto.FlagPreserve != 0, Hash: e.Hash, Target: e.Target})
	}
	return d.Sum(h.PostInstall, time.Duration(h.PostInstallTimeout)*time.Second)
}

// TestServerSignedRelease: a signed folder is served with its Release
// before the manifest, whose digest the client computes as the publisher
// signed it; once the folder is edited after signing, the server sends no
// Release and says why in one warning naming the folder.
func TestServerSignedRelease(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"bin/smartclient": "client v1", "SmartClient.ini": "x=1\n", "lib/a.so": "aaaa"}, oldTime)
	cfg := linuxConfig(t, dir)
	key := publisherKey(7)
	now := time.Now()
	path, st, err := SignUpdate(context.Background(), slog.New(slog.DiscardHandler), cfg,
		SignOptions{OS: "linux", Key: key, Number: 3, Expires: 24 * time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if path != dir+".release" || st.Number != 3 || st.Build != srvBuild {
		t.Fatalf("SignUpdate wrote %s, statement %+v", path, st)
	}
	signed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, cfg, nil, nil)
	if got := ts.srv.SignedStatus("linux"); !strings.HasPrefix(got, "signed release 3, expires ") {
		t.Errorf("SignedStatus: %q", got)
	}

	c := mustDial(t, ts.addr)
	if _, err := c.hello(srvBuild, "linux", "a"); err != nil {
		t.Fatal(err)
	}
	if err := c.send(syncproto.GetManifest{}); err != nil {
		t.Fatal(err)
	}
	m, err := c.r.Expect(syncproto.MsgRelease)
	if err != nil {
		t.Fatalf("waiting for Release: %v", err)
	}
	if !bytes.Equal(m.(syncproto.Release).Meta, signed) {
		t.Fatal("the Release is not the signed file")
	}
	ring := releasemeta.KeyList{Version: 1, Keys: []releasemeta.PublicKey{releasemeta.PublicKey(key.Public().(ed25519.PublicKey))}}
	v, err := releasemeta.Verify(signed, ring, now, "linux")
	if err != nil {
		t.Fatal(err)
	}
	m, err = c.r.Expect(syncproto.MsgManifestHeader)
	if err != nil {
		t.Fatal(err)
	}
	h := m.(syncproto.ManifestHeader)
	var entries []syncproto.ManifestEntry
	for range h.Count {
		m, err := c.r.Expect(syncproto.MsgManifestEntry)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, m.(syncproto.ManifestEntry))
	}
	if err := releasemeta.CheckRelease(v.Statement, h.Build, clientDigest(h, entries)); err != nil {
		t.Fatalf("the served manifest does not match its signed statement: %v", err)
	}

	// The folder is edited after signing.
	writeFile(t, filepath.Join(dir, "lib/a.so"), "tampered")
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := mustDial(t, ts.addr)
		if _, err := c.hello(srvBuild, "linux", "b"); err != nil {
			t.Fatal(err)
		}
		if err := c.send(syncproto.GetManifest{}); err != nil {
			t.Fatal(err)
		}
		m, err := c.r.Read()
		if err != nil {
			t.Fatal(err)
		}
		if m.Type() == syncproto.MsgManifestHeader {
			break
		}
		if m.Type() != syncproto.MsgRelease || time.Now().After(deadline) {
			t.Fatalf("after the edit the server sent %v", m.Type())
		}
		time.Sleep(50 * time.Millisecond)
	}
	logs := ts.logs.String()
	if n := strings.Count(logs, "does not describe it"); n != 1 || !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, dir) ||
		!strings.Contains(logs, "changed after release 3 was signed") {
		t.Errorf("want one warning naming the folder and the change, got %d in:\n%s", n, logs)
	}
	if got := ts.srv.SignedStatus("linux"); !strings.Contains(got, "NOT SERVED") {
		t.Errorf("SignedStatus after the edit: %q", got)
	}
}

func TestSignedStatusUnsigned(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"a": "a"}, oldTime)
	ts := startServer(t, linuxConfig(t, dir), nil, nil)
	if got := ts.srv.SignedStatus("linux"); !strings.HasPrefix(got, "unsigned") {
		t.Errorf("SignedStatus: %q", got)
	}
}

func TestRotateChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "publisher.chain")
	a, b := publisherKey(1), publisherKey(2)
	chain, err := RotateChain(path, a, []ed25519.PublicKey{b.Public().(ed25519.PublicKey)})
	if err != nil || len(chain) != 2 {
		t.Fatalf("RotateChain: %v %v", chain, err)
	}
	// The removed key may not rotate again.
	if _, err := RotateChain(path, a, []ed25519.PublicKey{a.Public().(ed25519.PublicKey)}); !errors.Is(err, releasemeta.ErrUnknownKey) {
		t.Errorf("rotation by the removed key: %v", err)
	}
	if chain, err = ReadChain(path); err != nil || len(chain) != 2 {
		t.Fatalf("ReadChain: %v %v", chain, err)
	}
}
