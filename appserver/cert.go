package appserver

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/certs"
	"github.com/erpupdate/smartsync/internal/pki"
)

// CertOptions configure "appserver cert".
type CertOptions struct {
	Config string // AppServer.ini
	State  string // the server's state folder; "" for appserver-state beside Config
	// Hosts, when set, makes a new key and a certificate for these names
	// in Out.crt and Out.key instead of showing the server's.
	Hosts []string
	Out   string
}

// Cert prints the fingerprint of the server's TLS key, which clients pin
// (the server makes its key now if it has none yet, as its first start
// would), or, with o.Hosts, makes a key and self-signed certificate for
// those names and says how to use them.
func Cert(o CertOptions, stdout io.Writer) error {
	if len(o.Hosts) > 0 {
		return makeCert(o, stdout)
	}
	cfg, err := LoadConfig(o.Config)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	id, err := certs.Open(slog.New(slog.DiscardHandler), cfg.TLS.CertFile, cfg.TLS.KeyFile, stateDir(o.Config, o.State))
	if err != nil {
		return err
	}
	cert, key := id.Files()
	from := "made by the server"
	if cfg.TLS.Source != "" {
		from = "from [" + cfg.TLS.Source + "] in " + cfg.File
	}
	if id.Made() {
		from = "made now, as the server's first start would"
	}
	fmt.Fprintf(stdout, "Fingerprint: %s\nCertificate: %s (%s)\nKey:         %s\n\n", id.Fingerprint(), cert, from, key)
	fmt.Fprintf(stdout, "Workstations trust this key on their first sync, or from the start with\nthese lines in smartclient.ini:\n\n[SSL]\nFingerprint=%s\n", id.Fingerprint())
	return nil
}

// makeCert writes o.Out.crt and o.Out.key for o.Hosts; it never
// overwrites a file, since a replaced key is refused by every client that
// pinned the old one.
func makeCert(o CertOptions, stdout io.Writer) error {
	if o.Out == "" {
		return fmt.Errorf("%w: --host needs --out PREFIX (writes PREFIX.crt and PREFIX.key)", ErrUsage)
	}
	certFile, keyFile := o.Out+".crt", o.Out+".key"
	for _, f := range []string{certFile, keyFile} {
		if _, err := os.Stat(f); err == nil {
			return fmt.Errorf("%s exists: not replacing a key clients may have pinned", f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	certPEM, keyPEM, err := pki.SelfSigned(o.Hosts, time.Now())
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return fmt.Errorf("writing the key: %w", err)
	}
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return fmt.Errorf("writing the certificate: %w", err)
	}
	id, err := certs.Open(slog.New(slog.DiscardHandler), certFile, keyFile, "")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Wrote %s and %s for %v.\nFingerprint: %s\n\nIn AppServer.ini:\n\n[SSL]\nCertificate=%s\nKey=%s\n\nIn smartclient.ini, to pin it from the start:\n\n[SSL]\nFingerprint=%s\n",
		certFile, keyFile, o.Hosts, id.Fingerprint(), certFile, keyFile, id.Fingerprint())
	return nil
}
