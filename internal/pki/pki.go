// Package pki holds what both sides of a connection agree on about TLS:
// the TLS 1.3 configuration every connection uses, the fingerprint that
// names a server's key (the SHA-256 of its public key, as "SHA256:" and
// unpadded base64, the form SSH prints), and the making of a key and a
// self-signed certificate for a server that was given none.
//
// A fingerprint names the public key, not the certificate, so that a
// certificate renewed over the same key keeps its fingerprint.
//
// It imports the standard library only.
package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

// FingerprintPrefix starts every fingerprint in its text form.
const FingerprintPrefix = "SHA256:"

// ErrFingerprint is returned, wrapped, for a fingerprint that is not in
// a form ParseFingerprint reads.
var ErrFingerprint = errors.New("pki: malformed fingerprint")

// Fingerprint returns the fingerprint of cert's public key.
func Fingerprint(cert *x509.Certificate) string {
	return FormatFingerprint(KeyDigest(cert))
}

// KeyDigest returns the SHA-256 of cert's public key (its DER
// SubjectPublicKeyInfo).
func KeyDigest(cert *x509.Certificate) [sha256.Size]byte {
	return sha256.Sum256(cert.RawSubjectPublicKeyInfo)
}

// FormatFingerprint returns the text form of a key digest.
func FormatFingerprint(d [sha256.Size]byte) string {
	return FingerprintPrefix + base64.RawStdEncoding.EncodeToString(d[:])
}

// ParseFingerprint reads a fingerprint as an administrator may paste it:
// "SHA256:" and base64 (padded or not, the prefix in any case), or 64 hex
// digits, with or without colons between the bytes.
func ParseFingerprint(s string) ([sha256.Size]byte, error) {
	var d [sha256.Size]byte
	s = strings.TrimSpace(s)
	if len(s) >= len(FingerprintPrefix) && strings.EqualFold(s[:len(FingerprintPrefix)], FingerprintPrefix) {
		b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s[len(FingerprintPrefix):], "="))
		if err != nil || len(b) != len(d) {
			return d, fmt.Errorf("%w: %q: want %s followed by the base64 of 32 bytes, as \"appserver cert\" prints it", ErrFingerprint, abbrev(s), FingerprintPrefix)
		}
		copy(d[:], b)
		return d, nil
	}
	b, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	if err != nil || len(b) != len(d) {
		return d, fmt.Errorf("%w: %q: want %s and base64, or 64 hex digits, as \"appserver cert\" prints it", ErrFingerprint, abbrev(s), FingerprintPrefix)
	}
	copy(d[:], b)
	return d, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func abbrev(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// ServerConfig is the server's TLS configuration: TLS 1.3 only, the
// certificate from get (called at every handshake, so that a renewed
// certificate is used without a restart).
func ServerConfig(get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: get}
}

// ClientConfig is the client's TLS configuration: TLS 1.3 only, the
// server's name for SNI and CA checks, and verify deciding whether the
// server's certificate chain is trusted (the client pins keys, which the
// standard verification cannot express, so verify does all of it).
func ClientConfig(serverName string, verify func(tls.ConnectionState) error) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: serverName,
		// The standard check is replaced, not skipped: verify runs on
		// every handshake and decides (see VerifyConnection).
		InsecureSkipVerify: true,
		VerifyConnection:   verify,
	}
}

// SelfSigned makes a new ECDSA P-256 key and a self-signed certificate
// for it, valid for 20 years for the given host names and addresses
// (none is fine: clients pin the key, not a name), and returns both in
// PEM. A server's key is made on its own machine, never shipped.
func SelfSigned(hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("making a key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("making a serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "smartsync appserver"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(20, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" && isASCII(h) {
			// A certificate's names are ASCII (IA5String): a machine
			// name such as "servidor-joão" is left out rather than
			// fail the server's first start. Clients pin the key, not
			// a name; a CA-issued certificate for such a host carries
			// its xn-- form.
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if len(tmpl.DNSNames) > 0 {
		tmpl.Subject.CommonName = tmpl.DNSNames[0]
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("making a certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the key: %w", err)
	}
	var c, k bytes.Buffer
	pem.Encode(&c, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	pem.Encode(&k, &pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	return c.Bytes(), k.Bytes(), nil
}
