package release

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/erpupdate/smartsync/internal/version"
)

// The release feed: the vendor's signed list of server releases (see the
// package documentation, "The release feed").

// FeedFormat is the one version of the feed format.
const FeedFormat = 1

// Limits of a feed.
const (
	// MaxFeedSize bounds a feed file, fetched or read.
	MaxFeedSize = 1 << 20
	// MaxFeedReleases bounds the releases one feed lists.
	MaxFeedReleases = 256
	// MaxNotes bounds a release's notes, in bytes of UTF-8: a few
	// paragraphs; the full text belongs on the vendor's site.
	MaxNotes = 4096
	// maxFeedSigs bounds the signatures of one feed (one per key during a
	// key rotation).
	maxFeedSigs = 8
	// maxFeedURL bounds a release's URL in a feed.
	maxFeedURL = 2048
)

// feedPrefix starts the message a feed's signature is over, so that no
// signature made for an archive (sigMagic) or a client release can pass for
// a feed's, nor the other way round.
const feedPrefix = "smartsync-release-feed v1\x00"

// NotesFile is the file at the root of a release archive whose text
// "appserver release feed" puts in the feed as the release's notes.
const NotesFile = "NOTES"

// Errors of a feed, each wrapped with the feed's location. A feed signed
// with a key that is not trusted wraps ErrUnknownKey, one whose signature
// does not verify ErrBadSignature, as for an archive.
var (
	ErrFeedFormat   = errors.New("release: malformed release feed")
	ErrFeedExpired  = errors.New("release: the release feed has expired")
	ErrFeedRollback = errors.New("release: the release feed is older than one already seen")
	// ErrFeedMismatch is a fetched archive whose size or SHA-256 is not the
	// one its feed entry lists.
	ErrFeedMismatch = errors.New("release: archive does not match its release feed entry")
)

// Feed is the signed part of a release feed.
type Feed struct {
	Format int `json:"format"`
	// Number grows with every feed the vendor publishes; a server refuses
	// a feed numbered below the highest it has seen, so that an old feed
	// replayed cannot hide a newer release.
	Number uint64 `json:"number"`
	// Published and Expires are UTC, whole seconds; a server refuses the
	// feed from Expires on, so that a feed frozen by a machine in the
	// middle stops being believed.
	Published time.Time     `json:"published"`
	Expires   time.Time     `json:"expires"`
	Releases  []FeedRelease `json:"releases"`
}

// FeedRelease is one server release listed in a feed.
type FeedRelease struct {
	// Build is the release's build, as its archive's BUILD and signature
	// say.
	Build string `json:"build"`
	// Platform is the GOOS/GOARCH the release's server runs on, e.g.
	// "linux/amd64".
	Platform string `json:"platform"`
	// URL is where the archive is: an http(s):// or file:// URL, or a URL
	// relative to the feed's own location. Its signature is beside it
	// (URL + ".sig"), as for any release source.
	URL string `json:"url"`
	// Size and SHA256 (64 lower-case hex digits) are the archive's; the
	// server refuses a fetched archive that differs.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Notes are the release notes, at most MaxNotes bytes; their first
	// line is what administrators are shown.
	Notes string `json:"notes,omitempty"`
}

// FirstLine returns the first non-empty line of the notes, trimmed.
func (r FeedRelease) FirstLine() string {
	for _, l := range strings.Split(r.Notes, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

// Digest returns the archive's SHA-256 as bytes; the form was checked by
// DecodeFeed.
func (r FeedRelease) Digest() [sha256.Size]byte {
	var d [sha256.Size]byte
	hex.Decode(d[:], []byte(r.SHA256))
	return d
}

// FeedSignature is one signature of a feed: the signing public key in its
// text form (ed25519:BASE64) and the standard base64 of the signature.
type FeedSignature struct {
	Key string `json:"key"`
	Sig string `json:"sig"`
}

// FeedFile is a feed with its signatures, as the file holds it.
type FeedFile struct {
	Feed       Feed            `json:"feed"`
	Signatures []FeedSignature `json:"signatures"`
}

// canonicalJSON is the one encoding of v: compact JSON as Marshal makes
// it.
func canonicalJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("release: " + err.Error()) // the types always encode
	}
	return b
}

