package release

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/erpupdate/smartsync/internal/testtree"
)

func newKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vendor.key")
	pub, err := GenerateKey(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ReadPrivateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv, path
}

func TestKeygenFile(t *testing.T) {
	pub, priv, path := newKey(t)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// Windows keeps no Unix modes (its ACLs decide who reads the key).
	if runtime.GOOS != "windows" && st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	if !priv.Public().(ed25519.PublicKey).Equal(pub) {
		t.Error("private key read back does not match the public key")
	}
	if _, err := GenerateKey(path, nil); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second keygen to the same file: %v, want fs.ErrExist", err)
	}
	back, err := ParsePublicKey(" " + FormatPublicKey(pub) + " ")
	if err != nil || !back.Equal(pub) {
		t.Errorf("ParsePublicKey(FormatPublicKey) = %v, %v", back, err)
	}
}

func TestParsePublicKeyErrors(t *testing.T) {
	for _, s := range []string{"", "ed25519:", "rsa:AAAA", "ed25519:!!!!", "ed25519:AAAA", FormatPublicKey(make([]byte, 31))} {
		if _, err := ParsePublicKey(s); !errors.Is(err, ErrKeyFormat) {
			t.Errorf("ParsePublicKey(%q) = %v, want ErrKeyFormat", s, err)
		}
	}
	a, b := FormatPublicKey(make([]byte, 32)), FormatPublicKey(bytes.Repeat([]byte{1}, 32))
	keys, err := ParsePublicKeys(a + ", " + b)
	if err != nil || len(keys) != 2 {
		t.Errorf("ParsePublicKeys(two) = %d keys, %v", len(keys), err)
	}
	if _, err := ParsePublicKeys(" , "); !errors.Is(err, ErrKeyFormat) {
		t.Errorf("ParsePublicKeys(empty) = %v, want ErrKeyFormat", err)
	}
	for _, s := range []string{"", "ed25519:AAAA", "ed25519-private:AAAA", "ed25519-private:" + strings.Repeat("A", 44)} {
		if _, err := ParsePrivateKey([]byte(s)); !errors.Is(err, ErrKeyFormat) {
			t.Errorf("ParsePrivateKey(%q) = %v, want ErrKeyFormat", s, err)
		}
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	testtree.NeedSymlinks(t)
	for _, kind := range []string{"tar.gz", "zip"} {
		t.Run(kind, func(t *testing.T) {
			pub, priv, _ := newKey(t)
			archive := goodArchive(t, kind)
			signed, err := Sign(archive, priv)
			if err != nil {
				t.Fatal(err)
			}
			if signed.Build != "7.00.240601A" || signed.KeyID != KeyID(pub) {
				t.Errorf("Sign = %+v", signed)
			}
			info, err := Verify(archive, SigPath(archive), []ed25519.PublicKey{pub})
			if err != nil {
				t.Fatal(err)
			}
			if info != signed {
				t.Errorf("Verify = %+v, Sign = %+v", info, signed)
			}
			x, err := Extract(context.Background(), archive, filepath.Join(t.TempDir(), "new"))
			if err != nil || x.Build != info.Build {
				t.Errorf("Extract = %+v, %v; want build %s", x, err, info.Build)
			}
		})
	}
}

func TestVerifyKeys(t *testing.T) {
	testtree.NeedSymlinks(t)
	oldPub, _, _ := newKey(t)
	newPub, newPriv, _ := newKey(t)
	otherPub, _, _ := newKey(t)
	archive := goodArchive(t, "tar.gz")
	if _, err := Sign(archive, newPriv); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		keys []ed25519.PublicKey
		want error
	}{
		{"rotation: second of two keys", []ed25519.PublicKey{oldPub, newPub}, nil},
		{"wrong key", []ed25519.PublicKey{otherPub}, ErrUnknownKey},
		{"no key", nil, ErrNoTrustedKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Verify(archive, SigPath(archive), tt.keys)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if err != nil && tt.want != ErrNoTrustedKey && !strings.Contains(err.Error(), SigPath(archive)) {
				t.Errorf("error %q does not name the signature file", err)
			}
		})
	}
}

