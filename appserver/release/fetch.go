package release

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/internal/atomicfile"
)

// DefaultMaxArchive bounds the size of a fetched release archive when
// FetchOptions.MaxArchive is zero. A server installation is a few hundred
// megabytes compressed; Limits bounds what an archive unpacks to, not the
// archive itself, so the bound on the download is its own.
const DefaultMaxArchive int64 = 2 << 30

// maxFetchedSig bounds a fetched signature file. Verify refuses anything
// beyond maxSigFile with a precise message; this bound only stops a wrong
// URL from filling the disk.
const maxFetchedSig = 64 << 10

// maxRedirects is how many HTTP redirects Fetch follows for one file.
const maxRedirects = 5

// Errors from Fetch, wrapped with the step and the source.
var (
	// ErrSource is a release source Fetch cannot use: empty, relative,
	// an unsupported scheme, a URL with credentials, or a name that is not
	// a release archive's.
	ErrSource = errors.New("release: unusable release source")
	// ErrRedirect is an HTTP redirect Fetch refuses to follow: too many,
	// or from https to plain http.
	ErrRedirect = errors.New("release: redirect refused")
)

// missingSigError is a release without its signature: ErrNoSignature,
// worded for the administrator who gave the source.
type missingSigError struct{ expected string }

func (e *missingSigError) Error() string {
	return "no signature beside the release (expected " + e.expected + ")"
}

func (e *missingSigError) Is(target error) bool { return target == ErrNoSignature }

// releaseExts are the names a release archive may end in, matched without
// regard to case.
var releaseExts = []string{".tar.gz", ".tgz", ".zip"}

// FetchOptions tune Fetch; the zero value is ready to use.
type FetchOptions struct {
	// MaxArchive bounds the archive's size in bytes; zero or less means
	// DefaultMaxArchive.
	MaxArchive int64
	// HTTPClient fetches http:// and https:// sources; nil means a client
	// with connect, TLS handshake and response header timeouts and the
	// environment's proxy settings. Whatever the client, Fetch follows at
	// most 5 redirects and never one from https to http, before asking the
	// client's own CheckRedirect.
	HTTPClient *http.Client
}

// location is one file to fetch: a local path or an http(s) URL.
type location struct {
	path string   // a local file, when url is nil
	url  *url.URL // an http:// or https:// URL
	text string   // how errors name it
}

// Fetch copies the release archive at source, and its detached signature
// beside it, into the folder dir, which it makes if missing, and returns the
// paths of the two copies. It does not check them: the caller passes them
// to Verify or VerifyExtract, and dir should be a folder only the server can
// write.
//
// Source is what the administrator gave: an absolute path on the server, a
// file:// URL (of this machine), or an http:// or https:// URL. A relative
// path is refused, since the server's working folder is not the
// administrator's. The signature is source + ".sig"; for a URL, its path
// plus ".sig", without the query or fragment (which may hold a download
// token for the archive alone). The copies are named after the last element
// of source's path, which must end in .tar.gz, .tgz or .zip, and not after
// where a redirect led.
//
// Each file is written to a temporary file in dir, synced, and renamed over
// any earlier file of its name, so that a fetch that fails or is killed
// never leaves a partial file under the final name. The signature is
// fetched first, so that a missing one is reported before a long download,
// and renamed last; a fetch killed between the two renames leaves a new
// archive with an old signature, which Verify refuses. Temporary files of
// a fetch that fails or whose ctx is cancelled are removed; those of a
// killed process are not, as dir belongs to the caller.
//
// Every error names the step and the source; a missing signature wraps
// ErrNoSignature, an archive larger than opt.MaxArchive ErrTooLarge, an
// unusable source ErrSource and a refused redirect ErrRedirect.
func Fetch(ctx context.Context, source, dir string, opt FetchOptions) (archive, sig string, err error) {
	arc, sigLoc, name, err := parseSource(source)
	if err != nil {
		return "", "", err
	}
	if dir == "" {
		return "", "", fmt.Errorf("fetching %s: no destination folder given", arc.text)
	}
	limit := opt.MaxArchive
	if limit <= 0 {
		limit = DefaultMaxArchive
	}
	f := &fetcher{ctx: ctx, dir: dir, client: redirectPolicy(opt.HTTPClient)}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("fetching %s: making the destination folder: %w", arc.text, err)
	}

	sigTmp, err := f.fetch(sigLoc, name+".sig", maxFetchedSig, true)
	if err != nil {
		if errors.Is(err, ErrNoSignature) {
			return "", "", fmt.Errorf("fetching %s: %w", arc.text, &missingSigError{sigLoc.text})
		}
		return "", "", fmt.Errorf("fetching signature %s: %w", sigLoc.text, err)
	}
	defer os.Remove(sigTmp) // Fails harmlessly after the rename.
	arcTmp, err := f.fetch(arc, name, limit, false)
	if err != nil {
		return "", "", fmt.Errorf("fetching %s: %w", arc.text, err)
	}
	defer os.Remove(arcTmp)

	archive, sig = filepath.Join(dir, name), filepath.Join(dir, name+".sig")
	if err := os.Rename(arcTmp, archive); err != nil {
		return "", "", fmt.Errorf("fetching %s: %w", arc.text, err)
	}
	if err := os.Rename(sigTmp, sig); err != nil {
		return "", "", fmt.Errorf("fetching signature %s: %w", sigLoc.text, err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return "", "", fmt.Errorf("fetching %s: %w", arc.text, err)
	}
	return archive, sig, nil
}

