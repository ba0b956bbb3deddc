package release

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/erpupdate/smartsync/internal/version"
)

// sigMagic is the first line of a version 1 signature file and the start
// of the signed message.
const sigMagic = "smartsync-release-signature v1"

// maxSigFile bounds how much of a signature file is read; a real one is
// under 300 bytes.
const maxSigFile = 4096

// Errors from Verify, each wrapped with the file it is about.
var (
	ErrNoSignature     = errors.New("release: signature file is missing")
	ErrSignatureFormat = errors.New("release: malformed signature file")
	ErrUnknownKey      = errors.New("release: signed with a key that is not trusted")
	ErrBadSignature    = errors.New("release: signature does not verify")
	ErrDigestMismatch  = errors.New("release: archive does not match its signature")
	ErrNoTrustedKey    = errors.New("release: no trusted public key configured")
	ErrBuildMismatch   = errors.New("release: BUILD file does not match the signed build")
)

// Info describes a release archive.
type Info struct {
	// Build is the release's build, from its BUILD file.
	Build string
	// Size and SHA256 are the archive's length and digest; zero from
	// Extract, which reads the archive rather than hashing it.
	Size   int64
	SHA256 [sha256.Size]byte
	// KeyID is the ID of the key that signed the archive (see KeyID); empty
	// from Extract.
	KeyID string
}

// Signature is a parsed signature file.
type Signature struct {
	Key    ed25519.PublicKey
	Build  string
	Size   int64
	SHA256 [sha256.Size]byte
	Sig    []byte
}

// message returns the bytes the ed25519 signature is over (see the package
// documentation).
func (s *Signature) message() []byte {
	var b bytes.Buffer
	b.WriteString(sigMagic)
	b.WriteByte(0)
	b.WriteString(s.Build)
	b.WriteByte(0)
	b.WriteString(strconv.FormatInt(s.Size, 10))
	b.WriteByte(0)
	b.Write(s.SHA256[:])
	return b.Bytes()
}

// Marshal returns the signature file's text.
func (s *Signature) Marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nkey %s\nbuild %s\nsize %d\nsha256 %s\nsig %s\n",
		sigMagic, FormatPublicKey(s.Key), s.Build, s.Size,
		hex.EncodeToString(s.SHA256[:]), base64.StdEncoding.EncodeToString(s.Sig))
	return b.Bytes()
}

// ParseSignature decodes a signature file. It checks the form only, not the
// signature; errors wrap ErrSignatureFormat and name the line.
func ParseSignature(data []byte) (*Signature, error) {
	bad := func(format string, args ...any) (*Signature, error) {
		return nil, fmt.Errorf("%w: %s", ErrSignatureFormat, fmt.Sprintf(format, args...))
	}
	if len(data) == 0 {
		return bad("empty")
	}
	if len(data) > maxSigFile {
		return bad("larger than %d bytes", maxSigFile)
	}
	text := string(data)
	if strings.Contains(text, "\r") {
		// Most likely the file went through a Windows text conversion.
		return bad("has CR LF line ends; the format uses LF only")
	}
	if !strings.HasSuffix(text, "\n") {
		return bad("truncated: no newline at the end")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if lines[0] != sigMagic {
		return bad("line 1 is %q, want %q", abbrev(lines[0]), sigMagic)
	}
	keywords := []string{"key", "build", "size", "sha256", "sig"}
	if len(lines) != 1+len(keywords) {
		return bad("%d lines, want %d", len(lines), 1+len(keywords))
	}
	vals := make([]string, len(keywords))
	for i, kw := range keywords {
		v, ok := strings.CutPrefix(lines[i+1], kw+" ")
		if !ok {
			return bad("line %d does not start with %q", i+2, kw+" ")
		}
		vals[i] = v
	}
	var s Signature
	var err error
	if s.Key, err = ParsePublicKey(vals[0]); err != nil || strings.TrimSpace(vals[0]) != vals[0] {
		return bad("line 2: key: %v", err)
	}
	if s.Build = vals[1]; !validBuild(s.Build) || strings.TrimSpace(s.Build) != s.Build {
		return bad("line 3: build %q is not a valid build", abbrev(s.Build))
	}
	// ParseUint takes no sign; the round trip refuses leading zeros.
	n, err := strconv.ParseUint(vals[2], 10, 62)
	if err != nil || strconv.FormatUint(n, 10) != vals[2] {
		return bad("line 4: size %q is not a decimal number", abbrev(vals[2]))
	}
	s.Size = int64(n)
	if len(vals[3]) != 2*sha256.Size || strings.ToLower(vals[3]) != vals[3] {
		return bad("line 5: sha256 is not %d lower-case hex digits", 2*sha256.Size)
	}
	if _, err := hex.Decode(s.SHA256[:], []byte(vals[3])); err != nil {
		return bad("line 5: sha256: %v", err)
	}
	if s.Sig, err = base64.StdEncoding.Strict().DecodeString(vals[4]); err != nil {
		return bad("line 6: sig: %v", err)
	}
	if len(s.Sig) != ed25519.SignatureSize {
		return bad("line 6: sig holds %d bytes, want %d", len(s.Sig), ed25519.SignatureSize)
	}
	return &s, nil
}

// SigPath returns where the signature of the archive at path lives.
func SigPath(archive string) string { return archive + ".sig" }

// hashFile returns the SHA-256 and length of the file at path.
func hashFile(path string) ([sha256.Size]byte, int64, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return sum, 0, fmt.Errorf("reading %s: %w", path, err)
	}
	h.Sum(sum[:0])
	return sum, n, nil
}

