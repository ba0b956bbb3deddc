package appserver

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/mail/mailtest"
	"github.com/erpupdate/smartsync/appserver/release"
	"github.com/erpupdate/smartsync/syncproto"
)

// feedSite is the vendor's download site: release archives in a folder
// and a feed, served over HTTP.
type feedSite struct {
	srv  *httptest.Server
	dir  string
	mu   sync.Mutex
	feed []byte
}

func newFeedSite(t *testing.T) *feedSite {
	site := &feedSite{dir: t.TempDir()}
	files := http.FileServer(http.Dir(site.dir))
	site.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/feed.json" {
			site.mu.Lock()
			defer site.mu.Unlock()
			w.Write(site.feed)
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(site.srv.Close)
	return site
}

func (site *feedSite) url() string { return site.srv.URL + "/feed.json" }

// put publishes raw feed bytes.
func (site *feedSite) put(data []byte) {
	site.mu.Lock()
	site.feed = data
	site.mu.Unlock()
}

// publish signs a feed of number n listing rs with key, valid from an hour
// ago for 30 days, and publishes it.
func (site *feedSite) publish(t *testing.T, n uint64, key ed25519.PrivateKey, rs ...release.FeedRelease) []byte {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	data, err := release.SignFeed(release.Feed{Format: release.FeedFormat, Number: n, Published: now.Add(-time.Hour),
		Expires: now.Add(30 * 24 * time.Hour), Releases: append([]release.FeedRelease{}, rs...)}, key)
	if err != nil {
		t.Fatal(err)
	}
	site.put(data)
	return data
}

