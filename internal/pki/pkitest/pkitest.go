// Package pkitest gives tests a TLS listener like the server's: TLS 1.3
// on 127.0.0.1, with a key and self-signed certificate made for the test,
// so that a test's own fake server speaks to the client as a real one
// does.
//
// It imports internal/pki.
package pkitest

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/pki"
)

// Listener is a TLS listener on 127.0.0.1 with its own key.
type Listener struct {
	net.Listener
	// Fingerprint names the listener's key.
	Fingerprint string
	// Config is its TLS configuration, for wrapping connections by hand.
	Config *tls.Config
}

// Listen returns a new TLS listener on 127.0.0.1:0, closed when the test
// ends.
func Listen(t testing.TB) *Listener {
	t.Helper()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tcp.Close() })
	cert, fp := Certificate(t)
	cfg := pki.ServerConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil })
	return &Listener{Listener: tls.NewListener(tcp, cfg), Fingerprint: fp, Config: cfg}
}

// Certificate makes a key and self-signed certificate, and returns them
// with the key's fingerprint.
func Certificate(t testing.TB) (tls.Certificate, string) {
	t.Helper()
	certPEM, keyPEM, err := pki.SelfSigned([]string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert, pki.Fingerprint(cert.Leaf)
}
