package appserver

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/index"
	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/erpupdate/smartsync/internal/releasemeta"
)

// ReleaseFile is where the publisher's signed metadata of the update
// folder dir lives: beside it, as "<folder>.release", outside the folder
// so that it is never served as a file of the release.
func ReleaseFile(dir string) string { return filepath.Clean(dir) + ".release" }

// signedReleases keeps, per OS, the signed metadata read for the current
// manifest. The server needs no publisher key: it checks that the
// statement describes the folder it serves (OS, build, digest) and passes
// the bytes on; the clients verify the signatures.
type signedReleases struct {
	mu   sync.Mutex
	byOS map[string]*signedRelease
}

// signedRelease is what was read of one folder's ".release" file, for
// one manifest and one version of the file.
type signedRelease struct {
	man     *index.Manifest
	size    int64
	mtime   time.Time
	missing bool
	meta    []byte // nil: no Release is sent
	st      *releasemeta.Statement
	problem string // why a file that is there is not sent
}

// releaseMeta returns the signed metadata to send with man, the current
// manifest of ix, or nil. The file is read again when the manifest or the
// file changed; a file that does not describe the folder is logged once.
func (s *Server) releaseMeta(ix *index.Index, man *index.Manifest) *signedRelease {
	path := ReleaseFile(ix.Dir)
	fi, err := os.Stat(path)
	missing := errors.Is(err, fs.ErrNotExist)
	s.signed.mu.Lock()
	defer s.signed.mu.Unlock()
	if s.signed.byOS == nil {
		s.signed.byOS = map[string]*signedRelease{}
	}
	old := s.signed.byOS[ix.OS]
	if old != nil && old.man == man && old.missing == missing && (missing || err == nil && old.size == fi.Size() && old.mtime.Equal(fi.ModTime())) {
		return old
	}
	r := &signedRelease{man: man, missing: missing}
	if err == nil {
		r.size, r.mtime = fi.Size(), fi.ModTime()
	}
	if !missing {
		r.meta, r.st, r.problem = readRelease(path, ix.OS, man)
		if r.problem != "" && (old == nil || old.problem != r.problem) {
			s.log.Warn("the update folder's signed release does not describe it; its clients get no signed release until the publisher signs the folder again",
				"os", ix.OS, "folder", ix.Dir, "file", path, "problem", r.problem)
		}
	}
	s.signed.byOS[ix.OS] = r
	return r
}

// readRelease reads and checks a signed release file against the manifest
// of its folder: the bytes and statement to send, or why not.
func readRelease(path, osName string, man *index.Manifest) ([]byte, *releasemeta.Statement, string) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err.Error()
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, releasemeta.MaxSize+1))
	if err != nil {
		return nil, nil, fmt.Sprintf("reading %s: %v", path, err)
	}
	return checkSigned(b, osName, man)
}

// SignedStatus says for --check whether the folder's release is signed.
func (s *Server) SignedStatus(osName string) string {
	ix := s.Indexes()[osName]
	if ix == nil {
		return ""
	}
	r := s.releaseMeta(ix, ix.Latest())
	switch {
	case r.missing:
		return "unsigned (no " + filepath.Base(ReleaseFile(ix.Dir)) + ")"
	case r.st == nil:
		return "signed release NOT SERVED: " + r.problem
	}
	exp := r.st.Expires.Format(time.RFC3339)
	if !time.Now().Before(r.st.Expires) {
		exp += " (EXPIRED: clients refuse it)"
	}
	return fmt.Sprintf("signed release %d, expires %s", r.st.Number, exp)
}

// SignOptions are what the publisher's sign-update says of a release.
type SignOptions struct {
	OS       string
	Key      ed25519.PrivateKey
	Number   uint64
	Expires  time.Duration
	Chain    []releasemeta.SignedKeyList // nil: a chain of the key alone (releasemeta.NewChain)
	Rollback bool
	Now      time.Time
}

// SignUpdate indexes the update folder of o.OS as the server does (with
// the configuration's build, preserve list and post-install step), signs
// the statement of its release with o.Key and writes it to the folder's
// ReleaseFile. It returns the file's path and the statement.
func SignUpdate(ctx context.Context, log *slog.Logger, cfg *Config, o SignOptions) (string, releasemeta.Statement, error) {
	dir, ok := cfg.Folders[o.OS]
	if !ok {
		return "", releasemeta.Statement{}, fmt.Errorf("%s has no update folder for %s ([UPDATE] %s)", cfg.File, o.OS, pathKeyFor(o.OS))
	}
	state, err := os.MkdirTemp("", "appserver-sign-")
	if err != nil {
		return "", releasemeta.Statement{}, err
	}
	defer os.RemoveAll(state)
	rel := index.Release{Build: cfg.Build.String(), Preserve: cfg.Preserve,
		PostInstall: cfg.PostInstall, PostInstallTimeout: cfg.PostInstallTimeout}
	ix, err := index.Open(ctx, log, o.OS, dir, state, rel)
	if err != nil {
		return "", releasemeta.Statement{}, fmt.Errorf("indexing %s: %w", dir, err)
	}
	defer ix.Close()
	man := ix.Latest()
	chain := o.Chain
	if chain == nil {
		chain = releasemeta.NewChain(o.Key)
	}
	st := releasemeta.Statement{OS: o.OS, Build: man.Build, Number: o.Number, Published: o.Now,
		Expires: o.Now.Add(o.Expires), Rollback: o.Rollback, Digest: man.ReleaseDigest()}
	b, err := releasemeta.Sign(st, chain, o.Key)
	if err != nil {
		return "", st, fmt.Errorf("signing the release of %s: %w", dir, err)
	}
	path := ReleaseFile(dir)
	if err := atomicfile.Write(path, b, 0o644); err != nil {
		return "", st, fmt.Errorf("writing %s: %w", path, err)
	}
	file, _ := releasemeta.Decode(b)
	return path, file.Statement, nil
}

// ReadChain reads the publisher's chain file (see RotateChain) and checks
// every signature in it.
func ReadChain(path string) ([]releasemeta.SignedKeyList, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the key chain: %w", err)
	}
	chain, err := releasemeta.DecodeChain(b)
	if err != nil {
		return nil, fmt.Errorf("reading the key chain %s: %w", path, err)
	}
	return chain, nil
}

// RotateChain appends to the chain file at path (started with the current
// key's list when it does not exist) the next key list, of keys, signed
// by current, which must be in the chain's last list. It returns the new
// chain; the file is replaced atomically.
func RotateChain(path string, current ed25519.PrivateKey, keys []ed25519.PublicKey) ([]releasemeta.SignedKeyList, error) {
	chain, err := ReadChain(path)
	if errors.Is(err, fs.ErrNotExist) {
		chain, err = releasemeta.NewChain(current), nil
	}
	if err != nil {
		return nil, err
	}
	list := make([]releasemeta.PublicKey, len(keys))
	for i, k := range keys {
		list[i] = releasemeta.PublicKey(k)
	}
	if chain, err = releasemeta.Rotate(chain, current, list); err != nil {
		return nil, fmt.Errorf("rotating the publisher keys: %w", err)
	}
	if err := atomicfile.Write(path, releasemeta.EncodeChain(chain), 0o644); err != nil {
		return nil, fmt.Errorf("writing the key chain: %w", err)
	}
	return chain, nil
}
