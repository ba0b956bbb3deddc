package servertrust_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/pki"
	"github.com/erpupdate/smartsync/internal/pki/pkitest"
	"github.com/erpupdate/smartsync/smartclient/internal/servertrust"
)

// server is a TLS 1.3 server on 127.0.0.1 whose certificate a test can
// swap, so that one address can present one key and then another.
type server struct {
	addr string
	cert atomic.Pointer[tls.Certificate]
}

func newServer(t *testing.T, cert tls.Certificate) *server {
	t.Helper()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tcp.Close() })
	s := &server{addr: tcp.Addr().String()}
	s.cert.Store(&cert)
	cfg := pki.ServerConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cert.Load(), nil })
	serve(tls.NewListener(tcp, cfg))
	return s
}

func (s *server) use(cert tls.Certificate) { s.cert.Store(&cert) }

// serve handshakes every connection ln accepts, until it is closed.
func serve(ln net.Listener) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					var b [1]byte
					c.Read(b[:]) // until the client closes
				}
			}()
		}
	}()
}

// dial makes a real TLS connection to addr with cfg's configuration for
// it, and returns the handshake's error.
func dial(t *testing.T, cfg servertrust.Config, addr string) error {
	t.Helper()
	tc, err := cfg.TLS(addr)
	if err != nil {
		t.Fatalf("TLS(%q): %v", addr, err)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, tc)
	if err != nil {
		return err
	}
	defer conn.Close()
	if v := conn.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("negotiated %#x, want TLS 1.3", v)
	}
	return nil
}

// ca is a test certificate authority.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // its certificate in PEM
}

func newCA(t *testing.T, name string) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), name+".pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &ca{cert: cert, key: key, file: file}
}

// leaf makes a server certificate signed by the CA, for ips and names.
func (c *ca) leaf(t *testing.T, ips []net.IP, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "server"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  ips,
		DNSNames:     names,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

var localhost = []net.IP{net.ParseIP("127.0.0.1")}

// knownFile is the known file's content as JSON, independent of the
// package's own types.
type knownFile struct {
	Servers map[string]struct {
		Fingerprint string    `json:"fingerprint"`
		FirstSeen   time.Time `json:"first_seen"`
	} `json:"servers"`
}

func readKnown(t *testing.T, file string) (knownFile, bool) {
	t.Helper()
	var k knownFile
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return k, false
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &k); err != nil {
		t.Fatalf("%s: %v\n%s", file, err, data)
	}
	return k, true
}

