package releasemeta

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Format is the version of the statement and of the signed file.
const Format = 1

// Limits of the signed file; syncproto.MaxReleaseMeta is the same size.
const (
	MaxSize  = 64 << 10
	MaxChain = 32 // key lists in a chain
	MaxKeys  = 16 // keys in one list
	MaxSigs  = 8  // signatures on a statement or a list
	maxBuild = 64
)

// Sentinel errors of Decode, Verify and the checks.
var (
	ErrFormat       = errors.New("releasemeta: malformed signed release")
	ErrUnknownKey   = errors.New("releasemeta: signed by a key that is not trusted")
	ErrBadSignature = errors.New("releasemeta: bad signature")
	ErrExpired      = errors.New("releasemeta: the signed release has expired")
	ErrWrongOS      = errors.New("releasemeta: the signed release is for another OS")
	ErrRollback     = errors.New("releasemeta: the signed release is older than one already seen")
	ErrDigest       = errors.New("releasemeta: the release does not match its signed statement")
	ErrChain        = errors.New("releasemeta: broken key chain")
)

const (
	statementPrefix = "smartsync-release-metadata v1\x00statement\x00"
	keyListPrefix   = "smartsync-release-metadata v1\x00keylist\x00"
)

// Digest is the digest of a release (see the package documentation),
// hex in JSON.
type Digest [32]byte

func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// MarshalText encodes d as 64 lower-case hex digits.
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText decodes 64 hex digits.
func (d *Digest) UnmarshalText(b []byte) error {
	if len(b) != 64 {
		return fmt.Errorf("digest of %d hex digits, want 64", len(b))
	}
	_, err := hex.Decode(d[:], b)
	return err
}

// PublicKey is a publisher's ed25519 public key, "ed25519:BASE64" in JSON.
type PublicKey []byte

// ParsePublicKey parses "ed25519:" and the standard base64 of 32 bytes.
func ParsePublicKey(s string) (PublicKey, error) {
	var k PublicKey
	if err := k.UnmarshalText([]byte(s)); err != nil {
		return nil, err
	}
	return k, nil
}

func (k PublicKey) String() string {
	return "ed25519:" + base64.StdEncoding.EncodeToString(k)
}

// ID is the key's ID: the first 8 bytes of the SHA-256 of its bytes, in
// hex (appserver/release's KeyID).
func (k PublicKey) ID() string {
	sum := sha256.Sum256(k)
	return hex.EncodeToString(sum[:8])
}

// MarshalText encodes k as "ed25519:BASE64".
func (k PublicKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText decodes "ed25519:BASE64".
func (k *PublicKey) UnmarshalText(b []byte) error {
	s, ok := strings.CutPrefix(string(b), "ed25519:")
	if !ok {
		return fmt.Errorf("%w: key %.20q does not start with \"ed25519:\"", ErrFormat, b)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: key %.60q is not the base64 of %d bytes", ErrFormat, b, ed25519.PublicKeySize)
	}
	*k = raw
	return nil
}

// Statement is what the publisher signs of one OS release.
type Statement struct {
	Format    int       `json:"format"`
	OS        string    `json:"os"`
	Build     string    `json:"build"`
	Number    uint64    `json:"number"`
	Published time.Time `json:"published"`
	Expires   time.Time `json:"expires"`
	// Rollback: the publisher allows this release over a higher number.
	Rollback bool   `json:"rollback"`
	Digest   Digest `json:"digest"`
}

// Signature is one key's signature.
type Signature struct {
	Key string `json:"key"` // the key's ID
	Sig []byte `json:"sig"`
}

// KeyList is a version of the publisher's keys.
type KeyList struct {
	Version uint64      `json:"version"`
	Keys    []PublicKey `json:"keys"`
}

// Has reports whether the list holds the key with that ID.
func (l KeyList) Has(id string) bool { return l.key(id) != nil }

func (l KeyList) key(id string) PublicKey {
	for _, k := range l.Keys {
		if k.ID() == id {
			return k
		}
	}
	return nil
}

// IDs returns the IDs of the list's keys, comma-separated.
func (l KeyList) IDs() string {
	ids := make([]string, len(l.Keys))
	for i, k := range l.Keys {
		ids[i] = k.ID()
	}
	return strings.Join(ids, ",")
}

// SignedKeyList is a key list of the chain with its signatures by keys of
// the list before it.
type SignedKeyList struct {
	List       KeyList     `json:"list"`
	Signatures []Signature `json:"signatures"`
}

// File is the signed file.
type File struct {
	Format     int             `json:"format"`
	Chain      []SignedKeyList `json:"chain,omitempty"`
	Statement  Statement       `json:"statement"`
	Signatures []Signature     `json:"signatures"`
}

// canonical is the one encoding of v: compact JSON as Marshal makes it.
func canonical(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("releasemeta: " + err.Error()) // the types always encode
	}
	return b
}

