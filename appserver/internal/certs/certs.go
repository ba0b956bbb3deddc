// Package certs is the server's TLS identity: the certificate and key the
// administrator configured, read again when the files change (so that a
// renewed certificate needs no restart), or, when none is configured, a
// key and self-signed certificate the server makes in its state folder at
// its first start and keeps from then on. A key is never shipped with the
// product: each server makes its own.
//
// It imports internal/pki and internal/atomicfile.
package certs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/erpupdate/smartsync/internal/pki"
)

// The files of a key the server made itself, in its state folder.
const (
	Dir      = "tls"
	CertName = "server.crt"
	KeyName  = "server.key"
)

// recheck is how often, at most, the files are looked at again for a
// change: at a handshake, never more than once in this time.
const recheck = 2 * time.Second

// Identity is the server's certificate and key.
type Identity struct {
	log               *slog.Logger
	certFile, keyFile string
	made              bool // the server made them (see Made)

	mu      sync.Mutex
	cur     *tls.Certificate
	fp      string
	stamp   [2]stamp
	checked time.Time
}

// stamp is what tells that a file changed.
type stamp struct {
	size  int64
	mtime time.Time
}

// Open returns the identity in certFile and keyFile, or, when both are
// empty, the one in stateDir/tls, made there first if it is not there yet.
func Open(log *slog.Logger, certFile, keyFile, stateDir string) (*Identity, error) {
	id := &Identity{log: log, certFile: certFile, keyFile: keyFile}
	if certFile == "" && keyFile == "" {
		dir := filepath.Join(stateDir, Dir)
		id.certFile, id.keyFile = filepath.Join(dir, CertName), filepath.Join(dir, KeyName)
		made, err := makeIfMissing(dir, id.certFile, id.keyFile)
		if err != nil {
			return nil, err
		}
		id.made = made
	}
	if err := id.load(); err != nil {
		return nil, err
	}
	return id, nil
}

// makeIfMissing makes a key and a self-signed certificate in dir unless
// both are there. One without the other is an error: making a new key
// then would change the server's fingerprint behind the administrator's
// back.
func makeIfMissing(dir, certFile, keyFile string) (bool, error) {
	_, cerr := os.Stat(certFile)
	_, kerr := os.Stat(keyFile)
	switch {
	case cerr == nil && kerr == nil:
		return false, nil
	case errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist):
	case cerr == nil || kerr == nil:
		return false, fmt.Errorf("TLS identity in %s: only one of %s and %s is there; restore the other from a backup, or remove both to make a new key (every client that knows the old one will refuse the new one)", dir, CertName, KeyName)
	default:
		return false, fmt.Errorf("TLS identity in %s: %w", dir, errors.Join(cerr, kerr))
	}
	// The state folder as the server makes it; the key's own folder
	// for the server's user only.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return false, fmt.Errorf("making the state folder: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return false, fmt.Errorf("making the TLS folder: %w", err)
	}
	host, _ := os.Hostname()
	certPEM, keyPEM, err := pki.SelfSigned([]string{host, "localhost", "127.0.0.1", "::1"}, time.Now())
	if err != nil {
		return false, err
	}
	// The key first: a certificate alone is the error above, and a key
	// alone is too, so a crash between the two is noticed, not papered
	// over.
	if err := atomicfile.Write(keyFile, keyPEM, 0o600); err != nil {
		return false, fmt.Errorf("writing the server's key: %w", err)
	}
	if err := atomicfile.Write(certFile, certPEM, 0o644); err != nil {
		return false, fmt.Errorf("writing the server's certificate: %w", err)
	}
	return true, nil
}

// Made reports whether the server made this identity itself, at this
// start.
func (id *Identity) Made() bool { return id.made }

// Files returns the certificate's and the key's paths.
func (id *Identity) Files() (cert, key string) { return id.certFile, id.keyFile }

// Fingerprint returns the fingerprint of the key in use.
func (id *Identity) Fingerprint() string {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.fp
}

// TLSConfig returns the server's TLS configuration.
func (id *Identity) TLSConfig() *tls.Config { return pki.ServerConfig(id.getCertificate) }

// load reads both files; the identity in use changes only if they read
// well together.
func (id *Identity) load() error {
	st, err := id.stamps()
	if err != nil {
		return err
	}
	c, err := tls.LoadX509KeyPair(id.certFile, id.keyFile)
	if err != nil {
		return fmt.Errorf("loading the TLS certificate %s and key %s: %w", id.certFile, id.keyFile, err)
	}
	if c.Leaf == nil {
		return fmt.Errorf("loading the TLS certificate %s: no certificate", id.certFile)
	}
	id.mu.Lock()
	id.cur, id.fp, id.stamp, id.checked = &c, pki.Fingerprint(c.Leaf), st, time.Now()
	id.mu.Unlock()
	return nil
}

func (id *Identity) stamps() ([2]stamp, error) {
	var st [2]stamp
	for i, f := range []string{id.certFile, id.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return st, fmt.Errorf("reading the TLS identity: %w", err)
		}
		st[i] = stamp{fi.Size(), fi.ModTime()}
	}
	return st, nil
}

// getCertificate is called at every handshake: it reads the files again
// when they changed (looked at once in recheck at most), and keeps the
// identity in use when the new files do not load, saying why.
func (id *Identity) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	id.mu.Lock()
	due := time.Since(id.checked) >= recheck
	if due {
		id.checked = time.Now()
	}
	cur, old := id.cur, id.stamp
	id.mu.Unlock()
	if !due {
		return cur, nil
	}
	st, err := id.stamps()
	if err == nil && st == old {
		return cur, nil
	}
	before := id.Fingerprint()
	if err == nil {
		err = id.load()
	}
	if err != nil {
		id.log.Error("the TLS certificate changed but cannot be used; serving the one loaded before", "err", err)
		return cur, nil
	}
	id.mu.Lock()
	cur = id.cur
	id.mu.Unlock()
	if fp := id.Fingerprint(); fp != before {
		id.log.Warn("TLS key changed; clients that pinned the old key will refuse this one", "fingerprint", fp, "was", before)
	} else {
		id.log.Info("TLS certificate reloaded", "fingerprint", fp)
	}
	return cur, nil
}
