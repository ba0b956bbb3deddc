package release

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var feedNow = time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)

// testFeed is a feed of two linux/amd64 releases and one windows one.
func testFeed(number uint64) Feed {
	sum := strings.Repeat("ab", 32)
	return Feed{Format: FeedFormat, Number: number, Published: feedNow.Add(-time.Hour), Expires: feedNow.Add(30 * 24 * time.Hour),
		Releases: []FeedRelease{
			{Build: "7.00.240601A", Platform: "linux/amd64", URL: "appserver-7.00.240601A-linux-amd64.tar.gz", Size: 10, SHA256: sum, Notes: "June release\n\nFixes."},
			{Build: "7.01.250101A", Platform: "linux/amd64", URL: "https://dl.example.com/r/appserver-7.01.250101A-linux-amd64.tar.gz", Size: 20, SHA256: sum, Notes: "\n  New year release  \nmore"},
			{Build: "7.02.250601A", Platform: "windows/amd64", URL: "sub/appserver-7.02.250601A-windows-amd64.zip", Size: 30, SHA256: sum},
		}}
}

func signedFeed(t *testing.T, f Feed, keys ...ed25519.PrivateKey) []byte {
	t.Helper()
	data, err := SignFeed(f, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestFeedSignVerify(t *testing.T) {
	pub, priv, _ := newKey(t)
	data := signedFeed(t, testFeed(5), priv)
	f, err := VerifyFeed(data, "https://dl.example.com/feed.json", []ed25519.PublicKey{pub}, feedNow, 5)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := f.Newest("linux/amd64", "7.00.240501A")
	if !ok || r.Build != "7.01.250101A" || r.FirstLine() != "New year release" {
		t.Fatalf("newest = %+v, %v", r, ok)
	}
	if _, ok := f.Newest("linux/amd64", "7.01.250101A"); ok {
		t.Error("a release not newer than the running build was offered")
	}
	if _, ok := f.Newest("linux/arm64", "7.00.240501A"); ok {
		t.Error("a release of another platform was offered")
	}
	if _, ok := f.Newest("linux/amd64", "2.0.1"); ok {
		t.Error("a release of another build scheme was offered")
	}
}

// TestFeedRefused shows each check of VerifyFeed refusing its attack; each
// case is accepted once its one defect is gone (the "good" case).
func TestFeedRefused(t *testing.T) {
	pub, priv, _ := newKey(t)
	_, other, _ := newKey(t)
	keys := []ed25519.PublicKey{pub}
	good := signedFeed(t, testFeed(5), priv)
	expired := testFeed(6)
	expired.Published, expired.Expires = feedNow.Add(-48*time.Hour), feedNow.Add(-time.Hour)
	// Tampered: the URL of a release swapped for the attacker's, the JSON
	// still canonical, the signature the vendor's.
	tampered := bytes.Replace(good, []byte("https://dl.example.com/"), []byte("https://evil.example.co/"), 1)
	if bytes.Equal(tampered, good) {
		t.Fatal("the tamper changed nothing")
	}
	for _, tc := range []struct {
		name    string
		data    []byte
		highest uint64
		want    error
	}{
		{"good", good, 5, nil},
		{"good, number grew", good, 4, nil},
		{"wrong key", signedFeed(t, testFeed(5), other), 0, ErrUnknownKey},
		{"tampered", tampered, 0, ErrBadSignature},
		{"expired", signedFeed(t, expired, priv), 0, ErrFeedExpired},
		{"older number", good, 6, ErrFeedRollback},
		{"malformed", good[:len(good)-2], 0, ErrFeedFormat},
		{"not canonical", append([]byte(" "), good...), 0, ErrFeedFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const where = "https://dl.example.com/feed.json"
			_, err := VerifyFeed(tc.data, where, keys, feedNow, tc.highest)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), where) {
				t.Errorf("error %q does not name the feed", err)
			}
		})
	}
}