// Encode returns the signed file's bytes.
func (f *File) Encode() []byte { return append(canonical(f), '\n') }

func statementMessage(s Statement) []byte {
	return append([]byte(statementPrefix), canonical(s)...)
}

func keyListMessage(l KeyList) []byte {
	return append([]byte(keyListPrefix), canonical(l)...)
}

// Decode parses a signed file strictly: see the package documentation. It
// checks the form of every field, not the signatures (see Verify).
func Decode(b []byte) (*File, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFormat, len(b), MaxSize)
	}
	body, ok := bytes.CutSuffix(b, []byte("\n"))
	if !ok {
		return nil, fmt.Errorf("%w: no final newline", ErrFormat)
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	var f File
	if err := d.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if d.More() {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrFormat)
	}
	if err := f.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if !bytes.Equal(canonical(&f), body) {
		return nil, fmt.Errorf("%w: not in canonical form (compact JSON, fields in order, times in UTC whole seconds)", ErrFormat)
	}
	return &f, nil
}

// check validates the form of the fields.
func (f *File) check() error {
	if f.Format != Format {
		return fmt.Errorf("file format %d, want %d", f.Format, Format)
	}
	if err := f.Statement.check(); err != nil {
		return fmt.Errorf("statement: %w", err)
	}
	if err := checkSigs(f.Signatures); err != nil {
		return fmt.Errorf("statement: %w", err)
	}
	if len(f.Chain) > MaxChain {
		return fmt.Errorf("chain of %d key lists, limit %d", len(f.Chain), MaxChain)
	}
	for i, l := range f.Chain {
		if err := l.List.check(); err != nil {
			return fmt.Errorf("key list %d: %w", i, err)
		}
		if err := checkSigs(l.Signatures); err != nil {
			return fmt.Errorf("key list %d: %w", i, err)
		}
		if i > 0 && l.List.Version != f.Chain[i-1].List.Version+1 {
			return fmt.Errorf("key list %d has version %d after version %d", i, l.List.Version, f.Chain[i-1].List.Version)
		}
	}
	return nil
}

func (s Statement) check() error {
	switch {
	case s.Format != Format:
		return fmt.Errorf("format %d, want %d", s.Format, Format)
	case s.OS != "windows" && s.OS != "linux" && s.OS != "darwin":
		return fmt.Errorf("OS %.20q is not windows, linux or darwin", s.OS)
	case s.Build == "" || len(s.Build) > maxBuild || strings.ContainsFunc(s.Build, func(r rune) bool { return r <= ' ' || r > '~' }):
		return fmt.Errorf("build %.70q is not a build", s.Build)
	case s.Number == 0:
		return errors.New("release number 0")
	case !wholeUTC(s.Published) || !wholeUTC(s.Expires):
		return errors.New("times must be UTC whole seconds")
	case !s.Expires.After(s.Published):
		return fmt.Errorf("expires %s, not after published %s", s.Expires.Format(time.RFC3339), s.Published.Format(time.RFC3339))
	}
	return nil
}