func TestVerifyTampered(t *testing.T) {
	testtree.NeedSymlinks(t)
	pub, priv, _ := newKey(t)
	_, otherPriv, _ := newKey(t)
	keys := []ed25519.PublicKey{pub}
	orig := goodArchive(t, "tar.gz")
	if _, err := Sign(orig, priv); err != nil {
		t.Fatal(err)
	}
	archiveData, _ := os.ReadFile(orig)
	sigData, _ := os.ReadFile(SigPath(orig))
	sig, err := ParseSignature(sigData)
	if err != nil {
		t.Fatal(err)
	}
	// resign returns the signature file after change, signed again by
	// other, so that only the change under test is wrong.
	resign := func(change func(*Signature), by ed25519.PrivateKey) []byte {
		s := *sig
		change(&s)
		if by != nil {
			s.Sig = ed25519.Sign(by, s.message())
		}
		return s.Marshal()
	}
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 1
		return b
	}
	tests := []struct {
		name    string
		archive []byte
		sig     []byte // nil: no signature file
		want    error
		names   string // "archive" or "sig": the file the error must name
	}{
		{"good", archiveData, sigData, nil, ""},
		{"archive byte changed", flip(archiveData, len(archiveData)/2), sigData, ErrDigestMismatch, "archive"},
		{"archive truncated", archiveData[:len(archiveData)-1], sigData, ErrDigestMismatch, "archive"},
		{"archive extended", append(bytes.Clone(archiveData), 0), sigData, ErrDigestMismatch, "archive"},
		{"signature missing", archiveData, nil, ErrNoSignature, "sig"},
		{"signature empty", archiveData, []byte{}, ErrSignatureFormat, "sig"},
		{"signature truncated", archiveData, sigData[:len(sigData)-10], ErrSignatureFormat, "sig"},
		{"signature without final newline", archiveData, sigData[:len(sigData)-1], ErrSignatureFormat, "sig"},
		{"signature bytes changed", archiveData, resign(func(s *Signature) { s.Sig = flip(s.Sig, 3) }, nil), ErrBadSignature, "sig"},
		{"build changed", archiveData, resign(func(s *Signature) { s.Build = "7.00.991231Z" }, nil), ErrBadSignature, "sig"},
		{"digest changed", archiveData, resign(func(s *Signature) { s.SHA256[0] ^= 1 }, nil), ErrBadSignature, "sig"},
		{"size changed", archiveData, resign(func(s *Signature) { s.Size++ }, nil), ErrBadSignature, "sig"},
		{"signed by an untrusted key", archiveData, resign(func(s *Signature) { s.Key = otherPriv.Public().(ed25519.PublicKey) }, otherPriv), ErrUnknownKey, "sig"},
		{"trusted key named, other key signed", archiveData, resign(func(*Signature) {}, otherPriv), ErrBadSignature, "sig"},
		{"CR LF line ends", archiveData, bytes.ReplaceAll(sigData, []byte("\n"), []byte("\r\n")), ErrSignatureFormat, "sig"},
		{"extra line", archiveData, append(bytes.Clone(sigData), "comment x\n"...), ErrSignatureFormat, "sig"},
		{"too large", archiveData, bytes.Repeat([]byte("x"), maxSigFile+10), ErrSignatureFormat, "sig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			archive := writeFile(t, filepath.Join(dir, "r.tar.gz"), tt.archive)
			if tt.sig != nil {
				writeFile(t, SigPath(archive), tt.sig)
			}
			info, err := Verify(archive, SigPath(archive), keys)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %+v, %v; want %v", info, err, tt.want)
			}
			if err == nil {
				return
			}
			name := archive
			if tt.names == "sig" {
				name = SigPath(archive)
			}
			if !strings.Contains(err.Error(), name) {
				t.Errorf("error %q does not name %s", err, name)
			}
		})
	}
}

func TestSignRefusesBadArchive(t *testing.T) {
	_, priv, _ := newKey(t)
	archive := writeFile(t, filepath.Join(t.TempDir(), "r.tar.gz"),
		tarGz(t, []member{{name: "../evil", body: "x", mode: 0o644}, {name: "BUILD", body: "7.00.240601A"}}))
	if _, err := Sign(archive, priv); !errors.Is(err, ErrUnsafeEntry) {
		t.Errorf("Sign(hostile archive) = %v, want ErrUnsafeEntry", err)
	}
	if _, err := os.Stat(SigPath(archive)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a signature was written for a hostile archive: %v", err)
	}
}

// FuzzParseSignature checks that no input makes ParseSignature panic, and
// that whatever it accepts marshals back to the same bytes: there is one
// way to write each signature.
func FuzzParseSignature(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.sig")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(sigMagic + "\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSignature(data)
		if err != nil {
			if !errors.Is(err, ErrSignatureFormat) {
				t.Fatalf("error %v does not wrap ErrSignatureFormat", err)
			}
			return
		}
		if out := s.Marshal(); !bytes.Equal(out, data) {
			t.Fatalf("accepted %q but marshals to %q", data, out)
		}
	})
}

func TestVerifyExtract(t *testing.T) {
	testtree.NeedSymlinks(t)
	pub, priv, _ := newKey(t)
	archive := goodArchive(t, "zip")
	if _, err := Sign(archive, priv); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "new")
	info, err := VerifyExtract(context.Background(), archive, []ed25519.PublicKey{pub}, dest)
	if err != nil || info.Build != "7.00.240601A" {
		t.Fatalf("VerifyExtract = %+v, %v", info, err)
	}

	// A signature made by hand for another build than the archive's: only
	// a vendor tool other than Sign could make it, but the server must
	// still not install a build other than the one it announced.
	data, _ := os.ReadFile(SigPath(archive))
	s, err := ParseSignature(data)
	if err != nil {
		t.Fatal(err)
	}
	s.Build = "7.00.240701"
	s.Sig = ed25519.Sign(priv, s.message())
	writeFile(t, SigPath(archive), s.Marshal())
	dest = filepath.Join(t.TempDir(), "new")
	if _, err := VerifyExtract(context.Background(), archive, []ed25519.PublicKey{pub}, dest); !errors.Is(err, ErrBuildMismatch) {
		t.Fatalf("VerifyExtract(build mismatch) = %v, want ErrBuildMismatch", err)
	}
	if ents, _ := os.ReadDir(dest); len(ents) != 0 {
		t.Errorf("after a build mismatch dest holds %d entries", len(ents))
	}
}
