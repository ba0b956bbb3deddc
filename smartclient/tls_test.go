package smartclient_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/smartclient/internal/servertrust"
	"github.com/erpupdate/smartsync/syncproto"
)

// syncTo syncs dir from addr with the trust settings of o. The test
// servers' releases are unsigned: what is tested here is the transport
// (the publisher's signature has tests of its own, release_test.go).
func syncTo(t *testing.T, dir, addr string, o smartclient.Options) (*smartclient.Result, error) {
	t.Helper()
	o.Dir, o.Server, o.OS, o.Yes, o.Timeout, o.AllowUnsigned = dir, addr, "linux", true, 5*time.Second, true
	return smartclient.Sync(context.Background(), o)
}

// impostor starts, at addr, a server of its own: its own state folder,
// so its own TLS key, over a release with one file more than the real
// one, so that a client fooled by it would show.
func impostor(t *testing.T, real *server, addr string) *server {
	t.Helper()
	folders := map[string]string{}
	for osName, dir := range real.folders {
		folders[osName] = dir
	}
	rogue := filepath.Join(t.TempDir(), "rogue_linux")
	if err := os.CopyFS(rogue, os.DirFS(real.folders["linux"])); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rogue, "payload.sh"), []byte("#!/bin/sh\necho owned\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	folders["linux"] = rogue
	s := &server{t: t, folders: folders, state: filepath.Join(t.TempDir(), "rogue-state"), listenAt: addr}
	s.start(defaultConf)
	return s
}

// TestTLSImpostorAtThePinnedAddress: a workstation that synced from a
// server refuses another key at its address (a man in the middle, or a
// rogue server with a certificate of its own), naming both keys, before a
// byte of the session: nothing requested, nothing installed.
func TestTLSImpostorAtThePinnedAddress(t *testing.T) {
	real := newServer(t, defaultConf)
	dir := filepath.Join(t.TempDir(), "install")
	if _, err := syncTo(t, dir, real.addr, smartclient.Options{}); err != nil {
		t.Fatal(err)
	}
	known := filepath.Join(dir, ".smartclient", servertrust.KnownName)
	if fp, err := servertrust.Known(known, real.addr); err != nil || fp != real.srv.Fingerprint() {
		t.Fatalf("after the first sync the known key of %s is %q, %v; want the server's %s", real.addr, fp, err, real.srv.Fingerprint())
	}
	before := tree(t, dir)
	addr := real.addr
	real.stop()
	rogue := impostor(t, real, addr)

	for _, check := range []bool{false, true} {
		_, err := syncTo(t, dir, addr, smartclient.Options{CheckOnly: check})
		if !errors.Is(err, servertrust.ErrKeyChanged) {
			t.Fatalf("check=%v: got %v; want %v", check, err, servertrust.ErrKeyChanged)
		}
		for _, want := range []string{rogue.srv.Fingerprint(), real.srv.Fingerprint(), known} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("check=%v: the refusal does not name %q: %v", check, want, err)
			}
		}
	}
	if after := tree(t, dir); !maps.Equal(before, after) {
		t.Errorf("the install changed: %v, was %v", after, before)
	}
	if fp, _ := servertrust.Known(known, addr); fp != real.srv.Fingerprint() {
		t.Errorf("the known key became %s", fp)
	}
	// The impostor logs its failed handshake once its side of it ends,
	// which may be a moment after the client's.
	log := rogue.log.String()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(log, "bad certificate") && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		log = rogue.log.String()
	}
	if strings.Contains(log, "outcome=welcomed") || strings.Contains(log, "manifest") || !strings.Contains(log, "bad certificate") {
		t.Errorf("the impostor got further than the handshake:\n%s", log)
	}
}