func wholeUTC(t time.Time) bool {
	return t.Location() == time.UTC && t.Nanosecond() == 0 && t.Year() >= 2000 && t.Year() < 10000
}

func (l KeyList) check() error {
	switch {
	case l.Version < 1:
		return errors.New("version 0")
	case len(l.Keys) == 0:
		return errors.New("no keys")
	case len(l.Keys) > MaxKeys:
		return fmt.Errorf("%d keys, limit %d", len(l.Keys), MaxKeys)
	}
	for i, k := range l.Keys {
		if slices.ContainsFunc(l.Keys[:i], func(o PublicKey) bool { return o.ID() == k.ID() }) {
			return fmt.Errorf("key %s listed twice", k.ID())
		}
	}
	return nil
}

func checkSigs(sigs []Signature) error {
	switch {
	case len(sigs) == 0:
		return errors.New("no signatures")
	case len(sigs) > MaxSigs:
		return fmt.Errorf("%d signatures, limit %d", len(sigs), MaxSigs)
	}
	for _, s := range sigs {
		if len(s.Key) != 16 || strings.Trim(s.Key, "0123456789abcdef") != "" {
			return fmt.Errorf("key ID %.20q is not 16 lower-case hex digits", s.Key)
		}
		if len(s.Sig) != ed25519.SignatureSize {
			return fmt.Errorf("signature of %d bytes by key %s, want %d", len(s.Sig), s.Key, ed25519.SignatureSize)
		}
	}
	return nil
}

// verifySigs checks that one of sigs is a valid signature of msg by a key
// of l (a threshold of one).
func verifySigs(l KeyList, sigs []Signature, msg []byte, what string) (PublicKey, error) {
	var known []string
	for _, s := range sigs {
		k := l.key(s.Key)
		if k == nil {
			continue
		}
		known = append(known, s.Key)
		if ed25519.Verify(ed25519.PublicKey(k), msg, s.Sig) {
			return k, nil
		}
	}
	if len(known) == 0 {
		ids := make([]string, len(sigs))
		for i, s := range sigs {
			ids[i] = s.Key
		}
		return nil, fmt.Errorf("%w: %s signed by key %s; trusted keys (list version %d): %s",
			ErrUnknownKey, what, strings.Join(ids, ","), l.Version, l.IDs())
	}
	return nil, fmt.Errorf("%w: %s: the signature by key %s does not verify", ErrBadSignature, what, strings.Join(known, ","))
}

// Verified is what Verify found.
type Verified struct {
	Statement Statement
	Key       PublicKey // the key that signed the statement
	Keys      KeyList   // the trusted list after the chain
}

// Verify checks a signed file against the trusted key list: its form, the
// chain from the trusted version upward, the statement's signature by a
// key of the last list, its OS and its expiry at now. It does not check
// the release number (see CheckNumber) or the release itself (see
// CheckRelease).
func Verify(signed []byte, trusted KeyList, now time.Time, wantOS string) (*Verified, error) {
	f, err := Decode(signed)
	if err != nil {
		return nil, err
	}
	if len(trusted.Keys) == 0 {
		return nil, fmt.Errorf("%w: no publisher key is trusted", ErrUnknownKey)
	}
	cur := trusted
	for _, l := range f.Chain {
		if l.List.Version <= cur.Version {
			continue
		}
		if l.List.Version != cur.Version+1 {
			return nil, fmt.Errorf("%w: key list version %d follows the trusted version %d", ErrChain, l.List.Version, cur.Version)
		}
		if _, err := verifySigs(cur, l.Signatures, keyListMessage(l.List), fmt.Sprintf("key list version %d", l.List.Version)); err != nil {
			return nil, err
		}
		cur = l.List
	}
	st := f.Statement
	key, err := verifySigs(cur, f.Signatures, statementMessage(st), fmt.Sprintf("release %d (%s, build %s)", st.Number, st.OS, st.Build))
	if err != nil {
		return nil, err
	}
	if st.OS != wantOS {
		return nil, fmt.Errorf("%w: release %d is signed for %s, this client is %s", ErrWrongOS, st.Number, st.OS, wantOS)
	}
	if !now.Before(st.Expires) {
		return nil, fmt.Errorf("%w: release %d (build %s) expired on %s; the publisher must sign it again",
			ErrExpired, st.Number, st.Build, st.Expires.Format(time.RFC3339))
	}
	return &Verified{Statement: st, Key: key, Keys: cur}, nil
}