// release makes a signed release archive of build on the site and returns
// its feed entry, for this server's platform, named relative to the feed.
func (site *feedSite) release(t *testing.T, build, notes string) release.FeedRelease {
	t.Helper()
	archive := makeRelease(t, site.dir, build, map[string]string{serverProgram: "#!/bin/sh\n"}, vendorKey)
	info, err := release.Verify(archive, release.SigPath(archive), []ed25519.PublicKey{vendorKey.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	return release.FeedRelease{Build: info.Build, Platform: release.Platform(), URL: filepath.Base(archive),
		Size: info.Size, SHA256: hex.EncodeToString(info.SHA256[:]), Notes: notes}
}

// otherPlatform is a platform that is not this server's.
func otherPlatform() string {
	if release.Platform() == "linux/arm64" {
		return "linux/amd64"
	}
	return "linux/arm64"
}

// waitFeedTried waits for the server's first check of its feed.
func waitFeedTried(t *testing.T, s *Server) FeedStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if st := s.FeedStatus(); !st.Tried.IsZero() {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the server did not check its feed at start")
	return FeedStatus{}
}

// TestFeedNewerReleaseMailed: a server whose feed lists a newer release
// logs it and mails [SELFUPDATE] Notify once per new build, and tells an
// administrator's status that asks (AdminFeed).
func TestFeedNewerReleaseMailed(t *testing.T) {
	smtp := mailtest.Start(t, mailtest.Options{})
	site := newFeedSite(t)
	newer := site.release(t, "7.01.250101A", "Faster start-up\n\nAnd more.")
	older := site.release(t, "6.99.230101A", "old")
	elsewhere := newer
	elsewhere.Build, elsewhere.Platform = "7.09.250101A", otherPlatform()
	site.publish(t, 10, vendorKey, older, newer, elsewhere)
	extra := "Feed=" + site.url() + "\nNotify=ERP admin <admin@example.com>\n" +
		"[MAIL]\nHost=" + smtp.Host() + "\nPort=" + strconv.Itoa(smtp.Port()) + "\nFrom=erp@example.com\nStartTLS=0\n"
	ts, install := selfUpdateServerINI(t, "7.00.240501A", extra, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := smtp.Wait(ctx, 1)
	if err != nil {
		t.Fatalf("no mail of the newer release: %v\n%s", err, ts.logs.String())
	}
	m := msgs[0]
	if !strings.Contains(m.Subject, "release 7.01.250101A is available (running 7.00.240501A)") ||
		!strings.Contains(m.Body, "Faster start-up") || !strings.Contains(m.Body, site.srv.URL+"/appserver-7.01.250101A.tar.gz") ||
		len(m.To) != 1 || m.To[0] != "admin@example.com" {
		t.Errorf("mail: to %v, %q\n%s", m.To, m.Subject, m.Body)
	}
	if !strings.Contains(ts.logs.String(), "a newer release of the server is available") {
		t.Errorf("the newer release was not logged:\n%s", ts.logs.String())
	}
	st := ts.srv.FeedStatus()
	if st.Err != nil || st.Number != 10 || st.Newest == nil || st.Newest.Build != "7.01.250101A" || st.Source != site.srv.URL+"/appserver-7.01.250101A.tar.gz" {
		t.Fatalf("FeedStatus = %+v", st)
	}

	// The next day's check finds the same release: no second mail.
	ts.srv.feed.checkAndAnnounce(ctx)
	if n := len(smtp.Messages()); n != 1 {
		t.Errorf("%d mails after a second check of the same feed, want 1", n)
	}
	var mem feedMemory
	data, err := os.ReadFile(filepath.Join(install, "appserver-state", "selfupdate", feedStateFile))
	if err == nil {
		err = json.Unmarshal(data, &mem)
	}
	if err != nil || mem != (feedMemory{Highest: 10, Announced: "7.01.250101A"}) {
		t.Errorf("feed state %s, %v", data, err)
	}

	// An administrator's status shows the newest release when it asks,
	// and only then: a client that does not know the fields never gets them.
	res := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpStatus, Flags: syncproto.AdminFeed}, nil)
	if res.err != nil || len(res.statuses) != 1 {
		t.Fatalf("status: %+v", res)
	}
	if s := res.statuses[0]; s.NewestBuild != "7.01.250101A" || s.NewestNotes != "Faster start-up" || s.FeedChecked == 0 || s.FeedError != "" {
		t.Errorf("status with AdminFeed: %+v", s)
	}
	res = adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpStatus}, nil)
	if res.err != nil || res.statuses[0].NewestBuild != "" || res.statuses[0].FeedChecked != 0 {
		t.Errorf("status without AdminFeed: %+v", res)
	}

	// A still newer release is mailed in its turn.
	newest := site.release(t, "7.02.250301A", "")
	site.publish(t, 11, vendorKey, newer, newest)
	ts.srv.feed.checkAndAnnounce(ctx)
	if msgs := smtp.Messages(); len(msgs) != 2 || !strings.Contains(msgs[1].Subject, "7.02.250301A") {
		t.Errorf("after a newer feed: %d mails", len(msgs))
	}
}

