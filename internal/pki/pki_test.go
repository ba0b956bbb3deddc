package pki_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/pki"
	"github.com/erpupdate/smartsync/internal/pki/pkitest"
)

// digest is a fixed key digest with bytes that exercise base64's '+' and
// '/' and hex's upper digits.
func digest() [sha256.Size]byte {
	var d [sha256.Size]byte
	for i := range d {
		d[i] = byte(i*37 + 0xf8)
	}
	return d
}

func TestFormatFingerprint(t *testing.T) {
	d := digest()
	got := pki.FormatFingerprint(d)
	want := "SHA256:" + base64.RawStdEncoding.EncodeToString(d[:])
	if got != want {
		t.Fatalf("FormatFingerprint = %q, want %q", got, want)
	}
	if strings.HasSuffix(got, "=") || len(got) != len("SHA256:")+43 {
		t.Fatalf("FormatFingerprint = %q: want SHA256: and 43 unpadded base64 characters", got)
	}
}

func TestFingerprintIsOfThePublicKey(t *testing.T) {
	cert, fp := pkitest.Certificate(t)
	sum := sha256.Sum256(cert.Leaf.RawSubjectPublicKeyInfo)
	if got := pki.KeyDigest(cert.Leaf); got != sum {
		t.Fatalf("KeyDigest = %x, want the SHA-256 of the SubjectPublicKeyInfo %x", got, sum)
	}
	if want := pki.FormatFingerprint(sum); fp != want || pki.Fingerprint(cert.Leaf) != want {
		t.Fatalf("Fingerprint = %q, want %q", pki.Fingerprint(cert.Leaf), want)
	}

	// A certificate renewed over the same key keeps its fingerprint; a
	// certificate over another key does not.
	key := cert.PrivateKey.(*ecdsa.PrivateKey)
	tmpl := *cert.Leaf
	tmpl.NotAfter = tmpl.NotAfter.AddDate(1, 0, 0)
	tmpl.DNSNames = []string{"renewed.example"}
	der, err := x509.CreateCertificate(nil, &tmpl, &tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if string(renewed.Raw) == string(cert.Leaf.Raw) {
		t.Fatal("the renewed certificate is the same certificate")
	}
	if got := pki.Fingerprint(renewed); got != fp {
		t.Fatalf("renewed over the same key: fingerprint %q, want %q", got, fp)
	}
	other, otherFP := pkitest.Certificate(t)
	if otherFP == fp || pki.Fingerprint(other.Leaf) == fp {
		t.Fatalf("two keys have the same fingerprint %q", fp)
	}
}

func TestParseFingerprint(t *testing.T) {
	d := digest()
	b64 := base64.StdEncoding.EncodeToString(d[:]) // padded
	raw := base64.RawStdEncoding.EncodeToString(d[:])
	hx := hex.EncodeToString(d[:])
	var colons []string
	for i := 0; i < len(hx); i += 2 {
		colons = append(colons, hx[i:i+2])
	}

	good := []struct {
		name, in string
	}{
		{"as printed", "SHA256:" + raw},
		{"padded", "SHA256:" + b64},
		{"lower-case prefix", "sha256:" + raw},
		{"mixed-case prefix", "Sha256:" + b64},
		{"surrounding space", "  \tSHA256:" + raw + "\n"},
		{"hex", hx},
		{"upper-case hex", strings.ToUpper(hx)},
		{"hex with colons", strings.Join(colons, ":")},
		{"upper-case hex with colons", strings.ToUpper(strings.Join(colons, ":"))},
		{"hex with space around", " " + hx + " "},
	}
	for _, tc := range good {
		t.Run("good/"+tc.name, func(t *testing.T) {
			got, err := pki.ParseFingerprint(tc.in)
			if err != nil {
				t.Fatalf("ParseFingerprint(%q): %v", tc.in, err)
			}
			if got != d {
				t.Fatalf("ParseFingerprint(%q) = %x, want %x", tc.in, got, d)
			}
		})
	}

	short := digest()
	bad := []struct {
		name, in string
	}{
		{"empty", ""},
		{"blank", "   "},
		{"prefix only", "SHA256:"},
		{"no prefix base64", raw},
		{"other prefix", "SHA1:" + raw},
		{"MD5 prefix", "MD5:" + hx},
		{"base64 of 31 bytes", "SHA256:" + base64.RawStdEncoding.EncodeToString(short[:31])},
		{"base64 of 33 bytes", "SHA256:" + base64.RawStdEncoding.EncodeToString(append(short[:], 0))},
		{"base64 with a bad character", "SHA256:" + raw[:20] + "!" + raw[21:]},
		{"base64 with a space inside", "SHA256:" + raw[:20] + " " + raw[20:]},
		{"url-safe base64", "SHA256:" + strings.NewReplacer("+", "-", "/", "_").Replace(raw)},
		{"hex of 31 bytes", hx[:62]},
		{"hex of 33 bytes", hx + "00"},
		{"odd hex", hx[:63]},
		{"hex with a non-hex digit", "g" + hx[1:]},
		{"hex with dashes", strings.Join(colons, "-")},
		{"hex with spaces", strings.Join(colons, " ")},
		{"hex with the prefix", "SHA256:" + hx},
		{"long garbage", strings.Repeat("z", 500)},
	}
	if !strings.Contains(raw, "+") && !strings.Contains(raw, "/") {
		t.Fatalf("test digest %q does not exercise '+' or '/'", raw)
	}
	for _, tc := range bad {
		t.Run("bad/"+tc.name, func(t *testing.T) {
			got, err := pki.ParseFingerprint(tc.in)
			if !errors.Is(err, pki.ErrFingerprint) {
				t.Fatalf("ParseFingerprint(%q) = %x, %v; want an error wrapping ErrFingerprint", tc.in, got, err)
			}
			if len(err.Error()) > 400 {
				t.Fatalf("error for a %d-byte input is %d bytes long: the input should be abbreviated", len(tc.in), len(err.Error()))
			}
		})
	}
}

func FuzzParseFingerprint(f *testing.F) {
	d := digest()
	hx := hex.EncodeToString(d[:])
	for _, s := range []string{
		pki.FormatFingerprint(d),
		"SHA256:" + base64.StdEncoding.EncodeToString(d[:]),
		"sha256:" + base64.RawStdEncoding.EncodeToString(d[:]) + "==",
		hx,
		strings.ToUpper(hx),
		hx[:2] + ":" + hx[2:],
		"SHA256:",
		"SHA256:" + hx,
		"",
		"::::",
		"\u00e9" + strings.Repeat("a", 100),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := pki.ParseFingerprint(s)
		if err != nil {
			if !errors.Is(err, pki.ErrFingerprint) {
				t.Fatalf("ParseFingerprint(%q): error %v does not wrap ErrFingerprint", s, err)
			}
			return
		}
		text := pki.FormatFingerprint(d)
		again, err := pki.ParseFingerprint(text)
		if err != nil {
			t.Fatalf("ParseFingerprint(%q) accepted %x, but its formatted form %q is refused: %v", s, d, text, err)
		}
		if again != d {
			t.Fatalf("ParseFingerprint(%q) = %x, but its formatted form %q parses to %x", s, d, text, again)
		}
		if hexAgain, err := pki.ParseFingerprint(hex.EncodeToString(d[:])); err != nil || hexAgain != d {
			t.Fatalf("hex form of %x parses to %x, %v", d, hexAgain, err)
		}
	})
}