// parseSource tells what kind of source the administrator gave and returns
// where the archive and its signature are and the name to store them under.
func parseSource(source string) (arc, sig location, name string, err error) {
	bad := func(format string, args ...any) (location, location, string, error) {
		return location{}, location{}, "", fmt.Errorf("fetching %s: %w: %s", source, ErrSource, fmt.Sprintf(format, args...))
	}
	const give = "give an absolute path on the server, or a file://, http:// or https:// URL"
	if strings.TrimSpace(source) == "" {
		return location{}, location{}, "", fmt.Errorf("%w: the release source is empty; %s", ErrSource, give)
	}
	if filepath.IsAbs(source) {
		// Checked before parsing as a URL: C:\x parses as scheme "c".
		return localSource(source, source)
	}
	u, perr := url.Parse(source)
	if perr != nil || u.Scheme == "" {
		if strings.Contains(source, "://") {
			source = redactUserinfo(source)
			var ue *url.Error
			if errors.As(perr, &ue) {
				perr = ue.Err // Its text repeats the URL, password included.
			}
			return bad("not a valid URL: %v", perr)
		}
		return bad("a relative path, but the server's working folder is not yours; %s", give)
	}
	if u.User != nil {
		// Credentials in a URL end up in logs, mails and process lists.
		source = u.Redacted()
		return bad("a URL with a user name or password is refused, as it would be logged; use a URL without them")
	}
	switch strings.ToLower(u.Scheme) {
	case "file":
		if u.Opaque != "" {
			return bad("write a file URL as file:///absolute/path")
		}
		if h := u.Host; h != "" && !strings.EqualFold(h, "localhost") {
			return bad("the file URL names the host %q; only this server's own files can be read (file:///path)", h)
		}
		p := u.Path
		if runtime.GOOS == "windows" && len(p) >= 3 && p[0] == '/' && p[2] == ':' {
			p = p[1:] // file:///C:/x is C:/x.
		}
		p = filepath.FromSlash(p)
		if !filepath.IsAbs(p) {
			return bad("the file URL's path %q is not absolute", u.Path)
		}
		return localSource(source, p)
	case "http", "https":
		if u.Host == "" {
			return bad("the URL has no host")
		}
		name, err := releaseName(path.Base(u.Path))
		if err != nil {
			return bad("%v", err)
		}
		u.Fragment, u.RawFragment = "", ""
		s := *u
		s.Path += ".sig"
		if s.RawPath != "" {
			s.RawPath += ".sig"
		}
		s.RawQuery, s.ForceQuery = "", false
		return location{url: u, text: source}, location{url: &s, text: s.String()}, name, nil
	}
	return bad("the scheme %q is not supported; %s", u.Scheme, give)
}

// localSource is parseSource for the local file p, given as source.
func localSource(source, p string) (arc, sig location, name string, err error) {
	name, err = releaseName(filepath.Base(p))
	if err != nil {
		return location{}, location{}, "", fmt.Errorf("fetching %s: %w: %v", source, ErrSource, err)
	}
	sigText := SigPath(p)
	if source != p {
		sigText = source + ".sig"
	}
	return location{path: p, text: source}, location{path: SigPath(p), text: sigText}, name, nil
}

// releaseName checks that base can name a release archive in the
// destination folder, on every system the server runs on.
func releaseName(base string) (string, error) {
	lower := strings.ToLower(base)
	ok := false
	for _, ext := range releaseExts {
		if len(lower) > len(ext) && strings.HasSuffix(lower, ext) {
			ok = true
		}
	}
	switch {
	case base == "" || base == "." || base == "/":
		return "", errors.New("names no file; give the release archive's own path or URL")
	case !ok:
		return "", fmt.Errorf("the name %q does not end in .tar.gz, .tgz or .zip; give the release archive itself", base)
	case strings.ContainsAny(base, "/\\:\x00"):
		return "", fmt.Errorf("the name %q holds a slash, backslash, colon or NUL; rename the release archive", base)
	case strings.HasPrefix(base, "."):
		return "", fmt.Errorf("the name %q starts with a dot; rename the release archive", base)
	}
	if why := windowsProblem(base); why != "" {
		return "", fmt.Errorf("%s; rename the release archive", why)
	}
	return base, nil
}

// redactUserinfo hides what may be a password in a source that did not
// parse as a URL.
func redactUserinfo(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	rest := s[i+3:]
	host := rest
	if j := strings.IndexAny(rest, "/?#"); j >= 0 {
		host = rest[:j]
	}
	if k := strings.LastIndex(host, "@"); k >= 0 {
		return s[:i+3] + "xxxxx@" + rest[k+1:]
	}
	return s
}