func TestFeedFormErrors(t *testing.T) {
	_, priv, _ := newKey(t)
	for _, tc := range []struct {
		name   string
		change func(*Feed)
		want   string
	}{
		{"number 0", func(f *Feed) { f.Number = 0 }, "number 0"},
		{"not UTC", func(f *Feed) { f.Expires = f.Expires.In(time.FixedZone("x", 3600)) }, "UTC"},
		{"expires first", func(f *Feed) { f.Expires = f.Published }, "not after"},
		{"bad build", func(f *Feed) { f.Releases[0].Build = "seven" }, "not a build"},
		{"bad platform", func(f *Feed) { f.Releases[0].Platform = "linux" }, "GOOS/GOARCH"},
		{"credentials", func(f *Feed) { f.Releases[0].URL = "https://u:p@x/a.tar.gz" }, "password"},
		{"not an archive", func(f *Feed) { f.Releases[0].URL = "https://x/a.exe" }, ".tar.gz"},
		{"ftp", func(f *Feed) { f.Releases[0].URL = "ftp://x/a.tar.gz" }, "scheme"},
		{"size", func(f *Feed) { f.Releases[0].Size = 0 }, "size"},
		{"sha256", func(f *Feed) { f.Releases[0].SHA256 = "AB" }, "sha256"},
		{"notes", func(f *Feed) { f.Releases[0].Notes = strings.Repeat("x", MaxNotes+1) }, "notes"},
		{"no list", func(f *Feed) { f.Releases = nil }, "no releases"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := testFeed(1)
			tc.change(&f)
			_, err := SignFeed(f, priv)
			if !errors.Is(err, ErrFeedFormat) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrFeedFormat with %q", err, tc.want)
			}
		})
	}
}

func TestFeedResolveURL(t *testing.T) {
	f := testFeed(1)
	dir := t.TempDir()
	for _, tc := range []struct {
		source string
		r      FeedRelease
		want   string
	}{
		{"https://dl.example.com/feeds/feed.json", f.Releases[0], "https://dl.example.com/feeds/appserver-7.00.240601A-linux-amd64.tar.gz"},
		{"https://dl.example.com/feeds/feed.json", f.Releases[1], f.Releases[1].URL},
		{"https://dl.example.com/feeds/feed.json?t=1", f.Releases[2], "https://dl.example.com/feeds/sub/appserver-7.02.250601A-windows-amd64.zip"},
		{filepath.Join(dir, "feed.json"), f.Releases[2], filepath.Join(dir, "sub", "appserver-7.02.250601A-windows-amd64.zip")},
	} {
		got, err := ResolveURL(tc.source, tc.r)
		if err != nil || got != tc.want {
			t.Errorf("ResolveURL(%s, %s) = %q, %v; want %q", tc.source, tc.r.URL, got, err, tc.want)
		}
	}
	if err := CheckFeedSource("feed.json"); !errors.Is(err, ErrSource) {
		t.Errorf("a relative feed path: %v", err)
	}
	if err := CheckFeedSource("https://u:secret@x/feed.json"); !errors.Is(err, ErrSource) || strings.Contains(err.Error(), "secret") {
		t.Errorf("a feed URL with a password: %v", err)
	}
}