// Sign signs the archive at archive with priv and writes the signature to
// SigPath(archive), replacing any earlier one. The build signed is the one
// in the archive's BUILD file, which Sign reads with the same checks
// Extract makes, so that the vendor cannot sign an archive the server would
// refuse to unpack.
func Sign(archive string, priv ed25519.PrivateKey) (Info, error) {
	b, err := readBuildFile(archive)
	if err != nil {
		return Info{}, err
	}
	sum, size, err := hashFile(archive)
	if err != nil {
		return Info{}, fmt.Errorf("hashing archive: %w", err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	s := &Signature{Key: pub, Build: b, Size: size, SHA256: sum}
	s.Sig = ed25519.Sign(priv, s.message())
	if err := writeFileAtomic(SigPath(archive), s.Marshal(), 0o644); err != nil {
		return Info{}, fmt.Errorf("writing signature: %w", err)
	}
	return Info{Build: b, Size: size, SHA256: sum, KeyID: KeyID(pub)}, nil
}

// Verify checks the signature file sigPath of the archive at archivePath
// against keys, any one of which may have signed it, and returns the
// release's build as signed. Each failure wraps its own error (ErrNoSignature,
// ErrSignatureFormat, ErrUnknownKey, ErrBadSignature, ErrDigestMismatch) and
// names the file. The caller should check that Extract finds the same build
// in the archive, and keep the archive where nobody else can write between
// Verify and Extract.
func Verify(archivePath, sigPath string, keys []ed25519.PublicKey) (Info, error) {
	if len(keys) == 0 {
		return Info{}, ErrNoTrustedKey
	}
	data, err := readLimited(sigPath, maxSigFile)
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("%s: %w", sigPath, ErrNoSignature)
	}
	if err != nil {
		return Info{}, fmt.Errorf("reading signature: %w", err)
	}
	s, err := ParseSignature(data)
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", sigPath, err)
	}
	var key ed25519.PublicKey
	for _, k := range keys {
		if k.Equal(s.Key) {
			key = k
			break
		}
	}
	if key == nil {
		return Info{}, fmt.Errorf("%s: %w: key %s (ID %s)", sigPath, ErrUnknownKey, FormatPublicKey(s.Key), KeyID(s.Key))
	}
	if !ed25519.Verify(key, s.message(), s.Sig) {
		return Info{}, fmt.Errorf("%s: %w with key ID %s", sigPath, ErrBadSignature, KeyID(key))
	}
	sum, size, err := hashFile(archivePath)
	if err != nil {
		return Info{}, fmt.Errorf("hashing archive: %w", err)
	}
	if size != s.Size || sum != s.SHA256 {
		return Info{}, fmt.Errorf("%s: %w %s: size %d, SHA-256 %x; signed: size %d, SHA-256 %x",
			archivePath, ErrDigestMismatch, sigPath, size, sum, s.Size, s.SHA256)
	}
	return Info{Build: s.Build, Size: size, SHA256: sum, KeyID: KeyID(key)}, nil
}

// VerifyExtract verifies the archive at archive with its signature at
// SigPath(archive) against keys, as Verify does, then unpacks it into dest
// with Extract, and checks that its BUILD file holds the signed build. It is
// the whole check the server makes of a release before it touches anything
// else. The archive must be in a folder only the server can write, since it
// is read once to verify it and again to unpack it.
func VerifyExtract(ctx context.Context, archive string, keys []ed25519.PublicKey, dest string) (Info, error) {
	info, err := Verify(archive, SigPath(archive), keys)
	if err != nil {
		return Info{}, err
	}
	x, err := Extract(ctx, archive, dest)
	if err != nil {
		return Info{}, err
	}
	if x.Build != info.Build {
		cleanDest(dest, false)
		return Info{}, fmt.Errorf("%s: %w: BUILD holds %s, the signature %s", archive, ErrBuildMismatch, x.Build, info.Build)
	}
	return info, nil
}

// readLimited reads at most limit+1 bytes of the file at path.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	// A longer file comes back with limit+1 bytes, which ParseSignature
	// reports as too large.
	return data, nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// folder, synced and renamed, so that a reader never sees half a file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // Fails harmlessly after the rename.
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // Best effort: not every OS can sync a folder.
		d.Close()
	}
	return nil
}

// validBuild reports whether s is a build by the one version rule.
func validBuild(s string) bool {
	_, err := version.Parse(s)
	return err == nil
}