func TestSelfSigned(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	hosts := []string{"app.example", "127.0.0.1", "", "::1", "10.1.2.3", "erp-server"}
	certPEM, keyPEM, err := pki.SelfSigned(hosts, now)
	if err != nil {
		t.Fatal(err)
	}
	cb, rest := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" || len(strings.TrimSpace(string(rest))) != 0 {
		t.Fatalf("certificate PEM: block %v, rest %q", cb, rest)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "PRIVATE KEY" {
		t.Fatalf("key PEM: block %v", kb)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		t.Fatalf("key is a %T, want *ecdsa.PrivateKey", k)
	}
	if key.Curve != elliptic.P256() {
		t.Fatalf("key's curve is %s, want P-256", key.Curve.Params().Name)
	}
	if cert.PublicKeyAlgorithm != x509.ECDSA || !key.PublicKey.Equal(cert.PublicKey) {
		t.Fatal("the certificate is not for the key returned with it")
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatalf("the pair does not load: %v", err)
	}

	if want := []string{"app.example", "erp-server"}; strings.Join(cert.DNSNames, ",") != strings.Join(want, ",") {
		t.Errorf("DNSNames = %q, want %q", cert.DNSNames, want)
	}
	wantIPs := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP("10.1.2.3")}
	if len(cert.IPAddresses) != len(wantIPs) {
		t.Errorf("IPAddresses = %v, want %v", cert.IPAddresses, wantIPs)
	} else {
		for i := range wantIPs {
			if !cert.IPAddresses[i].Equal(wantIPs[i]) {
				t.Errorf("IPAddresses[%d] = %v, want %v", i, cert.IPAddresses[i], wantIPs[i])
			}
		}
	}
	if len(cert.EmailAddresses)+len(cert.URIs) != 0 {
		t.Errorf("unexpected SANs: %v %v", cert.EmailAddresses, cert.URIs)
	}
	if cert.Subject.CommonName != "app.example" {
		t.Errorf("CommonName = %q, want the first DNS name", cert.Subject.CommonName)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if !cert.NotBefore.After(now.Add(-2*time.Hour)) || cert.NotBefore.After(now) {
		t.Errorf("NotBefore = %v, want shortly before %v", cert.NotBefore, now)
	}
	if want := now.AddDate(20, 0, 0); !cert.NotAfter.Equal(want) {
		t.Errorf("NotAfter = %v, want %v", cert.NotAfter, want)
	}
	if cert.IsCA {
		t.Error("the server's certificate is a CA")
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("ExtKeyUsage = %v, want server auth", cert.ExtKeyUsage)
	}
	// The names are usable for verification, IP and DNS alike.
	for _, h := range []string{"app.example", "erp-server", "127.0.0.1", "::1"} {
		if err := cert.VerifyHostname(h); err != nil {
			t.Errorf("VerifyHostname(%q): %v", h, err)
		}
	}
	if err := cert.VerifyHostname("other.example"); err == nil {
		t.Error("VerifyHostname(other.example) succeeded")
	}

	// No hosts is fine, and every call makes a new key.
	c2, k2, err := pki.SelfSigned(nil, now)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(c2, k2)
	if err != nil {
		t.Fatal(err)
	}
	if len(pair.Leaf.DNSNames)+len(pair.Leaf.IPAddresses) != 0 {
		t.Errorf("no hosts: SANs %v %v", pair.Leaf.DNSNames, pair.Leaf.IPAddresses)
	}
	if pki.Fingerprint(pair.Leaf) == pki.Fingerprint(cert) || string(k2) == string(keyPEM) {
		t.Error("two calls made the same key")
	}
	if cert.SerialNumber.Cmp(pair.Leaf.SerialNumber) == 0 {
		t.Error("two calls made the same serial number")
	}
}