// TestFeedRefused: a forged, tampered, expired or replayed older feed is
// refused with its own error, logged at WARN, and announces nothing. Each
// would otherwise offer release 7.01.
func TestFeedRefused(t *testing.T) {
	site := newFeedSite(t)
	newer := site.release(t, "7.01.250101A", "")
	now := time.Now().UTC().Truncate(time.Second)
	expired, err := release.SignFeed(release.Feed{Format: release.FeedFormat, Number: 20, Published: now.Add(-48 * time.Hour),
		Expires: now.Add(-time.Hour), Releases: []release.FeedRelease{newer}}, vendorKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		feed func(t *testing.T) []byte // published before the check
		want error
	}{
		{"forged", func(t *testing.T) []byte { return site.publish(t, 20, otherKey, newer) }, release.ErrUnknownKey},
		{"tampered", func(t *testing.T) []byte {
			good := site.publish(t, 20, vendorKey, newer)
			// The size of the release changed, the JSON still canonical.
			bad := bytes.Replace(good, []byte(`"size":`+strconv.FormatInt(newer.Size, 10)), []byte(`"size":`+strconv.FormatInt(newer.Size+1, 10)), 1)
			if bytes.Equal(bad, good) {
				t.Fatal("tamper changed nothing")
			}
			return bad
		}, release.ErrBadSignature},
		{"expired", func(t *testing.T) []byte { return expired }, release.ErrFeedExpired},
		{"older number", func(t *testing.T) []byte { return site.publish(t, 9, vendorKey, newer) }, release.ErrFeedRollback},
		{"malformed", func(t *testing.T) []byte { return []byte("<html>Not found</html>") }, release.ErrFeedFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site.publish(t, 10, vendorKey) // a good feed, nothing newer
			ts, _ := selfUpdateServerINI(t, "7.00.240501A", "Feed="+site.url()+"\n", nil)
			if st := waitFeedTried(t, ts.srv); st.Err != nil || st.Number != 10 {
				t.Fatalf("the good feed: %+v", st)
			}
			site.put(tc.feed(t))
			ts.srv.feed.checkAndAnnounce(context.Background())
			st := ts.srv.FeedStatus()
			if !errors.Is(st.Err, tc.want) || !strings.Contains(st.Err.Error(), site.url()) {
				t.Fatalf("got %v, want %v naming the feed", st.Err, tc.want)
			}
			if st.Newest != nil {
				t.Errorf("a refused feed offered %s", st.Newest.Build)
			}
			logs := ts.logs.String()
			if !strings.Contains(logs, "level=WARN msg=\"release feed: check failed") || strings.Contains(logs, "newer release of the server is available") {
				t.Errorf("logs:\n%s", logs)
			}
			// The refusal does not stop the server from serving.
			res := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpStatus, Flags: syncproto.AdminFeed}, nil)
			if res.err != nil || res.statuses[0].FeedError == "" || res.statuses[0].NewestBuild != "" {
				t.Errorf("status after a refused feed: %+v", res)
			}
		})
	}
}

// TestUpdateServerFromFeed: an update asked for without a source takes the
// newest release of the feed, which is then fetched and verified as any
// other (its signature) and must match the feed's size and digest.
func TestUpdateServerFromFeed(t *testing.T) {
	site := newFeedSite(t)
	r1 := site.release(t, "7.01.250101A", "")
	r2 := site.release(t, "7.02.250301A", "Spring release")
	site.publish(t, 10, vendorKey, r1, r2)
	ts, install := selfUpdateServerINI(t, "7.00.240501A", "Feed="+site.url()+"\n", nil)
	waitFeedTried(t, ts.srv)

	res := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpUpdate, Countdown: 600},
		func(r adminResult) bool {
			return len(r.events) > 0 && strings.Contains(r.events[len(r.events)-1], "countdown")
		})
	if res.err != nil {
		t.Fatalf("update without a source: %v", res.err)
	}
	events := strings.Join(res.events, "\n")
	for _, want := range []string{"build 7.02.250301A from the release feed", "fetching " + site.srv.URL + "/appserver-7.02.250301A.tar.gz", "release 7.02.250301A: signature good"} {
		if !strings.Contains(events, want) {
			t.Errorf("events lack %q:\n%s", want, events)
		}
	}
	if len(res.statuses) == 0 || res.statuses[0].Source != site.srv.URL+"/appserver-7.02.250301A.tar.gz" {
		t.Errorf("statuses: %+v", res.statuses)
	}
	if _, err := os.Stat(filepath.Join(install+"_new", "BUILD")); err != nil {
		t.Errorf("the feed's release was not unpacked: %v", err)
	}
	cancel := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpCancel}, nil)
	if cancel.err != nil || cancel.statuses[0].State != syncproto.StateCancelled {
		t.Fatalf("cancel: %+v", cancel)
	}

	// An entry whose archive is genuinely signed but is not the one the
	// feed lists (its digest) is refused.
	swapped := r2
	swapped.SHA256 = r1.SHA256
	site.publish(t, 11, vendorKey, swapped)
	res = adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpUpdate, Countdown: 600}, nil)
	wantCode(t, res.err, syncproto.CodeRefused, "does not match its release feed entry")

	// Nothing newer, and a feed that fails: each refused, saying why.
	site.publish(t, 12, vendorKey, release.FeedRelease{Build: "6.00.200101A", Platform: r1.Platform, URL: r1.URL, Size: r1.Size, SHA256: r1.SHA256})
	res = adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpUpdate, Countdown: 600}, nil)
	wantCode(t, res.err, syncproto.CodeRefused, "lists no release for "+release.Platform()+" newer than the running build 7.00.240501A")
	site.publish(t, 5, vendorKey, r2)
	res = adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpUpdate, Countdown: 600}, nil)
	wantCode(t, res.err, syncproto.CodeRefused, "release feed could not be used")
	wantCode(t, res.err, syncproto.CodeRefused, "older than one already seen")
}

