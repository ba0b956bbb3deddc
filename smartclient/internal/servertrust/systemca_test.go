package servertrust_test

import (
	"crypto/x509"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/erpupdate/smartsync/internal/pki/pkitest"
	"github.com/erpupdate/smartsync/smartclient/internal/servertrust"
)

// TestSystemCAAndFirstUseDoNotStandInForEachOther: what is recorded of an
// address is checked before the system's CAs are asked, so that a
// certificate some CA the system trusts signed cannot replace a key
// trusted on first use; and an address first met with a CA-signed
// certificate is recorded as such, so that a self-signed one there later
// is refused rather than trusted on first use, while a renewed CA-signed
// certificate with a new key is accepted.
func TestSystemCAAndFirstUseDoNotStandInForEachOther(t *testing.T) {
	sys := newCA(t, "system CA")
	roots := x509.NewCertPool()
	roots.AddCert(sys.cert)
	selfSigned, _ := pkitest.Certificate(t)

	t.Run("recorded key, then a CA-signed certificate", func(t *testing.T) {
		srv := newServer(t, selfSigned)
		known := filepath.Join(t.TempDir(), servertrust.KnownName)
		learn := servertrust.Config{KnownFile: known, Seen: &servertrust.Seen{}, SystemRoots: roots}
		if err := dial(t, learn, srv.addr); err != nil {
			t.Fatal(err)
		}
		if err := learn.Record(); err != nil {
			t.Fatal(err)
		}
		srv.use(sys.leaf(t, localhost))
		for _, u := range []servertrust.Unknown{servertrust.Learn, servertrust.Refuse} {
			err := dial(t, servertrust.Config{KnownFile: known, Unknown: u, Seen: &servertrust.Seen{}, SystemRoots: roots}, srv.addr)
			if !errors.Is(err, servertrust.ErrKeyChanged) {
				t.Errorf("unknown=%v: got %v; want %v", u, err, servertrust.ErrKeyChanged)
			}
		}
	})

	t.Run("CA-signed first, then self-signed", func(t *testing.T) {
		srv := newServer(t, sys.leaf(t, localhost))
		known := filepath.Join(t.TempDir(), servertrust.KnownName)
		learn := servertrust.Config{KnownFile: known, Seen: &servertrust.Seen{}, SystemRoots: roots}
		if err := dial(t, learn, srv.addr); err != nil {
			t.Fatal(err)
		}
		if err := learn.Record(); err != nil {
			t.Fatal(err)
		}
		// Renewed, with a new key: still signed by the CA.
		srv.use(sys.leaf(t, localhost))
		if err := dial(t, servertrust.Config{KnownFile: known, Seen: &servertrust.Seen{}, SystemRoots: roots}, srv.addr); err != nil {
			t.Fatalf("a renewed CA-signed certificate: %v", err)
		}
		srv.use(selfSigned)
		err := dial(t, servertrust.Config{KnownFile: known, Seen: &servertrust.Seen{}, SystemRoots: roots}, srv.addr)
		if !errors.Is(err, servertrust.ErrKeyChanged) || !strings.Contains(err.Error(), "CA-signed") {
			t.Fatalf("got %v; want %v saying the address showed CA-signed certificates", err, servertrust.ErrKeyChanged)
		}
	})
}
