package release

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/testtree"
)

// releaseServer serves files by path, as a release host would, with a few
// special paths for the cases Fetch must handle:
//
//	/redirect/N/REST   redirects N times, then to /REST
//	/chunked/r.tar.gz  3000 bytes without a Content-Length
//	/q/r.tar.gz        only with the query token=abc
//	/sig500/*.sig      answers 500
//	/to/URL/REST       redirects to the server at URL (set later), path /REST
//
// A signature requested with a query is a client bug and answered 400. A
// .tar.gz or .tgz goes out as stored but labelled "Content-Encoding: gzip",
// as Apache's AddEncoding does, so that a client that lets its transport
// unpack it stores the wrong bytes.
type releaseServer struct {
	files map[string][]byte
	other string // base URL for /to/
}

func (s *releaseServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/redirect/"):
		n, rest, _ := strings.Cut(strings.TrimPrefix(p, "/redirect/"), "/")
		hops, err := strconv.Atoi(n)
		if err != nil {
			http.Error(w, "bad hop count", http.StatusBadRequest)
			return
		}
		target := "/" + rest
		if hops > 1 {
			target = fmt.Sprintf("/redirect/%d/%s", hops-1, rest)
		}
		http.Redirect(w, r, target, http.StatusFound)
		return
	case strings.HasPrefix(p, "/to/"):
		http.Redirect(w, r, s.other+"/"+strings.TrimPrefix(p, "/to/"), http.StatusFound)
		return
	case p == "/chunked/r.tar.gz":
		for range 10 {
			w.Write(bytes.Repeat([]byte("c"), 300))
			w.(http.Flusher).Flush()
		}
		return
	case p == "/q/r.tar.gz" && r.URL.Query().Get("token") != "abc":
		http.Error(w, "no token", http.StatusForbidden)
		return
	case strings.HasPrefix(p, "/sig500/") && strings.HasSuffix(p, ".sig"):
		http.Error(w, "broken", http.StatusInternalServerError)
		return
	}
	if strings.HasSuffix(p, ".sig") && r.URL.RawQuery != "" {
		http.Error(w, "a signature is fetched without a query", http.StatusBadRequest)
		return
	}
	data, ok := s.files[strings.TrimPrefix(p, "/q")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if strings.HasSuffix(p, ".tar.gz") || strings.HasSuffix(p, ".tgz") {
		w.Header().Set("Content-Encoding", "gzip")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Write(data)
}

// dirState returns the names and contents of the files in dir; a missing
// dir is empty.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			data = []byte("<" + err.Error() + ">")
		}
		m[e.Name()] = string(data)
	}
	return m
}