// TestTLSFingerprintPinned: with [SSL] Fingerprint set, only that key is
// accepted, from the first sync on: a server with any other is refused.
func TestTLSFingerprintPinned(t *testing.T) {
	real := newServer(t, defaultConf)
	other := newServer(t, defaultConf)
	dir := filepath.Join(t.TempDir(), "install")
	_, err := syncTo(t, dir, other.addr, smartclient.Options{Fingerprint: real.srv.Fingerprint()})
	if !errors.Is(err, servertrust.ErrFingerprint) || !strings.Contains(err.Error(), other.srv.Fingerprint()) {
		t.Fatalf("got %v; want %v naming %s", err, servertrust.ErrFingerprint, other.srv.Fingerprint())
	}
	if got := tree(t, dir); len(got) != 0 {
		t.Errorf("a refused server installed %v", got)
	}
	if strings.Contains(other.log.String(), "outcome=welcomed") {
		t.Errorf("the other server got past the handshake:\n%s", other.log)
	}
	if _, err := syncTo(t, dir, real.addr, smartclient.Options{Fingerprint: real.srv.Fingerprint()}); err != nil {
		t.Fatalf("the pinned server: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".smartclient", servertrust.KnownName)); err == nil {
		t.Error("a pinned key was recorded as trusted on first use too")
	}
}

// testCA is a certificate authority of the test's own.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a key and a certificate for 127.0.0.1 signed by ca.
func (ca *testCA) issue(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "appserver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

// TestTLSCertificateAuthority: a server whose certificate ([SSL]
// Certificate and Key) a CA signed is trusted by a client given that CA
// ([SSL] CA), and refused by one given another.
func TestTLSCertificateAuthority(t *testing.T) {
	ca, otherCA := newCA(t), newCA(t)
	certFile, keyFile := ca.issue(t, t.TempDir())
	base := t.TempDir()
	s := &server{t: t, folders: newServer(t, defaultConf).folders, state: filepath.Join(base, "state"),
		ini: "[SSL]\nCertificate=" + certFile + "\nKey=" + keyFile + "\n"}
	s.start(defaultConf)
	caFile, otherFile := filepath.Join(base, "ca.pem"), filepath.Join(base, "other.pem")
	os.WriteFile(caFile, ca.pem, 0o644)
	os.WriteFile(otherFile, otherCA.pem, 0o644)

	dir := filepath.Join(t.TempDir(), "install")
	_, err := syncTo(t, dir, s.addr, smartclient.Options{CAFile: otherFile})
	if !errors.Is(err, servertrust.ErrNotSignedByCA) || !strings.Contains(err.Error(), otherFile) {
		t.Fatalf("another CA: got %v; want %v naming %s", err, servertrust.ErrNotSignedByCA, otherFile)
	}
	if got := tree(t, dir); len(got) != 0 {
		t.Errorf("a refused server installed %v", got)
	}
	if _, err := syncTo(t, dir, s.addr, smartclient.Options{CAFile: caFile}); err != nil {
		t.Fatalf("the server's CA: %v", err)
	}
}

// TestTLSPlaintextServer: a TLS client that meets a server answering in
// plain frames (an appserver from before TLS, or no appserver of ours)
// says so, and sends it nothing more.
func TestTLSPlaintextServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		// An older server reads a header, finds no magic and answers.
		hdr := make([]byte, syncproto.HeaderSize)
		c.Read(hdr)
		c.Write(syncproto.AppendErrorFrame(nil, 5, &syncproto.Error{Code: syncproto.CodeProtocol, Message: "bad frame magic"}))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		var rest bytes.Buffer
		rest.ReadFrom(c)
		got <- rest.Bytes()
	}()
	dir := filepath.Join(t.TempDir(), "install")
	_, err = syncTo(t, dir, ln.Addr().String(), smartclient.Options{})
	if !errors.Is(err, servertrust.ErrPlaintextServer) || !strings.Contains(err.Error(), "protocol version 5") {
		t.Fatalf("got %v; want %v naming the server's version", err, servertrust.ErrPlaintextServer)
	}
	// What follows is the rest of the client's TLS hello, random bytes:
	// a hello frame in clear would start with these four.
	if rest := <-got; bytes.Contains(rest, []byte{'S', 'C', syncproto.Version, byte(syncproto.MsgHello)}) {
		t.Errorf("the client sent a hello in clear after the refusal: %q", rest)
	}
	if tr := tree(t, dir); len(tr) != 0 {
		t.Errorf("installed %v", tr)
	}
}

// TestTLSPlaintextOnlyWhereBothAllowIt: a client set to plain TCP is
// refused by a server that wants TLS, with the reason and the way out;
// where both sides allow it the sync works, and the client warns.
func TestTLSPlaintextOnlyWhereBothAllowIt(t *testing.T) {
	s := newServer(t, defaultConf)
	dir := filepath.Join(t.TempDir(), "install")
	_, err := syncTo(t, dir, s.addr, smartclient.Options{AllowPlaintext: true})
	var pe *syncproto.Error
	if !errors.As(err, &pe) || pe.Code != syncproto.CodePlaintext || !strings.Contains(pe.Message, "AllowPlaintext=1") {
		t.Fatalf("got %v; want the server's %v naming AllowPlaintext", err, syncproto.CodePlaintext)
	}
	if tr := tree(t, dir); len(tr) != 0 {
		t.Errorf("installed %v", tr)
	}

	conf := defaultConf
	conf.plain = true
	s.start(conf)
	var out bytes.Buffer
	if _, err := syncTo(t, dir, s.addr, smartclient.Options{AllowPlaintext: true, Out: &out}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "over plain TCP") {
		t.Errorf("no warning of plain TCP: %q", out.String())
	}
	// A TLS client of the same server still gets TLS.
	dir2 := filepath.Join(t.TempDir(), "install")
	if _, err := syncTo(t, dir2, s.addr, smartclient.Options{}); err != nil {
		t.Fatalf("TLS client of a server that allows plain TCP too: %v", err)
	}
}