func feedMessage(f *Feed) []byte {
	return append([]byte(feedPrefix), canonicalJSON(f)...)
}

// Platform returns the platform of the running program, as a feed names
// it.
func Platform() string { return runtime.GOOS + "/" + runtime.GOARCH }

// SignFeed checks the form of f and signs it with every key in keys. It
// returns the feed file's bytes: one line of canonical JSON and "\n".
func SignFeed(f Feed, keys ...ed25519.PrivateKey) ([]byte, error) {
	if len(keys) == 0 || len(keys) > maxFeedSigs {
		return nil, fmt.Errorf("signing a feed: %d keys given, want 1 to %d", len(keys), maxFeedSigs)
	}
	if err := f.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFeedFormat, err)
	}
	ff := FeedFile{Feed: f}
	msg := feedMessage(&f)
	for _, k := range keys {
		pub := k.Public().(ed25519.PublicKey)
		ff.Signatures = append(ff.Signatures, FeedSignature{Key: FormatPublicKey(pub),
			Sig: base64.StdEncoding.EncodeToString(ed25519.Sign(k, msg))})
	}
	out := append(canonicalJSON(&ff), '\n')
	if len(out) > MaxFeedSize {
		return nil, fmt.Errorf("%w: the feed is %d bytes, limit %d: list fewer releases or shorter notes", ErrFeedFormat, len(out), MaxFeedSize)
	}
	return out, nil
}

// DecodeFeed parses a feed file strictly: one line of canonical JSON (the
// bytes SignFeed makes) with no unknown field, every field checked. It
// does not check the signatures (see VerifyFeed). Errors wrap
// ErrFeedFormat.
func DecodeFeed(data []byte) (*FeedFile, error) {
	if len(data) > MaxFeedSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrFeedFormat, MaxFeedSize)
	}
	body, ok := bytes.CutSuffix(data, []byte("\n"))
	if !ok {
		return nil, fmt.Errorf("%w: no final newline", ErrFeedFormat)
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	var ff FeedFile
	if err := d.Decode(&ff); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFeedFormat, err)
	}
	if d.More() {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrFeedFormat)
	}
	if err := ff.Feed.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFeedFormat, err)
	}
	if n := len(ff.Signatures); n == 0 || n > maxFeedSigs {
		return nil, fmt.Errorf("%w: %d signatures, want 1 to %d", ErrFeedFormat, n, maxFeedSigs)
	}
	for i, s := range ff.Signatures {
		if _, err := ParsePublicKey(s.Key); err != nil || strings.TrimSpace(s.Key) != s.Key {
			return nil, fmt.Errorf("%w: signature %d: key %.80q is not ed25519:BASE64", ErrFeedFormat, i+1, s.Key)
		}
		sig, err := base64.StdEncoding.Strict().DecodeString(s.Sig)
		if err != nil || len(sig) != ed25519.SignatureSize {
			return nil, fmt.Errorf("%w: signature %d: not the base64 of %d bytes", ErrFeedFormat, i+1, ed25519.SignatureSize)
		}
	}
	if !bytes.Equal(canonicalJSON(&ff), body) {
		return nil, fmt.Errorf("%w: not in canonical form (one line of compact JSON as \"appserver release feed\" writes it, times in UTC whole seconds)", ErrFeedFormat)
	}
	return &ff, nil
}