func TestFetch(t *testing.T) {
	archiveData := []byte("pretend this is a gzipped tar")
	sigData := []byte("pretend this is a signature\n")
	big := bytes.Repeat([]byte("b"), 3000)
	files := map[string][]byte{
		"/files/r.tar.gz":         archiveData,
		"/files/r.tar.gz.sig":     sigData,
		"/files/r.zip":            archiveData,
		"/files/r.zip.sig":        sigData,
		"/nosig/r.tar.gz":         archiveData,
		"/noarchive/r.tar.gz.sig": sigData,
		"/big/r.tar.gz":           big,
		"/big/r.tar.gz.sig":       sigData,
		"/chunked/r.tar.gz.sig":   sigData,
		"/sig500/r.tar.gz":        archiveData,
		"/bigsig/r.tar.gz":        archiveData,
		"/bigsig/r.tar.gz.sig":    bytes.Repeat([]byte("s"), maxFetchedSig+1),
	}
	plainHandler := &releaseServer{files: files}
	plain := httptest.NewServer(plainHandler)
	t.Cleanup(plain.Close)
	tlsHandler := &releaseServer{files: files, other: plain.URL}
	tlsSrv := httptest.NewUnstartedServer(tlsHandler)
	// The case without the server's certificate makes it log a failed
	// handshake, which is expected.
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	plainHandler.other = tlsSrv.URL

	src := t.TempDir()
	writeFile(t, filepath.Join(src, "r.tar.gz"), archiveData)
	writeFile(t, filepath.Join(src, "r.tar.gz.sig"), sigData)
	writeFile(t, filepath.Join(src, "R.TGZ"), archiveData)
	writeFile(t, filepath.Join(src, "R.TGZ.sig"), sigData)
	writeFile(t, filepath.Join(src, "nosig.tar.gz"), archiveData)
	writeFile(t, filepath.Join(src, "noarchive.tar.gz.sig"), sigData)
	writeFile(t, filepath.Join(src, "big.tar.gz"), big)
	writeFile(t, filepath.Join(src, "big.tar.gz.sig"), sigData)
	writeFile(t, filepath.Join(src, "bad.rar"), archiveData)
	writeFile(t, filepath.Join(src, "bad.rar.sig"), sigData)
	if err := os.Mkdir(filepath.Join(src, "folder.zip"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(src, "folder.zip.sig"), sigData)

	old := map[string]string{"r.tar.gz": "older archive", "r.tar.gz.sig": "older signature\n", "other": "kept"}

	tests := []struct {
		name   string
		source string // {src}, {srcurl}, {http} and {https} are replaced
		max    int64
		tls    bool              // pass the TLS server's client
		before map[string]string // files already in the destination
		want   error             // nil, a sentinel, or errAny
		text   []string          // the error must hold each
		stored string            // on success, the name stored under
	}{
		{name: "local path", source: "{src}/r.tar.gz", stored: "r.tar.gz"},
		{name: "local path, upper-case .TGZ", source: "{src}/R.TGZ", stored: "R.TGZ"},
		{name: "file URL", source: "file://{srcurl}/r.tar.gz", stored: "r.tar.gz"},
		{name: "file URL with localhost", source: "file://localhost{srcurl}/r.tar.gz", stored: "r.tar.gz"},
		{name: "http", source: "{http}/files/r.tar.gz", stored: "r.tar.gz"},
		{name: "http zip", source: "{http}/files/r.zip", stored: "r.zip"},
		{name: "https", source: "{https}/files/r.tar.gz", tls: true, stored: "r.tar.gz"},
		{name: "query kept for the archive, dropped for the signature", source: "{http}/q/files/r.tar.gz?token=abc#frag", stored: "r.tar.gz"},
		{name: "5 redirects", source: "{http}/redirect/5/files/r.tar.gz", stored: "r.tar.gz"},
		{name: "https to https redirects", source: "{https}/redirect/2/files/r.tar.gz", tls: true, stored: "r.tar.gz"},
		{name: "http to https redirect", source: "{http}/to/files/r.tar.gz", tls: true, stored: "r.tar.gz"},
		{name: "replaces older files", source: "{http}/files/r.tar.gz", before: old, stored: "r.tar.gz"},

		{name: "404", source: "{http}/noarchive/r.tar.gz", want: errAny,
			text: []string{"fetching {http}/noarchive/r.tar.gz: server answered 404 Not Found"}},
		{name: "404 keeps older files", source: "{http}/noarchive/r.tar.gz", before: old, want: errAny,
			text: []string{"server answered 404 Not Found"}},
		{name: "signature 500", source: "{http}/sig500/r.tar.gz", want: errAny,
			text: []string{"fetching signature {http}/sig500/r.tar.gz.sig: server answered 500 Internal Server Error"}},
		{name: "missing signature over http", source: "{http}/nosig/r.tar.gz", want: ErrNoSignature,
			text: []string{"fetching {http}/nosig/r.tar.gz: no signature beside the release (expected {http}/nosig/r.tar.gz.sig)"}},
		{name: "missing local signature", source: "{src}/nosig.tar.gz", want: ErrNoSignature,
			text: []string{"fetching {src}/nosig.tar.gz: no signature beside the release (expected {src}/nosig.tar.gz.sig)"}},
		{name: "missing local archive", source: "{src}/noarchive.tar.gz", want: fs.ErrNotExist,
			text: []string{"fetching {src}/noarchive.tar.gz: open {src}/noarchive.tar.gz"}},
		{name: "local folder", source: "{src}/folder.zip", want: errAny,
			text: []string{"fetching {src}/folder.zip: {src}/folder.zip is a folder"}},
		{name: "too big, Content-Length", source: "{http}/big/r.tar.gz", max: 1000, want: ErrTooLarge,
			text: []string{"fetching {http}/big/r.tar.gz: ", "3000 bytes, more than 1000"}},
		{name: "too big, chunked", source: "{http}/chunked/r.tar.gz", max: 1000, want: ErrTooLarge,
			text: []string{"fetching {http}/chunked/r.tar.gz: ", "more than 1000 bytes"}},
		{name: "too big, local", source: "{src}/big.tar.gz", max: 1000, want: ErrTooLarge,
			text: []string{"fetching {src}/big.tar.gz: ", "3000 bytes, more than 1000"}},
		{name: "exactly the limit", source: "{http}/big/r.tar.gz", max: 3000, stored: "r.tar.gz"},
		{name: "signature too big", source: "{http}/bigsig/r.tar.gz", want: ErrSignatureFormat,
			text: []string{"fetching signature {http}/bigsig/r.tar.gz.sig: "}},
		{name: "6 redirects", source: "{http}/redirect/6/files/r.tar.gz", want: ErrRedirect,
			text: []string{"fetching signature {http}/redirect/6/files/r.tar.gz.sig: ", "more than 5 redirects; the next would go to {http}/files/r.tar.gz.sig"}},
		{name: "https to http redirect", source: "{https}/to/files/r.tar.gz", tls: true, want: ErrRedirect,
			text: []string{"fetching signature {https}/to/files/r.tar.gz.sig: ", "to {http}/files/r.tar.gz.sig, which would drop TLS"}},
		{name: "https without the server's certificate", source: "{https}/files/r.tar.gz", want: errAny,
			text: []string{"fetching signature {https}/files/r.tar.gz.sig: ", "certificate"}},

		{name: "empty", source: "", want: ErrSource, text: []string{"the release source is empty"}},
		{name: "relative path", source: "releases/r.tar.gz", want: ErrSource,
			text: []string{"fetching releases/r.tar.gz: ", "a relative path", "working folder"}},
		{name: "bad extension", source: "{src}/bad.rar", want: ErrSource,
			text: []string{"fetching {src}/bad.rar: ", `"bad.rar" does not end in .tar.gz, .tgz or .zip`}},
		{name: "URL without a file name", source: "{http}/download?id=3", want: ErrSource,
			text: []string{`"download" does not end in .tar.gz`}},
		{name: "URL ending in a slash", source: "{http}/", want: ErrSource, text: []string{"names no file"}},
		{name: "backslash in URL name", source: "{http}/..%5Cevil.tar.gz", want: ErrSource, text: []string{"backslash"}},
		{name: "Windows device name", source: "{http}/nul.tar.gz", want: ErrSource, text: []string{"Windows device name"}},
		{name: "hidden name", source: "{http}/.r.tar.gz", want: ErrSource, text: []string{"starts with a dot"}},
		{name: "ftp", source: "ftp://example.com/r.tar.gz", want: ErrSource,
			text: []string{"fetching ftp://example.com/r.tar.gz: ", `the scheme "ftp" is not supported`}},
		{name: "user and password", source: "https://admin:secret@example.com/r.tar.gz", want: ErrSource,
			text: []string{"fetching https://admin:xxxxx@example.com/r.tar.gz: ", "user name or password"}},
		{name: "user without password", source: "https://admin@example.com/r.tar.gz", want: ErrSource,
			text: []string{"fetching https://admin@example.com/r.tar.gz: ", "user name or password"}},
		{name: "unparsable URL with a password", source: "https://admin:secret@example.com:port/r.tar.gz", want: ErrSource,
			text: []string{"https://xxxxx@example.com:port/r.tar.gz", "not a valid URL"}},
		{name: "file URL of another host", source: "file://fileserver/srv/r.tar.gz", want: ErrSource,
			text: []string{`names the host "fileserver"`}},
		{name: "opaque file URL", source: "file:r.tar.gz", want: ErrSource, text: []string{"file:///absolute/path"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := strings.NewReplacer("{srcurl}", fileURLPath(src), "{src}", src, "{http}", plain.URL, "{https}", tlsSrv.URL)
			dest := filepath.Join(t.TempDir(), "fetched") // Fetch makes it.
			if tt.before != nil {
				os.MkdirAll(dest, 0o755)
				for name, data := range tt.before {
					writeFile(t, filepath.Join(dest, name), []byte(data))
				}
			}
			opt := FetchOptions{MaxArchive: tt.max}
			if tt.tls {
				opt.HTTPClient = tlsSrv.Client()
			}
			archive, sig, err := Fetch(context.Background(), r.Replace(tt.source), dest, opt)
			got := dirState(t, dest)

			if tt.want != nil {
				if err == nil {
					t.Fatalf("Fetch = %s, %s, nil; want an error", archive, sig)
				}
				t.Log(err)
				if tt.want != errAny && !errors.Is(err, tt.want) {
					t.Errorf("Fetch error %q does not wrap %v", err, tt.want)
				}
				for _, s := range tt.text {
					if s = r.Replace(s); !strings.Contains(err.Error(), s) {
						t.Errorf("Fetch error %q does not hold %q", err, s)
					}
				}
				if strings.Contains(err.Error(), "secret") {
					t.Errorf("Fetch error %q shows the password", err)
				}
				want := tt.before
				if want == nil {
					want = map[string]string{}
				}
				if !maps.Equal(got, want) {
					t.Errorf("after a failed fetch the destination holds %q, want %q", got, want)
				}
				return
			}

			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if want := filepath.Join(dest, tt.stored); archive != want || sig != want+".sig" {
				t.Errorf("Fetch = %s, %s; want %s, %s.sig", archive, sig, want, want)
			}
			wantArchive := string(archiveData)
			if strings.Contains(tt.source, "/big/") {
				wantArchive = string(big)
			}
			want := map[string]string{tt.stored: wantArchive, tt.stored + ".sig": string(sigData)}
			for name, data := range tt.before {
				if _, ok := want[name]; !ok {
					want[name] = data
				}
			}
			if !maps.Equal(got, want) {
				t.Errorf("destination holds %q, want %q", got, want)
			}
		})
	}
}

// fileURLPath returns the path part of a file:// URL for the absolute path
// p: /tmp/x stays, C:\x becomes /C:/x.
func fileURLPath(p string) string {
	p = filepath.ToSlash(p)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return p
}

// TestFetchLeavesClientAlone checks that Fetch's redirect rules do not
// change the caller's client, and that the client's own rule still runs.
func TestFetchLeavesClientAlone(t *testing.T) {
	srv := httptest.NewServer(&releaseServer{files: map[string][]byte{
		"/f/r.tar.gz": []byte("a"), "/f/r.tar.gz.sig": []byte("s"),
	}})
	defer srv.Close()
	asked := 0
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
		asked++
		return errors.New("the caller's rule says no")
	}}
	before := client.CheckRedirect
	_, _, err := Fetch(context.Background(), srv.URL+"/redirect/1/f/r.tar.gz", t.TempDir(), FetchOptions{HTTPClient: client})
	if err == nil || !strings.Contains(err.Error(), "the caller's rule says no") || asked != 1 {
		t.Errorf("Fetch = %v after asking the client's rule %d times; want its error, asked once", err, asked)
	}
	if fmt.Sprintf("%p", client.CheckRedirect) != fmt.Sprintf("%p", before) {
		t.Error("Fetch replaced the caller's CheckRedirect")
	}
}

