package release

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

const (
	// PublicKeyPrefix starts every public key in its text form.
	PublicKeyPrefix = "ed25519:"
	// PrivateKeyPrefix starts the one line of a private key file.
	PrivateKeyPrefix = "ed25519-private:"

	// maxKeyFile bounds what ReadPrivateKey reads: a key file is one short
	// line, so anything large is the wrong file.
	maxKeyFile = 4096
)

// ErrKeyFormat is returned, wrapped, for a key that is not in one of the
// forms described in the package documentation.
var ErrKeyFormat = errors.New("release: malformed key")

// FormatPublicKey returns pub in the one-line form administrators paste into
// AppServer.ini [SELFUPDATE] PublicKey.
func FormatPublicKey(pub ed25519.PublicKey) string {
	return PublicKeyPrefix + base64.StdEncoding.EncodeToString(pub)
}

// ParsePublicKey parses one public key in the form "ed25519:BASE64".
// Surrounding spaces are ignored.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, PublicKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: public key %q does not start with %s; write %sBASE64, as printed by \"appserver release keygen\"", ErrKeyFormat, abbrev(s), PublicKeyPrefix, PublicKeyPrefix)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("%w: public key %q is not valid base64 after %s: %w", ErrKeyFormat, abbrev(s), PublicKeyPrefix, err)
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: public key %q holds %d bytes; an ed25519 public key is %d", ErrKeyFormat, abbrev(s), len(b), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// ParsePublicKeys parses a list of public keys separated by commas or white
// space, as an administrator may write several in one PublicKey value during
// a key rotation. An empty list is an error: a server with no trusted key
// could never update.
func ParsePublicKeys(s string) ([]ed25519.PublicKey, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	if len(fields) == 0 {
		return nil, fmt.Errorf("%w: no public key given", ErrKeyFormat)
	}
	keys := make([]ed25519.PublicKey, 0, len(fields))
	for _, f := range fields {
		k, err := ParsePublicKey(f)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// ParsePrivateKey parses the content of a private key file: one line
// "ed25519-private:BASE64-OF-SEED", with an optional final newline.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	s := strings.TrimSuffix(string(data), "\n")
	s = strings.TrimSuffix(s, "\r")
	rest, ok := strings.CutPrefix(s, PrivateKeyPrefix)
	if !ok {
		// Never quote the content: it may be a key in another form.
		return nil, fmt.Errorf("%w: private key does not start with %q", ErrKeyFormat, PrivateKeyPrefix)
	}
	seed, err := base64.StdEncoding.Strict().DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("%w: private key: base64: %w", ErrKeyFormat, err)
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: private key holds %d bytes, want %d", ErrKeyFormat, len(seed), ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// ReadPrivateKey reads and parses the private key file at path.
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading private key: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading private key %s: %w", path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("%s: %w: file is larger than %d bytes", path, ErrKeyFormat, maxKeyFile)
	}
	k, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// KeyID returns a short name for pub, for messages and logs.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// GenerateKey makes a new key pair from rand (crypto/rand.Reader when nil)
// and writes the private key to path with mode 0600. It refuses to
// overwrite an existing file, since losing a signing key that administrators
// already trust is not recoverable.
func GenerateKey(path string, rand io.Reader) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}
	line := PrivateKeyPrefix + base64.StdEncoding.EncodeToString(priv.Seed()) + "\n"
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating private key file: %w", err)
	}
	if _, err := io.Copy(f, bytes.NewReader([]byte(line))); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("writing private key %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("syncing private key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("closing private key %s: %w", path, err)
	}
	return pub, nil
}

// abbrev shortens s for a message, so that a pasted paragraph does not fill
// the screen.
func abbrev(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}