// check validates the form of a feed's fields.
func (f *Feed) check() error {
	switch {
	case f.Format != FeedFormat:
		return fmt.Errorf("format %d, want %d", f.Format, FeedFormat)
	case f.Number == 0:
		return errors.New("feed number 0; numbers start at 1")
	case !wholeUTC(f.Published) || !wholeUTC(f.Expires):
		return errors.New("times must be UTC whole seconds")
	case !f.Expires.After(f.Published):
		return fmt.Errorf("expires %s, not after published %s", f.Expires.Format(time.RFC3339), f.Published.Format(time.RFC3339))
	case len(f.Releases) > MaxFeedReleases:
		return fmt.Errorf("%d releases, limit %d", len(f.Releases), MaxFeedReleases)
	}
	if f.Releases == nil {
		// Canonical form: an empty list is written [], never null.
		return errors.New("no releases list")
	}
	for i, r := range f.Releases {
		if err := r.check(); err != nil {
			return fmt.Errorf("release %d: %w", i+1, err)
		}
	}
	return nil
}

func wholeUTC(t time.Time) bool {
	return t.Location() == time.UTC && t.Nanosecond() == 0 && t.Year() >= 2000 && t.Year() < 10000
}

func (r FeedRelease) check() error {
	if _, err := version.Parse(r.Build); err != nil || strings.TrimSpace(r.Build) != r.Build || len(r.Build) > 64 {
		return fmt.Errorf("build %.70q is not a build", r.Build)
	}
	if err := checkPlatform(r.Platform); err != nil {
		return err
	}
	if err := checkFeedURL(r.URL); err != nil {
		return fmt.Errorf("build %s: url %.100q: %w", r.Build, r.URL, err)
	}
	switch {
	case r.Size <= 0:
		return fmt.Errorf("build %s: size %d is not positive", r.Build, r.Size)
	case len(r.SHA256) != 2*sha256.Size || strings.ToLower(r.SHA256) != r.SHA256:
		return fmt.Errorf("build %s: sha256 is not %d lower-case hex digits", r.Build, 2*sha256.Size)
	case len(r.Notes) > MaxNotes:
		return fmt.Errorf("build %s: notes of %d bytes, limit %d", r.Build, len(r.Notes), MaxNotes)
	case !utf8.ValidString(r.Notes):
		return fmt.Errorf("build %s: notes are not UTF-8", r.Build)
	}
	if _, err := hex.DecodeString(r.SHA256); err != nil {
		return fmt.Errorf("build %s: sha256: %w", r.Build, err)
	}
	return nil
}

// platforms are the GOOS and GOARCH values a feed may name.
var (
	feedOSes   = []string{"linux", "windows", "darwin", "freebsd"}
	feedArches = []string{"amd64", "arm64", "386", "arm", "riscv64", "ppc64le", "s390x"}
)

func checkPlatform(p string) error {
	goos, goarch, ok := strings.Cut(p, "/")
	if !ok || !slices.Contains(feedOSes, goos) || !slices.Contains(feedArches, goarch) {
		return fmt.Errorf("platform %.40q is not GOOS/GOARCH (as linux/amd64)", p)
	}
	return nil
}

// checkFeedURL checks a release's URL in a feed: absolute (http, https,
// file) or relative to the feed, without credentials, naming a release
// archive.
func checkFeedURL(s string) error {
	if s == "" || len(s) > maxFeedURL {
		return fmt.Errorf("empty or longer than %d bytes", maxFeedURL)
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a valid URL")
	}
	switch strings.ToLower(u.Scheme) {
	case "", "http", "https", "file":
	default:
		return fmt.Errorf("scheme %q is not http, https or file", u.Scheme)
	}
	if u.User != nil {
		return errors.New("holds a user name or password")
	}
	if u.Fragment != "" || u.Opaque != "" {
		return errors.New("holds a fragment or is opaque")
	}
	if _, err := releaseName(path.Base(u.Path)); err != nil {
		return err
	}
	return nil
}