func TestFetchFeed(t *testing.T) {
	_, priv, _ := newKey(t)
	good := signedFeed(t, testFeed(1), priv)
	mux := http.NewServeMux()
	mux.HandleFunc("/feed.json", func(w http.ResponseWriter, r *http.Request) { w.Write(good) })
	mux.HandleFunc("/huge.json", func(w http.ResponseWriter, r *http.Request) {
		// No Content-Length: the bound is the reader's.
		for range MaxFeedSize/1024 + 2 {
			w.Write(bytes.Repeat([]byte(" "), 1024))
			w.(http.Flusher).Flush()
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := context.Background()
	data, err := FetchFeed(ctx, srv.URL+"/feed.json", FetchOptions{})
	if err != nil || !bytes.Equal(data, good) {
		t.Fatalf("fetch: %v", err)
	}
	if _, err := FetchFeed(ctx, srv.URL+"/huge.json", FetchOptions{}); !errors.Is(err, ErrFeedFormat) {
		t.Errorf("a feed over the limit: %v", err)
	}
	if _, err := FetchFeed(ctx, srv.URL+"/missing.json", FetchOptions{}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a missing feed: %v", err)
	}
	p := writeFile(t, filepath.Join(t.TempDir(), "feed.json"), good)
	if data, err := FetchFeed(ctx, p, FetchOptions{}); err != nil || !bytes.Equal(data, good) {
		t.Errorf("a local feed: %v", err)
	}
}

// TestMakeFeedRelease is the vendor's round trip: sign an archive, describe
// it for a feed (build, size, digest, notes), sign the feed, verify it.
func TestMakeFeedRelease(t *testing.T) {
	pub, priv, _ := newKey(t)
	ms := []member{{name: NotesFile, body: "Faster sync\r\nDetails on the site.\n", mode: 0o644}}
	for _, m := range goodMembers {
		// Sign unpacks the archive to check it: without links where
		// the system cannot make them (Wine), so that the rest runs.
		if m.mode&fs.ModeSymlink == 0 || canSymlink(t) {
			ms = append(ms, m)
		}
	}
	arc := writeFile(t, filepath.Join(t.TempDir(), "appserver-7.00.240601A-linux-amd64.tar.gz"), tarGz(t, ms))
	ctx := context.Background()
	if _, err := MakeFeedRelease(ctx, arc, []ed25519.PublicKey{pub}, "", ""); !errors.Is(err, ErrNoSignature) {
		t.Fatalf("an unsigned archive: %v", err)
	}
	info, err := Sign(arc, priv)
	if err != nil {
		t.Fatal(err)
	}
	r, err := MakeFeedRelease(ctx, arc, []ed25519.PublicKey{pub}, "https://dl.example.com/r/", "")
	if err != nil {
		t.Fatal(err)
	}
	want := FeedRelease{Build: "7.00.240601A", Platform: "linux/amd64", URL: "https://dl.example.com/r/appserver-7.00.240601A-linux-amd64.tar.gz",
		Size: info.Size, SHA256: r.SHA256, Notes: "Faster sync\nDetails on the site."}
	if r != want || r.Digest() != info.SHA256 {
		t.Fatalf("got %+v\nwant %+v", r, want)
	}
	noPlatform := writeFile(t, filepath.Join(t.TempDir(), "appserver.tar.gz"), tarGz(t, ms[1:]))
	if _, err := Sign(noPlatform, priv); err != nil {
		t.Fatal(err)
	}
	if _, err := MakeFeedRelease(ctx, noPlatform, []ed25519.PublicKey{pub}, "", ""); err == nil || !strings.Contains(err.Error(), "--platform") {
		t.Errorf("an archive naming no platform: %v", err)
	}
	if r, err := MakeFeedRelease(ctx, noPlatform, []ed25519.PublicKey{pub}, "", "darwin/arm64"); err != nil || r.Platform != "darwin/arm64" || r.URL != "appserver.tar.gz" || r.Notes != "" {
		t.Errorf("--platform given: %+v, %v", r, err)
	}
}

func FuzzDecodeFeed(f *testing.F) {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		f.Fatal(err)
	}
	good, err := SignFeed(testFeed(3), priv)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	if seed, err := os.ReadFile("testdata/feed.json"); err == nil {
		f.Add(seed)
	}
	f.Add([]byte("{}\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		ff, err := DecodeFeed(data)
		if err != nil {
			if !errors.Is(err, ErrFeedFormat) {
				t.Fatalf("error %v does not wrap ErrFeedFormat", err)
			}
			return
		}
		if out := append(canonicalJSON(ff), '\n'); !bytes.Equal(out, data) {
			t.Fatalf("accepted %q but encodes to %q", data, out)
		}
		for _, r := range ff.Feed.Releases {
			if len(r.Notes) > MaxNotes {
				t.Fatalf("accepted notes of %d bytes", len(r.Notes))
			}
		}
	})
}

// canSymlink reports whether this system makes symbolic links and reads
// them back (Wine does neither).
func canSymlink(t *testing.T) bool {
	dir := t.TempDir()
	if os.Symlink("target", filepath.Join(dir, "link")) != nil {
		return false
	}
	got, err := os.Readlink(filepath.Join(dir, "link"))
	return err == nil && got == "target"
}