// FirstUse returns the key list a client with none trusts on first use
// of signed: the first list of its chain, which must be version 1 and
// signed by one of its own keys. Verify is then run against it, and walks
// the rest of the chain.
func FirstUse(signed []byte) (KeyList, error) {
	f, err := Decode(signed)
	if err != nil {
		return KeyList{}, err
	}
	if len(f.Chain) == 0 || f.Chain[0].List.Version != 1 {
		return KeyList{}, fmt.Errorf("%w: the signed release carries no key list of version 1 to trust on first use", ErrUnknownKey)
	}
	first := f.Chain[0]
	if _, err := verifySigs(first.List, first.Signatures, keyListMessage(first.List), "key list version 1"); err != nil {
		return KeyList{}, err
	}
	return first.List, nil
}

// Deployed returns the key list a client trusts that was deployed with
// keys (smartclient.ini's PublisherKey) and has verified nothing yet: keys,
// at the version of the last list of signed's chain that names one of
// them (version 1 when none does). A workstation deployed with the
// current key after a rotation so skips the lists before it, which its
// key did not sign, and walks the ones after it from its key as Verify
// does; a list forged with a retired key cannot add a key to the ones
// deployed, since only those are trusted.
func Deployed(signed []byte, keys []PublicKey) (KeyList, error) {
	f, err := Decode(signed)
	if err != nil {
		return KeyList{}, err
	}
	ring := KeyList{Version: 1, Keys: keys}
	for _, l := range f.Chain {
		for _, k := range keys {
			if l.List.Has(k.ID()) && l.List.Version > ring.Version {
				ring.Version = l.List.Version
			}
		}
	}
	return ring, nil
}

// CheckNumber refuses a release numbered below highest, unless the
// publisher signed it as a rollback after latest: a rollback signed to
// undo release 12 must not, replayed once 13 and 14 are out, take a
// workstation back for as long as its signature holds. A client passes
// the highest number and the latest Published of the releases it
// installed or confirmed, not of those it only verified (see the
// package documentation).
func CheckNumber(st Statement, highest uint64, latest time.Time) error {
	if st.Number >= highest {
		return nil
	}
	if !st.Rollback {
		return fmt.Errorf("%w: release %d (build %s) is older than release %d already seen, and the publisher did not sign it as a rollback",
			ErrRollback, st.Number, st.Build, highest)
	}
	if !st.Published.After(latest) {
		return fmt.Errorf("%w: release %d (build %s) is a rollback signed on %s, before a release seen since (published %s): it undid an older release, not the ones after it",
			ErrRollback, st.Number, st.Build, st.Published.UTC().Format(time.RFC3339), latest.UTC().Format(time.RFC3339))
	}
	return nil
}

// CheckRelease checks a release as received against its statement: its
// build and digest.
func CheckRelease(st Statement, build string, d Digest) error {
	if build != st.Build {
		return fmt.Errorf("%w: the server's release is build %s, the signed one build %s", ErrDigest, build, st.Build)
	}
	if d != st.Digest {
		return fmt.Errorf("%w: the server's entries have digest %s, release %d signs %s", ErrDigest, d, st.Number, st.Digest)
	}
	return nil
}
