// Package servertrust decides whether the client trusts the server at the
// other end of a TLS handshake, in this order: the fingerprint the
// administrator set ([SSL] Fingerprint in smartclient.ini: that key and no
// other), the CA the administrator named ([SSL] CA: a certificate it
// signed for the server's name), the system's roots (a CA-signed
// certificate for the server's name); with none of these, trust on first
// use, as SSH does: the first key seen at an address is recorded in the
// install's .smartclient folder, and a different key at that address later
// is refused with both fingerprints and what to check.
//
// It imports internal/pki and internal/atomicfile.
package servertrust

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/erpupdate/smartsync/internal/pki"
)

// KnownName is the file, in the install's .smartclient folder, of the
// server keys trusted on first use.
const KnownName = "known_servers.json"

// Unknown says what becomes of a server whose key nothing pins yet.
type Unknown int

const (
	// Learn trusts it, and keeps its key in Config.Seen, for the caller
	// to Record once the sync it was trusted for has succeeded (a failed
	// sync leaves the install as it was, .smartclient included); every
	// later session of that sync must present the same key.
	Learn Unknown = iota
	// Accept trusts it for this session and records nothing: a check,
	// which changes nothing and installs nothing.
	Accept
	// Refuse refuses it: an administrator's command, which must not
	// hand a password to a server never seen.
	Refuse
)

// Config is what the client trusts.
type Config struct {
	// Fingerprint is [SSL] Fingerprint: when set, the only key accepted.
	Fingerprint string
	// CAFile is [SSL] CA: a PEM file of CA certificates; when set, the
	// server's certificate must be signed by one, for its name.
	CAFile string
	// KnownFile is where keys trusted on first use are kept; "" keeps
	// none (Unknown is then Accept or Refuse).
	KnownFile string
	Unknown   Unknown
	// Seen holds, with Learn, the key of a server seen for the first
	// time; nil keeps none (and Learn is then Accept).
	Seen *Seen
	// Plaintext is [SSL] AllowPlaintext: connect over plain TCP, no TLS.
	Plaintext bool
	// SystemRoots stands for the system's roots: nil uses them (tests
	// give a CA of their own).
	SystemRoots *x509.CertPool
}

// Errors of a server that is not trusted, each wrapped in a message that
// names the address, the keys and what to check.
var (
	ErrKeyChanged        = errors.New("the server's key is not the one this workstation knows")
	ErrFingerprint       = errors.New("the server's key is not the one smartclient.ini names")
	ErrNotSignedByCA     = errors.New("the server's certificate is not signed by the configured CA")
	ErrUnknownServer     = errors.New("this workstation does not know the server's key")
	ErrPlaintextServer   = errors.New("the server does not speak TLS")
	errNoPeerCertificate = errors.New("the server sent no certificate")
)