// CheckFeedSource checks a feed's location as AppServer.ini's [SELFUPDATE]
// Feed gives it: an absolute path, or a file://, http:// or https:// URL
// without credentials.
func CheckFeedSource(source string) error {
	_, err := feedLocation(source)
	return err
}

// feedLocation tells where the feed at source is.
func feedLocation(source string) (location, error) {
	const give = "give an absolute path, or a file://, http:// or https:// URL"
	if filepath.IsAbs(source) {
		return location{path: source, text: source}, nil
	}
	u, err := url.Parse(source)
	if err != nil || u.Scheme == "" {
		if strings.Contains(source, "://") {
			return location{}, fmt.Errorf("%w: %s is not a valid URL", ErrSource, redactUserinfo(source))
		}
		return location{}, fmt.Errorf("%w: %q is a relative path; %s", ErrSource, source, give)
	}
	if u.User != nil {
		return location{}, fmt.Errorf("%w: %s: a URL with a user name or password is refused, as it would be logged", ErrSource, u.Redacted())
	}
	switch strings.ToLower(u.Scheme) {
	case "file":
		if h := u.Host; h != "" && !strings.EqualFold(h, "localhost") {
			return location{}, fmt.Errorf("%w: %s names the host %q; only this server's own files can be read", ErrSource, source, h)
		}
		p := u.Path
		if runtime.GOOS == "windows" && len(p) >= 3 && p[0] == '/' && p[2] == ':' {
			p = p[1:]
		}
		p = filepath.FromSlash(p)
		if u.Opaque != "" || !filepath.IsAbs(p) {
			return location{}, fmt.Errorf("%w: %s: write a file URL as file:///absolute/path", ErrSource, source)
		}
		return location{path: p, text: source}, nil
	case "http", "https":
		if u.Host == "" {
			return location{}, fmt.Errorf("%w: %s has no host", ErrSource, source)
		}
		return location{url: u, text: source}, nil
	}
	return location{}, fmt.Errorf("%w: %s: the scheme %q is not supported; %s", ErrSource, source, u.Scheme, give)
}

// FetchFeed reads the feed at source (see CheckFeedSource) into memory,
// at most MaxFeedSize bytes, following the redirects Fetch follows. It
// checks nothing but the size: pass the bytes to VerifyFeed.
func FetchFeed(ctx context.Context, source string, opt FetchOptions) ([]byte, error) {
	loc, err := feedLocation(source)
	if err != nil {
		return nil, fmt.Errorf("fetching the release feed: %w", err)
	}
	f := &fetcher{ctx: ctx, client: redirectPolicy(opt.HTTPClient)}
	r, size, err := f.open(loc, false)
	if err != nil {
		return nil, fmt.Errorf("fetching the release feed %s: %w", loc.text, err)
	}
	defer r.Close()
	if size > MaxFeedSize {
		return nil, fmt.Errorf("fetching the release feed %s: %w: %d bytes, limit %d", loc.text, ErrFeedFormat, size, MaxFeedSize)
	}
	data, err := io.ReadAll(io.LimitReader(ctxReader{ctx, r}, MaxFeedSize+1))
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("fetching the release feed %s: reading: %w", loc.text, err)
	}
	if len(data) > MaxFeedSize {
		return nil, fmt.Errorf("fetching the release feed %s: %w: more than %d bytes", loc.text, ErrFeedFormat, MaxFeedSize)
	}
	return data, nil
}