// TestUpdateServerNoFeed: without a source and without [SELFUPDATE] Feed,
// the request is refused naming the key.
func TestUpdateServerNoFeed(t *testing.T) {
	ts, _ := selfUpdateServer(t, "7.00.240501A")
	res := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpUpdate, Countdown: 600}, nil)
	wantCode(t, res.err, syncproto.CodeRefused, "[SELFUPDATE] Feed is not set")
}

// TestRunCheckNamesFeed: --check says where the feed is and who is told,
// without fetching it.
func TestRunCheckNamesFeed(t *testing.T) {
	base := t.TempDir()
	cfgPath := filepath.Join(base, "AppServer.ini")
	writeFile(t, cfgPath, "[TCP]\nPort=1234\n[UPDATE]\nEnable=0\n[SELFUPDATE]\nPublicKey="+release.FormatPublicKey(vendorKey.Public().(ed25519.PublicKey))+
		"\nFeed=https://dl.example.invalid/feed.json\nNotify=admin@example.com\n[MAIL]\nHost=127.0.0.1\nFrom=erp@example.com\n")
	var out, errb bytes.Buffer
	if err := RunServer(context.Background(), ServeOptions{Config: cfgPath, Check: true}, &out, &errb); err != nil {
		t.Fatalf("--check: %v\n%s", err, errb.String())
	}
	if want := "\nFeed     https://dl.example.invalid/feed.json  checked at start and daily; a newer release is mailed to admin@example.com\n"; !strings.Contains(out.String(), want) {
		t.Errorf("--check output lacks %q:\n%s", want, out.String())
	}
}

// TestFeedRecordUnreadable: a record of the feeds seen that cannot be
// read is not taken as "none seen yet": an older feed replayed then is
// refused, naming the record, rather than believed.
func TestFeedRecordUnreadable(t *testing.T) {
	site := newFeedSite(t)
	newer := site.release(t, "7.01.250101A", "")
	site.publish(t, 10, vendorKey)
	ts, _ := selfUpdateServerINI(t, "7.00.240501A", "Feed="+site.url()+"\n", nil)
	if st := waitFeedTried(t, ts.srv); st.Err != nil || st.Number != 10 {
		t.Fatalf("the good feed: %+v", st)
	}
	record := filepath.Join(ts.srv.feed.dir(), feedStateFile)
	if err := os.WriteFile(record, []byte("{\"highest\": 1"), 0o600); err != nil {
		t.Fatal(err)
	}
	site.publish(t, 9, vendorKey, newer) // an older feed, replayed
	ts.srv.feed.checkAndAnnounce(context.Background())
	st := ts.srv.FeedStatus()
	if st.Err == nil || !strings.Contains(st.Err.Error(), record) || !strings.Contains(st.Err.Error(), "unreadable") {
		t.Fatalf("got %v, want the record named as unreadable", st.Err)
	}
	if st.Newest != nil {
		t.Errorf("the replayed feed offered %s", st.Newest.Build)
	}
}