func writeKnown(t *testing.T, file string, entries map[string]string) {
	t.Helper()
	servers := map[string]any{}
	for addr, fp := range entries {
		servers[addr] = map[string]any{"fingerprint": fp, "first_seen": time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	}
	data, err := json.Marshal(map[string]any{"servers": servers})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// env is where a trust case runs: the server's address and the known
// file's path.
type env struct{ addr, known string }

type trustCase struct {
	name   string
	cert   tls.Certificate // the server's
	known  int             // what the known file holds before
	cfg    func(e env) servertrust.Config
	seen   bool // cfg gets a Seen
	err    error
	msg    func(e env) []string // parts of the error
	record bool                 // Record adds the server's key
}

func TestTrust(t *testing.T) {
	selfCert, selfFP := pkitest.Certificate(t)
	_, otherFP := pkitest.Certificate(t)
	ourCA, otherCA := newCA(t, "our-ca"), newCA(t, "other-ca")
	caLeaf := ourCA.leaf(t, localhost)
	caLeafFP := pki.Fingerprint(caLeaf.Leaf)
	wrongName := ourCA.leaf(t, nil, "elsewhere.example")
	wrongNameFP := pki.Fingerprint(wrongName.Leaf)
	hexOf := func(fp string) string {
		d, err := pki.ParseFingerprint(fp)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("% X", d[:]) // "AB CD ..."
	}

	const (
		none    = iota // no known file before
		same           // the server's key recorded for its address
		other          // another key recorded for its address
		elsewhr        // the server's key recorded for another address
	)
	tests := []trustCase{
		{
			name: "pinned fingerprint",
			cert: selfCert, known: other,
			cfg: func(e env) servertrust.Config {
				return servertrust.Config{Fingerprint: selfFP, KnownFile: e.known, Unknown: servertrust.Refuse}
			},
		},
		{
			name: "pinned fingerprint in hex",
			cert: selfCert,
			cfg: func(e env) servertrust.Config {
				return servertrust.Config{Fingerprint: strings.ReplaceAll(hexOf(selfFP), " ", ":"), Unknown: servertrust.Refuse}
			},
		},
		{
			name: "pinned fingerprint of another key",
			cert: selfCert, known: same, seen: true,
			cfg: func(e env) servertrust.Config {
				return servertrust.Config{Fingerprint: otherFP, KnownFile: e.known, Unknown: servertrust.Learn}
			},
			err: servertrust.ErrFingerprint,
			msg: func(e env) []string { return []string{e.addr, selfFP, otherFP, "[SSL] Fingerprint"} },
		},
		{
			name: "pinned fingerprint of another key, CA-signed server",
			cert: caLeaf,
			cfg: func(e env) servertrust.Config {
				return servertrust.Config{Fingerprint: otherFP, CAFile: ourCA.file}
			},
			err: servertrust.ErrFingerprint,
			msg: func(e env) []string { return []string{caLeafFP, otherFP} },
		},
		{
			name: "pinned fingerprint wins over a CA that did not sign",
			cert: caLeaf,
			cfg: func(e env) servertrust.Config {
				return servertrust.Config{Fingerprint: caLeafFP, CAFile: otherCA.file, Unknown: servertrust.Refuse}
			},
		},
		{
			name: "signed by the configured CA",
			cert: caLeaf, known: other, seen: true,
			cfg: func(e env) servertrust.Config {
				return servertrust.Config{CAFile: ourCA.file, KnownFile: e.known, Unknown: servertrust.Learn}
			},
		},
		{
			name: "signed by another CA",
			cert: caLeaf, seen: true,
			cfg: func(e env) servertrust.Config {
				return servertrust.Config{CAFile: otherCA.file, KnownFile: e.known, Unknown: servertrust.Learn}
			},
			err: servertrust.ErrNotSignedByCA,
			msg: func(e env) []string { return []string{e.addr, caLeafFP, otherCA.file} },
		},
		{
			name: "signed by the CA for another name",
			cert: wrongName,
			cfg: func(e env) servertrust.Config {
				return servertrust.Config{CAFile: ourCA.file, Unknown: servertrust.Accept}
			},
			err: servertrust.ErrNotSignedByCA,
			msg: func(e env) []string { return []string{e.addr, wrongNameFP, ourCA.file} },
		},
		{
			name: "self-signed with a CA configured, key known",
			cert: selfCert, known: same,
			cfg: func(e env) servertrust.Config {
				return servertrust.Config{CAFile: ourCA.file, KnownFile: e.known, Unknown: servertrust.Accept}
			},
			err: servertrust.ErrNotSignedByCA,
			msg: func(e env) []string { return []string{selfFP, ourCA.file} },
		},
		{
			name: "first use, refuse",
			cert: selfCert,
			cfg: func(e env) servertrust.Config {
				return servertrust.Config{KnownFile: e.known, Unknown: servertrust.Refuse}
			},
			err: servertrust.ErrUnknownServer,
			msg: func(e env) []string { return []string{e.addr, selfFP} },
		},
		{
			name: "first use, refuse, key known for another address",
			cert: selfCert, known: elsewhr,
			cfg: func(e env) servertrust.Config {
				return servertrust.Config{KnownFile: e.known, Unknown: servertrust.Refuse}
			},
			err: servertrust.ErrUnknownServer,
			msg: func(e env) []string { return []string{e.addr, selfFP} },
		},
		{
			name: "first use, no known file, refuse",
			cert: selfCert,
			cfg: func(e env) servertrust.Config {
				return servertrust.Config{Unknown: servertrust.Refuse}
			},
			err: servertrust.ErrUnknownServer,
		},
		{
			name: "first use, accept",
			cert: selfCert, seen: true,
			cfg: func(e env) servertrust.Config {
				return servertrust.Config{KnownFile: e.known, Unknown: servertrust.Accept}
			},
		},
		{
			name: "first use, learn without a Seen",
			cert: selfCert,
			cfg: func(e env) servertrust.Config {
				return servertrust.Config{KnownFile: e.known, Unknown: servertrust.Learn}
			},
		},
		{
			name: "first use, learn",
			cert: selfCert, seen: true,
			cfg: func(e env) servertrust.Config {
				return servertrust.Config{KnownFile: e.known, Unknown: servertrust.Learn}
			},
			record: true,
		},
		{
			name: "first use, learn, another address known",
			cert: selfCert, known: elsewhr, seen: true,
			cfg: func(e env) servertrust.Config {
				return servertrust.Config{KnownFile: e.known, Unknown: servertrust.Learn}
			},
			record: true,
		},
		{
			name: "known key, refuse",
			cert: selfCert, known: same,
			cfg: func(e env) servertrust.Config {
				return servertrust.Config{KnownFile: e.known, Unknown: servertrust.Refuse}
			},
		},
		{
			name: "known key, learn",
			cert: selfCert, known: same, seen: true,
			cfg: func(e env) servertrust.Config {
				return servertrust.Config{KnownFile: e.known, Unknown: servertrust.Learn}
			},
		},
	}
	for _, u := range []struct {
		name string
		u    servertrust.Unknown
	}{{"learn", servertrust.Learn}, {"accept", servertrust.Accept}, {"refuse", servertrust.Refuse}} {
		tests = append(tests, trustCase{
			name: "key changed, " + u.name,
			cert: selfCert, known: other, seen: true,
			cfg: func(e env) servertrust.Config {
				return servertrust.Config{KnownFile: e.known, Unknown: u.u}
			},
			err: servertrust.ErrKeyChanged,
			msg: func(e env) []string { return []string{e.addr, selfFP, otherFP, e.known, "2025-01-02"} },
		})
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.cert)
			e := env{addr: srv.addr, known: filepath.Join(t.TempDir(), ".smartclient", servertrust.KnownName)}
			if err := os.MkdirAll(filepath.Dir(e.known), 0o755); err != nil {
				t.Fatal(err)
			}
			serverFP := pki.Fingerprint(tc.cert.Leaf)
			switch tc.known {
			case same:
				writeKnown(t, e.known, map[string]string{e.addr: serverFP})
			case other:
				writeKnown(t, e.known, map[string]string{e.addr: otherFP})
			case elsewhr:
				writeKnown(t, e.known, map[string]string{"192.0.2.1:7890": serverFP})
			}
			before, _ := os.ReadFile(e.known)

			cfg := tc.cfg(e)
			if tc.seen {
				cfg.Seen = &servertrust.Seen{}
			}
			err := dial(t, cfg, e.addr)
			if tc.err == nil {
				if err != nil {
					t.Fatalf("handshake: %v; want trusted", err)
				}
				if servertrust.Untrusted(err) {
					t.Fatal("Untrusted(nil) = true")
				}
			} else {
				if !errors.Is(err, tc.err) {
					t.Fatalf("handshake: %v; want %v", err, tc.err)
				}
				if !servertrust.Untrusted(err) {
					t.Errorf("Untrusted(%v) = false", err)
				}
				if tc.msg != nil {
					for _, want := range tc.msg(e) {
						if !strings.Contains(err.Error(), want) {
							t.Errorf("error %q does not contain %q", err, want)
						}
					}
				}
			}

			// Nothing is written by a handshake; Record writes only a key
			// learnt in a trusted handshake.
			if now, _ := os.ReadFile(e.known); string(now) != string(before) {
				t.Fatalf("the handshake changed %s:\n%s", e.known, now)
			}
			if err := cfg.Record(); err != nil {
				t.Fatalf("Record: %v", err)
			}
			now, _ := os.ReadFile(e.known)
			if !tc.record {
				if string(now) != string(before) {
					t.Fatalf("Record changed %s:\n%s\nwas:\n%s", e.known, now, before)
				}
				if tc.known == none {
					if _, err := os.Stat(e.known); !errors.Is(err, os.ErrNotExist) {
						t.Fatalf("%s is there after an untrusted or unrecorded handshake (stat: %v)", e.known, err)
					}
				}
				return
			}
			k, ok := readKnown(t, e.known)
			if !ok {
				t.Fatalf("Record wrote no %s", e.known)
			}
			got := k.Servers[e.addr]
			if got.Fingerprint != serverFP {
				t.Fatalf("recorded %q for %s, want %q; file:\n%s", got.Fingerprint, e.addr, serverFP, now)
			}
			if time.Since(got.FirstSeen) > time.Minute || time.Since(got.FirstSeen) < 0 {
				t.Errorf("first_seen = %v, want about now", got.FirstSeen)
			}
			if tc.known == elsewhr && k.Servers["192.0.2.1:7890"].Fingerprint != serverFP {
				t.Errorf("the entry for another address was lost:\n%s", now)
			}
			if fp, err := servertrust.Known(e.known, e.addr); err != nil || fp != serverFP {
				t.Errorf("Known = %q, %v; want %q", fp, err, serverFP)
			}

			// From then on, the key is trusted at that address even when
			// unknown servers are refused, and another key is not.
			refuse := servertrust.Config{KnownFile: e.known, Unknown: servertrust.Refuse}
			if err := dial(t, refuse, e.addr); err != nil {
				t.Fatalf("the recorded key is refused: %v", err)
			}
			next, nextFP := pkitest.Certificate(t)
			srv.use(next)
			err = dial(t, refuse, e.addr)
			if !errors.Is(err, servertrust.ErrKeyChanged) {
				t.Fatalf("another key after recording: %v; want ErrKeyChanged", err)
			}
			for _, want := range []string{e.addr, serverFP, nextFP, e.known} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestSeenKeyChangesWithinOneSync(t *testing.T) {
	first, firstFP := pkitest.Certificate(t)
	second, secondFP := pkitest.Certificate(t)
	srv := newServer(t, first)
	known := filepath.Join(t.TempDir(), servertrust.KnownName)
	cfg := servertrust.Config{KnownFile: known, Unknown: servertrust.Learn, Seen: &servertrust.Seen{}}

	if err := dial(t, cfg, srv.addr); err != nil {
		t.Fatalf("first session: %v", err)
	}
	if err := dial(t, cfg, srv.addr); err != nil {
		t.Fatalf("second session, same key: %v", err)
	}
	srv.use(second)
	err := dial(t, cfg, srv.addr)
	if !errors.Is(err, servertrust.ErrKeyChanged) {
		t.Fatalf("another key in the same sync: %v; want ErrKeyChanged", err)
	}
	if !servertrust.Untrusted(err) {
		t.Errorf("Untrusted(%v) = false", err)
	}
	for _, want := range []string{srv.addr, firstFP, secondFP} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	srv.use(first)
	if err := dial(t, cfg, srv.addr); err != nil {
		t.Fatalf("the first key again: %v", err)
	}
	if _, err := os.Stat(known); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s written before Record (stat: %v)", known, err)
	}
	if err := cfg.Record(); err != nil {
		t.Fatal(err)
	}
	if fp, err := servertrust.Known(known, srv.addr); err != nil || fp != firstFP {
		t.Fatalf("recorded %q, %v; want the first key %q", fp, err, firstFP)
	}
}

func TestRecordKeepsAnEntryRecordedMeanwhile(t *testing.T) {
	cert, fp := pkitest.Certificate(t)
	_, otherFP := pkitest.Certificate(t)
	srv := newServer(t, cert)
	known := filepath.Join(t.TempDir(), servertrust.KnownName)
	cfg := servertrust.Config{KnownFile: known, Unknown: servertrust.Learn, Seen: &servertrust.Seen{}}
	if err := dial(t, cfg, srv.addr); err != nil {
		t.Fatal(err)
	}
	// Another process recorded a key for the address meanwhile.
	writeKnown(t, known, map[string]string{srv.addr: otherFP})
	if err := cfg.Record(); err != nil {
		t.Fatal(err)
	}
	if got, err := servertrust.Known(known, srv.addr); err != nil || got != otherFP {
		t.Fatalf("Known = %q, %v; want the entry recorded meanwhile %q (not %q)", got, err, otherFP, fp)
	}
}

func TestPkitestListener(t *testing.T) {
	// The package's own test listener, as other packages' tests use it.
	ln := pkitest.Listen(t)
	serve(ln)
	addr := ln.Addr().String()
	known := filepath.Join(t.TempDir(), servertrust.KnownName)

	err := dial(t, servertrust.Config{KnownFile: known, Unknown: servertrust.Refuse}, addr)
	if !errors.Is(err, servertrust.ErrUnknownServer) {
		t.Fatalf("refuse: %v; want ErrUnknownServer", err)
	}
	if err := dial(t, servertrust.Config{Fingerprint: ln.Fingerprint, Unknown: servertrust.Refuse}, addr); err != nil {
		t.Fatalf("pinned: %v", err)
	}
	cfg := servertrust.Config{KnownFile: known, Unknown: servertrust.Learn, Seen: &servertrust.Seen{}}
	if err := dial(t, cfg, addr); err != nil {
		t.Fatalf("learn: %v", err)
	}
	if err := cfg.Record(); err != nil {
		t.Fatal(err)
	}
	k, ok := readKnown(t, known)
	if !ok || k.Servers[addr].Fingerprint != ln.Fingerprint || len(k.Servers) != 1 {
		t.Fatalf("known file after Record: %+v (there: %v), want %s for %s", k, ok, ln.Fingerprint, addr)
	}
}

func TestUnreadableKnownFileRefuses(t *testing.T) {
	cert, _ := pkitest.Certificate(t)
	srv := newServer(t, cert)
	known := filepath.Join(t.TempDir(), servertrust.KnownName)
	if err := os.WriteFile(known, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, u := range []servertrust.Unknown{servertrust.Learn, servertrust.Accept, servertrust.Refuse} {
		cfg := servertrust.Config{KnownFile: known, Unknown: u, Seen: &servertrust.Seen{}}
		err := dial(t, cfg, srv.addr)
		if err == nil {
			t.Fatalf("unknown=%d: a server was trusted although the known keys could not be read", u)
		}
		if !strings.Contains(err.Error(), known) {
			t.Errorf("unknown=%d: error %q does not name %s", u, err, known)
		}
	}
	if data, _ := os.ReadFile(known); string(data) != "{not json" {
		t.Fatalf("the unreadable file was replaced by %q", data)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		cfg    servertrust.Config
		is     error
		wantIn string
	}{
		{"malformed fingerprint", servertrust.Config{Fingerprint: "SHA256:short"}, pki.ErrFingerprint, "[SSL] Fingerprint"},
		{"missing CA file", servertrust.Config{CAFile: filepath.Join(dir, "none.pem")}, os.ErrNotExist, "[SSL] CA"},
		{"CA file without a certificate", servertrust.Config{CAFile: notPEM}, nil, notPEM},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.cfg.TLS("127.0.0.1:1")
			if err == nil {
				t.Fatalf("TLS returned %v and no error", c)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v does not wrap %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.wantIn) {
				t.Errorf("error %q does not contain %q", err, tc.wantIn)
			}
		})
	}
}

func TestUntrusted(t *testing.T) {
	for _, e := range []error{servertrust.ErrKeyChanged, servertrust.ErrFingerprint, servertrust.ErrNotSignedByCA, servertrust.ErrUnknownServer, servertrust.ErrPlaintextServer} {
		if !servertrust.Untrusted(fmt.Errorf("connecting: %w", e)) {
			t.Errorf("Untrusted(wrapped %q) = false", e)
		}
	}
	// A server that cannot be reached is not an untrusted one.
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := tcp.Addr().String()
	tcp.Close()
	err = dial(t, servertrust.Config{Unknown: servertrust.Refuse}, addr)
	if err == nil {
		t.Fatal("dialing a closed port succeeded")
	}
	for _, e := range []error{err, errors.New("timeout"), nil} {
		if servertrust.Untrusted(e) {
			t.Errorf("Untrusted(%v) = true", e)
		}
	}
}