// Untrusted reports whether err is a server this client does not trust,
// rather than one it could not reach.
func Untrusted(err error) bool {
	for _, e := range []error{ErrKeyChanged, ErrFingerprint, ErrNotSignedByCA, ErrUnknownServer, ErrPlaintextServer} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// known is the file of keys trusted on first use.
type known struct {
	Servers map[string]knownServer `json:"servers"`
}

type knownServer struct {
	Fingerprint string    `json:"fingerprint"`
	FirstSeen   time.Time `json:"first_seen"`
	// Trust is "" for a key trusted on first use, trustCA for an address
	// whose certificates a CA the system trusts signed (Fingerprint is
	// then the first key seen, for the record).
	Trust string `json:"trust,omitempty"`
}

// trustCA marks an address trusted through the system's CAs.
const trustCA = "ca"

// fileMu serializes this process's updates of known files.
var fileMu sync.Mutex

// TLS returns the TLS configuration of a connection to addr (HOST:PORT,
// as the client was told to connect: the address the key is recorded
// under).
func (c Config) TLS(addr string) (*tls.Config, error) {
	var pin *[sha256.Size]byte
	if c.Fingerprint != "" {
		d, err := pki.ParseFingerprint(c.Fingerprint)
		if err != nil {
			return nil, fmt.Errorf("[SSL] Fingerprint: %w", err)
		}
		pin = &d
	}
	var pool *x509.CertPool
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("[SSL] CA: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("[SSL] CA: %s holds no PEM certificate", c.CAFile)
		}
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errNoPeerCertificate
		}
		leaf := cs.PeerCertificates[0]
		got := pki.KeyDigest(leaf)
		switch {
		case pin != nil:
			if got != *pin {
				return fmt.Errorf("%w: the update server at %s presented the key %s, but smartclient.ini [SSL] Fingerprint says %s: someone may be posing as the server, or the server's key was replaced; ask the administrator for the fingerprint \"appserver cert\" prints on the server",
					ErrFingerprint, addr, pki.FormatFingerprint(got), pki.FormatFingerprint(*pin))
			}
			return nil
		case pool != nil:
			if err := verifyChain(cs, host, pool); err != nil {
				return fmt.Errorf("%w: the update server at %s (key %s): %v; check [SSL] CA=%s in smartclient.ini, or the server's certificate",
					ErrNotSignedByCA, addr, pki.FormatFingerprint(got), err, c.CAFile)
			}
			return nil
		}
		return c.firstUse(addr, got, verifyChain(cs, host, c.SystemRoots) == nil)
	}
	return pki.ClientConfig(host, verify), nil
}

// verifyChain checks the server's chain against roots (the system's when
// nil) for host.
func verifyChain(cs tls.ConnectionState, host string, roots *x509.CertPool) error {
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter})
	return err
}

// firstUse decides with what was recorded of addr: its key (trust on
// first use), or that its certificates are signed by a CA the system
// trusts (caValid says whether this one is). What is recorded is checked
// first, so that neither kind of trust stands in for the other: a
// CA-signed certificate at an address whose key was recorded is refused
// if its key differs, and a certificate no system CA signed is refused at
// an address that showed CA-signed ones. A server never seen is trusted
// when its certificate is CA-signed for its name (and recorded as such),
// else as c.Unknown says.
func (c Config) firstUse(addr string, got [sha256.Size]byte, caValid bool) error {
	fp := pki.FormatFingerprint(got)
	fileMu.Lock()
	defer fileMu.Unlock()
	var k known
	if c.KnownFile != "" {
		var err error
		if k, err = readKnown(c.KnownFile); err != nil {
			return err
		}
	}
	if was, ok := k.Servers[addr]; ok && was.Trust == trustCA {
		if caValid {
			return nil // a renewed certificate may carry a new key
		}
		return fmt.Errorf("%w: the update server at %s presented a certificate (key %s) that no CA this system trusts signed for that name, but it has shown CA-signed certificates since %s (recorded in %s). Someone may be posing as the server; ask the administrator, and if the server now uses a certificate of its own, remove the entry for %s from %s",
			ErrKeyChanged, addr, fp, was.FirstSeen.Format("2006-01-02"), c.KnownFile, addr, c.KnownFile)
	}
	if was, ok := k.Servers[addr]; ok {
		if was.Fingerprint == fp {
			return nil
		}
		return fmt.Errorf("%w: the update server at %s presented the key %s, but this workstation has trusted %s for that address since %s (recorded in %s). Someone may be posing as the server, or the server's key was replaced (a reinstalled server makes a new one). Ask the administrator to compare with what \"appserver cert\" prints on the server; if the new key is the server's, remove the entry for %s from %s, or set [SSL] Fingerprint=%s in smartclient.ini",
			ErrKeyChanged, addr, fp, was.Fingerprint, was.FirstSeen.Format("2006-01-02"), c.KnownFile, addr, c.KnownFile, fp)
	}
	switch {
	case caValid:
		// A certificate for this name from a CA the system trusts.
		if c.Unknown == Learn && c.Seen != nil {
			return c.Seen.see(addr, fp, trustCA)
		}
		return nil
	case c.Unknown == Refuse:
		return fmt.Errorf("%w: the update server at %s presents the key %s, which nothing pins: sync from it once (which records its key), or set [SSL] Fingerprint in smartclient.ini after comparing with what \"appserver cert\" prints on the server",
			ErrUnknownServer, addr, fp)
	case c.Unknown == Learn && c.Seen != nil:
		return c.Seen.see(addr, fp, "")
	}
	return nil
}