// VerifyFeed checks the feed file data, read from source (which errors
// name), as a server does before it believes a word of it: its form, a
// signature by one of keys, its expiry at now, and its number against
// highest, the highest number this server has seen (0 for none). A feed
// of the same number as highest is accepted: it is the same feed read
// again. Each failure wraps its own error: ErrFeedFormat, ErrUnknownKey,
// ErrBadSignature, ErrFeedExpired, ErrFeedRollback.
func VerifyFeed(data []byte, source string, keys []ed25519.PublicKey, now time.Time, highest uint64) (*Feed, error) {
	fail := func(err error) (*Feed, error) {
		return nil, fmt.Errorf("release feed %s: %w", source, err)
	}
	if len(keys) == 0 {
		return fail(ErrNoTrustedKey)
	}
	ff, err := DecodeFeed(data)
	if err != nil {
		return fail(err)
	}
	if err := verifyFeedSig(ff, keys); err != nil {
		return fail(err)
	}
	f := &ff.Feed
	if !now.Before(f.Expires) {
		return fail(fmt.Errorf("%w: feed %d expired on %s; the vendor must publish a new one", ErrFeedExpired, f.Number, f.Expires.Format(time.RFC3339)))
	}
	if f.Number < highest {
		return fail(fmt.Errorf("%w: feed %d is older than feed %d this server has seen (replayed or stale)", ErrFeedRollback, f.Number, highest))
	}
	return f, nil
}

// verifyFeedSig checks that one of ff's signatures is a good one by a
// key of keys.
func verifyFeedSig(ff *FeedFile, keys []ed25519.PublicKey) error {
	msg := feedMessage(&ff.Feed)
	var tried, ids []string
	for _, s := range ff.Signatures {
		k, _ := ParsePublicKey(s.Key)
		ids = append(ids, KeyID(k))
		if !slices.ContainsFunc(keys, func(t ed25519.PublicKey) bool { return t.Equal(k) }) {
			continue
		}
		sig, _ := base64.StdEncoding.DecodeString(s.Sig)
		if ed25519.Verify(k, msg, sig) {
			return nil
		}
		tried = append(tried, KeyID(k))
	}
	if len(tried) == 0 {
		return fmt.Errorf("%w: feed %d is signed by key ID %s; [SELFUPDATE] PublicKey trusts none of them", ErrUnknownKey, ff.Feed.Number, strings.Join(ids, ", "))
	}
	return fmt.Errorf("%w: feed %d, by key ID %s", ErrBadSignature, ff.Feed.Number, strings.Join(tried, ", "))
}

// Newest returns the newest release in f for platform that is newer than
// running, and false when there is none. Builds of another scheme than
// running's cannot be ordered against it and are passed over.
func (f *Feed) Newest(platform, running string) (FeedRelease, bool) {
	cur, err := version.Parse(running)
	if err != nil {
		return FeedRelease{}, false
	}
	var best FeedRelease
	var bestB version.Build
	found := false
	for _, r := range f.Releases {
		if r.Platform != platform {
			continue
		}
		b, err := version.Parse(r.Build)
		if err != nil || !b.SameScheme(cur) || b.Compare(cur) <= 0 {
			continue
		}
		if !found || b.Compare(bestB) > 0 {
			best, bestB, found = r, b, true
		}
	}
	return best, found
}

// ResolveURL returns where the release r of the feed read from source is:
// its URL, or, when that is relative, the URL or path it names relative to
// the feed's own location.
func ResolveURL(source string, r FeedRelease) (string, error) {
	u, err := url.Parse(r.URL)
	if err != nil {
		return "", fmt.Errorf("release %s: url %q: %w", r.Build, r.URL, err)
	}
	if u.Scheme != "" {
		return r.URL, nil
	}
	loc, err := feedLocation(source)
	if err != nil {
		return "", err
	}
	if loc.url != nil {
		return loc.url.ResolveReference(u).String(), nil
	}
	if u.RawQuery != "" || strings.HasPrefix(u.Path, "/") {
		return "", fmt.Errorf("release %s: url %q: a feed read from a file may name its releases by a relative path only", r.Build, r.URL)
	}
	return filepath.Join(filepath.Dir(loc.path), filepath.FromSlash(u.Path)), nil
}