// handshake runs one TLS handshake between client and server configs
// over a real TCP connection on 127.0.0.1, and returns both sides'
// errors and the version the client negotiated.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error, version uint16) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, server)
		err = tc.Handshake()
		if err == nil {
			// Read the client's close so that a client that failed
			// after the server's part of the handshake is noticed.
			var b [1]byte
			_, rerr := tc.Read(b[:])
			if rerr != nil && !errors.Is(rerr, io.EOF) {
				err = rerr
			}
		}
		done <- err
	}()
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), client)
	if err == nil {
		version = conn.ConnectionState().Version
		conn.Close()
	}
	return <-done, err, version
}

func TestTLS13Only(t *testing.T) {
	cert, fp := pkitest.Certificate(t)
	get := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }
	var seen string
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no certificate")
		}
		seen = pki.Fingerprint(cs.PeerCertificates[0])
		return nil
	}

	if sc := pki.ServerConfig(get); sc.MinVersion != tls.VersionTLS13 {
		t.Errorf("ServerConfig MinVersion = %#x", sc.MinVersion)
	}
	cc := pki.ClientConfig("127.0.0.1", verify)
	if cc.MinVersion != tls.VersionTLS13 || cc.ServerName != "127.0.0.1" || cc.VerifyConnection == nil {
		t.Errorf("ClientConfig = MinVersion %#x ServerName %q", cc.MinVersion, cc.ServerName)
	}

	tls12Client := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}
	tls12Server := &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS12}

	tests := []struct {
		name           string
		server, client *tls.Config
		ok             bool
	}{
		{"both ours", pki.ServerConfig(get), pki.ClientConfig("127.0.0.1", verify), true},
		{"our server, TLS 1.2-only client", pki.ServerConfig(get), tls12Client, false},
		{"TLS 1.2-only server, our client", tls12Server, pki.ClientConfig("127.0.0.1", verify), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen = ""
			serr, cerr, v := handshake(t, tc.server, tc.client)
			if tc.ok {
				if serr != nil || cerr != nil {
					t.Fatalf("handshake failed: server %v, client %v", serr, cerr)
				}
				if v != tls.VersionTLS13 {
					t.Fatalf("negotiated %#x, want TLS 1.3", v)
				}
				if seen != fp {
					t.Fatalf("verify saw the key %q, want %q", seen, fp)
				}
				return
			}
			if cerr == nil || serr == nil {
				t.Fatalf("handshake with a TLS 1.2-only peer: server %v, client %v (version %#x); want both to fail", serr, cerr, v)
			}
			if seen != "" {
				t.Fatalf("verify ran (saw %q) in a refused handshake", seen)
			}
		})
	}
}

func TestClientConfigVerifyDecides(t *testing.T) {
	// The client's verify runs at every handshake even though the
	// standard verification is off, and its error fails the handshake.
	cert, _ := pkitest.Certificate(t)
	get := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }
	refused := errors.New("refused by verify")
	calls := 0
	_, cerr, _ := handshake(t, pki.ServerConfig(get), pki.ClientConfig("127.0.0.1", func(tls.ConnectionState) error {
		calls++
		return refused
	}))
	if !errors.Is(cerr, refused) {
		t.Fatalf("client error %v, want verify's error", cerr)
	}
	if calls != 1 {
		t.Fatalf("verify called %d times, want 1", calls)
	}
}

func TestSelfSignedNonASCIIHostName(t *testing.T) {
	// A machine name a certificate cannot hold (Windows allows them)
	// must not stop the server's first start: clients pin the key.
	certPEM, keyPEM, err := pki.SelfSigned([]string{"servidor-joão", "localhost", "127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatalf("SelfSigned with a non-ASCII host name: %v", err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"localhost", "127.0.0.1"} {
		if err := c.Leaf.VerifyHostname(h); err != nil {
			t.Errorf("VerifyHostname(%q): %v", h, err)
		}
	}
	for _, n := range c.Leaf.DNSNames {
		for _, r := range n {
			if r > 0x7f {
				t.Errorf("DNS name %q is not ASCII", n)
			}
		}
	}
}