// TestFetchCancel cancels a fetch while the server stalls in the middle of
// the archive: Fetch must return at once and leave nothing behind.
func TestFetchCancel(t *testing.T) {
	started := make(chan struct{})
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".sig") {
			w.Write([]byte("signature\n"))
			return
		}
		w.Header().Set("Content-Length", "1000000")
		w.Write(bytes.Repeat([]byte("a"), 10_000))
		w.(http.Flusher).Flush()
		close(started)
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) }) // Runs first: unblocks the handler.

	dest := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		_, _, err := Fetch(ctx, srv.URL+"/r.tar.gz", dest, FetchOptions{})
		done <- result{err, time.Now()}
	}()
	select {
	case <-started:
	case res := <-done:
		t.Fatalf("Fetch returned before the server stalled: %v", res.err)
	case <-time.After(10 * time.Second):
		t.Fatal("the server never saw the archive's request")
	}
	// Let the client take in what was sent, so that a temporary file
	// exists to be removed.
	for deadline := time.Now().Add(5 * time.Second); len(dirState(t, dest)) < 2 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if got := dirState(t, dest); len(got) != 2 {
		t.Logf("before cancelling, the destination holds %d files, want the two temporary files", len(got))
	}
	cancelled := time.Now()
	cancel()
	select {
	case res := <-done:
		if !errors.Is(res.err, context.Canceled) {
			t.Errorf("Fetch = %v, want context.Canceled", res.err)
		}
		if !strings.Contains(res.err.Error(), "fetching "+srv.URL+"/r.tar.gz: ") {
			t.Errorf("error %q does not name the step and source", res.err)
		}
		if d := res.at.Sub(cancelled); d > 2*time.Second {
			t.Errorf("Fetch took %v to return after the cancel", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Fetch did not return after the cancel")
	}
	if got := dirState(t, dest); len(got) != 0 {
		t.Errorf("after a cancelled fetch the destination holds %q", got)
	}
}

func TestFetchCancelledBeforeStart(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "r.zip"), []byte("a"))
	writeFile(t, filepath.Join(src, "r.zip.sig"), []byte("s"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dest := t.TempDir()
	if _, _, err := Fetch(ctx, filepath.Join(src, "r.zip"), dest, FetchOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Fetch with a cancelled context = %v, want context.Canceled", err)
	}
	if got := dirState(t, dest); len(got) != 0 {
		t.Errorf("the destination holds %q", got)
	}
}

// TestFetchThenVerify fetches a real signed release and checks that Verify
// and VerifyExtract accept the copies.
func TestFetchThenVerify(t *testing.T) {
	testtree.NeedSymlinks(t)
	pub, priv, _ := newKey(t)
	keys := []ed25519.PublicKey{pub}
	for _, kind := range []string{"tar.gz", "zip"} {
		orig := goodArchive(t, kind)
		if _, err := Sign(orig, priv); err != nil {
			t.Fatal(err)
		}
		archiveData, _ := os.ReadFile(orig)
		sigData, _ := os.ReadFile(SigPath(orig))
		srv := httptest.NewTLSServer(&releaseServer{files: map[string][]byte{
			"/release." + kind: archiveData, "/release." + kind + ".sig": sigData,
		}})
		defer srv.Close()
		for _, from := range []struct{ name, source string }{
			{"local", orig},
			{"file URL", "file://" + fileURLPath(orig)},
			{"https", srv.URL + "/release." + kind},
		} {
			t.Run(kind+" "+from.name, func(t *testing.T) {
				archive, sig, err := Fetch(context.Background(), from.source, filepath.Join(t.TempDir(), "in"), FetchOptions{HTTPClient: srv.Client()})
				if err != nil {
					t.Fatal(err)
				}
				info, err := Verify(archive, sig, keys)
				if err != nil || info.Build != "7.00.240601A" {
					t.Fatalf("Verify = %+v, %v", info, err)
				}
				if sig != SigPath(archive) {
					t.Fatalf("Fetch put the signature at %s, VerifyExtract looks at %s", sig, SigPath(archive))
				}
				if _, err := VerifyExtract(context.Background(), archive, keys, filepath.Join(t.TempDir(), "new")); err != nil {
					t.Fatalf("VerifyExtract: %v", err)
				}
			})
		}
	}
}