// MakeFeedRelease describes the signed release archive at archive for a
// feed: it verifies the archive's signature (ARCHIVE.sig, made by "release
// sign") against keys, takes its build, size and SHA-256 from the
// verification, reads its notes from the NotesFile at the archive's root
// (none when missing), and names it by baseURL plus its file name, or by
// its file name alone (relative to the feed) when baseURL is empty.
// platform is GOOS/GOARCH; empty means the one the archive's file name
// holds (appserver-7.00.240601A-linux-amd64.tar.gz).
func MakeFeedRelease(ctx context.Context, archive string, keys []ed25519.PublicKey, baseURL, platform string) (FeedRelease, error) {
	info, err := Verify(archive, SigPath(archive), keys)
	if err != nil {
		return FeedRelease{}, err
	}
	name := filepath.Base(archive)
	if platform == "" {
		if platform = platformOf(name); platform == "" {
			return FeedRelease{}, fmt.Errorf("%s: the file name names no platform (as appserver-%s-linux-amd64.tar.gz); give --platform GOOS/GOARCH", archive, info.Build)
		}
	}
	if err := checkPlatform(platform); err != nil {
		return FeedRelease{}, fmt.Errorf("%s: %w", archive, err)
	}
	notes, err := readNotes(ctx, archive)
	if err != nil {
		return FeedRelease{}, err
	}
	u := url.PathEscape(name)
	if baseURL != "" {
		u = strings.TrimSuffix(baseURL, "/") + "/" + u
	}
	r := FeedRelease{Build: info.Build, Platform: platform, URL: u, Size: info.Size,
		SHA256: hex.EncodeToString(info.SHA256[:]), Notes: notes}
	if err := r.check(); err != nil {
		return FeedRelease{}, fmt.Errorf("%s: %w", archive, err)
	}
	return r, nil
}

// platformOf finds GOOS and GOARCH among the parts of an archive's file
// name, split at '-', '_' and '.'.
func platformOf(name string) string {
	parts := strings.FieldsFunc(strings.ToLower(name), func(r rune) bool { return r == '-' || r == '_' || r == '.' })
	var goos, goarch string
	for _, p := range parts {
		switch {
		case p == "macos":
			p = "darwin"
		case p == "x86" || p == "i386":
			p = "386"
		case p == "x86_64":
			p = "amd64"
		}
		if goos == "" && slices.Contains(feedOSes, p) {
			goos = p
		}
		if goarch == "" && slices.Contains(feedArches, p) {
			goarch = p
		}
	}
	if goos == "" || goarch == "" {
		return ""
	}
	return goos + "/" + goarch
}

// readNotes returns the NotesFile at archive's root, "" when there is
// none. It reads that one member as it walks the archive, unpacking
// nothing: the archive may be large, and hold links the vendor's machine
// cannot make (a Linux release described on Windows); the server checks
// the whole archive as it installs it.
func readNotes(ctx context.Context, archive string) (string, error) {
	var data []byte
	found := false
	err := walkArchive(ctx, archive, func(e *entry) error {
		name, err := cleanName(e.name)
		if err != nil || name != NotesFile {
			return nil // the installing server refuses a bad name
		}
		switch {
		case found:
			return fmt.Errorf("%s appears twice", NotesFile)
		case e.typ != typeFile:
			return fmt.Errorf("%s is not a regular file", NotesFile)
		}
		found = true
		r, err := e.open()
		if err != nil {
			return err
		}
		data, err = io.ReadAll(io.LimitReader(r, MaxNotes+1))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("reading the notes of %s: %w", archive, err)
	}
	if !found {
		return "", nil
	}
	switch {
	case len(data) > MaxNotes:
		return "", fmt.Errorf("%s: its %s is larger than %d bytes; keep the notes short and link to the full text", archive, NotesFile, MaxNotes)
	case !utf8.Valid(data):
		return "", fmt.Errorf("%s: its %s is not UTF-8 text", archive, NotesFile)
	}
	return strings.TrimSpace(strings.ReplaceAll(string(data), "\r\n", "\n")), nil
}