// redirectPolicy returns a client that follows redirects as Fetch allows:
// c (or a client with sane timeouts, if nil) with its CheckRedirect run
// after Fetch's own rules.
func redirectPolicy(c *http.Client) *http.Client {
	if c == nil {
		c = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			ExpectContinueTimeout: time.Second,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		}}
	}
	cc := *c
	next := c.CheckRedirect
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > maxRedirects {
			return fmt.Errorf("%w: more than %d redirects; the next would go to %s", ErrRedirect, maxRedirects, req.URL.Redacted())
		}
		prev := via[len(via)-1].URL
		if prev.Scheme == "https" && req.URL.Scheme != "https" {
			return fmt.Errorf("%w: from %s to %s, which would drop TLS", ErrRedirect, prev.Redacted(), req.URL.Redacted())
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
	return &cc
}

// fetcher holds what the two fetches of one Fetch share.
type fetcher struct {
	ctx    context.Context
	dir    string
	client *http.Client
}

// fetch copies loc into a new temporary file in f.dir, named after name,
// and returns the temporary file's path once its content is synced. A file
// that does not exist wraps ErrNoSignature when isSig is set. On error the
// temporary file is gone.
func (f *fetcher) fetch(loc location, name string, limit int64, isSig bool) (tmp string, err error) {
	r, size, err := f.open(loc, isSig)
	if err != nil {
		return "", err
	}
	defer r.Close()
	// tooLarge says so for a file of size bytes, or -1 if it is only
	// known to be larger than limit.
	tooLarge := func(size int64) error {
		what := fmt.Sprintf("more than %d bytes", limit)
		if size >= 0 {
			what = fmt.Sprintf("%d bytes, more than %d", size, limit)
		}
		if isSig {
			return fmt.Errorf("%w: %s; a signature file is a few hundred", ErrSignatureFormat, what)
		}
		return fmt.Errorf("%w: %s (FetchOptions.MaxArchive)", ErrTooLarge, what)
	}
	if size > limit {
		return "", tooLarge(size)
	}
	t, err := os.CreateTemp(f.dir, "."+name+".tmp-*")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			t.Close()
			os.Remove(t.Name())
		}
	}()
	// Read one byte past the limit to tell a file at the limit from a
	// larger one whose size was not known ahead.
	n, err := io.Copy(t, io.LimitReader(ctxReader{f.ctx, r}, limit+1))
	if ctxErr := f.ctx.Err(); err != nil && ctxErr != nil {
		// The transport's error for a cancelled read varies; the
		// cancellation is what the caller needs to see.
		err = ctxErr
	}
	if err != nil {
		return "", fmt.Errorf("reading: %w", err)
	}
	if n > limit {
		return "", tooLarge(-1)
	}
	if err := t.Chmod(0o644); err != nil {
		return "", err
	}
	if err := t.Sync(); err != nil {
		return "", fmt.Errorf("syncing %s: %w", t.Name(), err)
	}
	if err := t.Close(); err != nil {
		return "", err
	}
	return t.Name(), nil
}

// open opens loc for reading and returns its size, or -1 if unknown.
func (f *fetcher) open(loc location, isSig bool) (io.ReadCloser, int64, error) {
	if loc.url == nil {
		r, err := os.Open(loc.path)
		if err != nil {
			if isSig && errors.Is(err, fs.ErrNotExist) {
				return nil, 0, ErrNoSignature
			}
			return nil, 0, err
		}
		st, err := r.Stat()
		if err != nil {
			r.Close()
			return nil, 0, err
		}
		if !st.Mode().IsRegular() {
			r.Close()
			what := "not a regular file"
			if st.IsDir() {
				what = "a folder"
			}
			return nil, 0, fmt.Errorf("%s is %s, not a release archive", loc.path, what)
		}
		return r, st.Size(), nil
	}
	req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, loc.url.String(), nil)
	if err != nil {
		return nil, 0, err
	}
	// Take the bytes as stored: servers set up to label .gz files
	// "Content-Encoding: gzip" (Apache's AddEncoding) would otherwise have
	// the transport unpack the archive into a tar, whose digest is not
	// the signed one.
	req.Header.Set("Accept-Encoding", "identity")
	req.Header.Set("User-Agent", "smartsync-appserver")
	resp, err := f.client.Do(req)
	if err != nil {
		if ctxErr := f.ctx.Err(); ctxErr != nil {
			return nil, 0, ctxErr
		}
		// The url.Error repeats the URL the caller names anyway; keep it
		// only when it is another one, where a redirect led.
		if ue, ok := err.(*url.Error); ok && (ue.URL == loc.url.String() || errors.Is(err, ErrRedirect)) {
			err = ue.Err
		}
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		if isSig && (resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone) {
			return nil, 0, ErrNoSignature
		}
		status := resp.Status
		if status == "" {
			status = fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
		}
		return nil, 0, fmt.Errorf("server answered %s", status)
	}
	return resp.Body, resp.ContentLength, nil
}