// Seen is the key of a server seen for the first time by one sync.
type Seen struct {
	mu        sync.Mutex
	addr, fp  string
	trust     string // as knownServer.Trust
	firstSeen time.Time
}

func (s *Seen) see(addr, fp, trust string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fp == "" {
		s.addr, s.fp, s.trust, s.firstSeen = addr, fp, trust, time.Now().UTC()
		return nil
	}
	if s.addr == addr && s.trust != trust {
		return fmt.Errorf("%w: the update server at %s presented a CA-signed certificate and one that is not, in the same sync: someone may be posing as the server",
			ErrKeyChanged, addr)
	}
	if s.addr == addr && s.fp != fp && trust != trustCA {
		return fmt.Errorf("%w: the update server at %s presented the key %s, and a moment ago %s, in the same sync: someone may be posing as the server",
			ErrKeyChanged, addr, fp, s.fp)
	}
	return nil
}

// Record keeps the key seen, if any, in the known file: the sync it was
// trusted for has succeeded. The key is trusted at that address from
// then on.
func (c Config) Record() error {
	if c.Seen == nil || c.KnownFile == "" {
		return nil
	}
	c.Seen.mu.Lock()
	addr, fp, trust, when := c.Seen.addr, c.Seen.fp, c.Seen.trust, c.Seen.firstSeen
	c.Seen.mu.Unlock()
	if fp == "" {
		return nil
	}
	fileMu.Lock()
	defer fileMu.Unlock()
	k, err := readKnown(c.KnownFile)
	if err != nil {
		return err
	}
	if k.Servers == nil {
		k.Servers = map[string]knownServer{}
	}
	if _, ok := k.Servers[addr]; ok {
		return nil // another process recorded it meanwhile; it checked it then
	}
	k.Servers[addr] = knownServer{Fingerprint: fp, FirstSeen: when, Trust: trust}
	if err := atomicfile.WriteJSON(c.KnownFile, k, 0o644); err != nil {
		return fmt.Errorf("recording the server's key: %w", err)
	}
	return nil
}

// KnownKey is one server key trusted on first use.
type KnownKey struct {
	Addr, Fingerprint string
	FirstSeen         time.Time
}

// KnownKeys returns the keys recorded in file, by address; none when
// there is no file.
func KnownKeys(file string) ([]KnownKey, error) {
	k, err := readKnown(file)
	if err != nil {
		return nil, err
	}
	keys := make([]KnownKey, 0, len(k.Servers))
	for addr, s := range k.Servers {
		keys = append(keys, KnownKey{Addr: addr, Fingerprint: s.Fingerprint, FirstSeen: s.FirstSeen})
	}
	slices.SortFunc(keys, func(a, b KnownKey) int { return strings.Compare(a.Addr, b.Addr) })
	return keys, nil
}

// Known returns the fingerprint recorded for addr in file, "" for none.
func Known(file, addr string) (string, error) {
	k, err := readKnown(file)
	return k.Servers[addr].Fingerprint, err
}

// readKnown reads the known file; a missing one is an empty record.
func readKnown(file string) (known, error) {
	var k known
	if err := atomicfile.ReadJSON(file, &k); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return known{}, fmt.Errorf("reading the keys of known servers: %w", err)
	}
	return k, nil
}
