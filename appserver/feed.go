package appserver

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/appserver/mail"
	"github.com/erpupdate/smartsync/appserver/release"
	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/erpupdate/smartsync/syncproto"
)

// The vendor's release feed ([SELFUPDATE] Feed): the server reads it at
// start and daily, believes it only as release.VerifyFeed allows, tells the
// administrator once of each newer release, and gives "smartclient admin
// update-server" without --from the newest one.

// Timing of the feed's checks.
const (
	// feedInterval is the time between two checks, give or take
	// feedJitter, so that a vendor's thousand servers started at the same
	// hour do not all ask at once the next day.
	feedInterval = 24 * time.Hour
	feedJitter   = time.Hour
	// feedTimeout bounds one fetch of the feed.
	feedTimeout = time.Minute
)

// feedStateFile, in the self-update's state folder, keeps what the server
// must remember of the feed across restarts.
const feedStateFile = "feed.json"

// feedMemory is the content of feedStateFile.
type feedMemory struct {
	// Highest is the highest feed number believed: a feed numbered below
	// it is refused, so that an old feed replayed cannot hide a newer
	// release.
	Highest uint64 `json:"highest"`
	// Announced is the newest build the administrator was told of, so
	// that each new release is mailed once, not every day.
	Announced string `json:"announced,omitempty"`
}

// errUnknownBuild is a feed check on a server that cannot compare builds.
var errUnknownBuild = errors.New("the server does not know its own build (no BUILD file in its installation folder), so it cannot tell a newer release")

// FeedStatus is what the server knows of the vendor's release feed, for
// the administrator's tools and the console.
type FeedStatus struct {
	// Feed is [SELFUPDATE] Feed; "" when the server has none.
	Feed string
	// Checked is when the feed was last fetched and believed; zero before.
	Checked time.Time
	// Number is the number of the feed last believed.
	Number uint64
	// Newest is the newest release the feed lists for this server's
	// platform that is newer than its build, and Source where it is; nil
	// and "" when there is none.
	Newest *release.FeedRelease
	Source string
	// Err is why the last check failed; nil when it did not.
	Err error
	// Tried is when the feed was last tried, successfully or not.
	Tried time.Time
}

// FeedStatus returns what the server knows of its release feed as of the
// last check.
func (s *Server) FeedStatus() FeedStatus {
	s.feed.mu.Lock()
	defer s.feed.mu.Unlock()
	st := s.feed.status
	st.Feed = s.conf().SelfUpdate.Feed
	return st
}

// feedChecker checks the feed and keeps its status.
type feedChecker struct {
	s *Server
	// client fetches http(s) feeds; nil for release.Fetch's default
	// (tests give one that trusts their server).
	client *http.Client
	// check serialises checks: the daily one and an administrator's.
	check   sync.Mutex
	mu      sync.Mutex
	status  FeedStatus
	memory  feedMemory // when there is no state folder
	running sync.WaitGroup
	kick    chan struct{} // see recheck
}

// dir is the folder of feedStateFile; "" keeps it in memory.
func (fc *feedChecker) dir() string { return fc.s.upd.dir }

// load reads the record of the feeds seen. A record that exists but
// cannot be read is an error, not a fresh start: starting afresh would
// forget the highest number seen, and a replayed older feed would be
// believed.
func (fc *feedChecker) load() (feedMemory, error) {
	if fc.dir() == "" {
		return fc.memory, nil
	}
	var m feedMemory
	file := filepath.Join(fc.dir(), feedStateFile)
	err := atomicfile.ReadJSON(file, &m)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return feedMemory{}, fmt.Errorf("the record of the feeds seen, %s, is unreadable (remove it to start afresh, which forgets the highest feed number seen): %w", file, err)
	}
	return m, nil
}

func (fc *feedChecker) save(m feedMemory) error {
	if fc.dir() == "" {
		fc.memory = m
		return nil
	}
	if err := os.MkdirAll(fc.dir(), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteJSON(filepath.Join(fc.dir(), feedStateFile), m, 0o600)
}

// start runs the checks in the background until ctx ends: one now, then
// one a day.
//
// Without [SELFUPDATE] Feed it checks nothing, and waits for a reload
// that sets one (see recheck).
func (fc *feedChecker) start(ctx context.Context) {
	fc.running.Add(1)
	go func() {
		defer fc.running.Done()
		for {
			if fc.s.conf().SelfUpdate.Feed != "" {
				fc.checkAndAnnounce(ctx)
			}
			wait := feedInterval - feedJitter + rand.N(2*feedJitter)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			case <-fc.kick:
				t.Stop()
			}
		}
	}()
}

// recheck has the feed checked at once (and the day counted from then),
// as after a reload that changed [SELFUPDATE] Feed or PublicKey.
func (fc *feedChecker) recheck() {
	select {
	case fc.kick <- struct{}{}:
	default:
	}
}

// run fetches and verifies the feed and returns the newest release for
// this server, if any, and where it is.
func (fc *feedChecker) run(ctx context.Context) (release.FeedRelease, string, bool, error) {
	fc.check.Lock()
	defer fc.check.Unlock()
	cfg := fc.s.conf()
	feed := cfg.SelfUpdate.Feed
	now := time.Now()
	newest, source, found, number, err := fc.fetch(ctx, feed, cfg.SelfUpdate.PublicKeys, now)
	fc.mu.Lock()
	fc.status.Tried = now
	fc.status.Err = err
	if err == nil {
		fc.status.Checked, fc.status.Number, fc.status.Newest, fc.status.Source = now, number, nil, ""
		if found {
			r := newest
			fc.status.Newest, fc.status.Source = &r, source
		}
	}
	fc.mu.Unlock()
	return newest, source, found, err
}

func (fc *feedChecker) fetch(ctx context.Context, feed string, keys []ed25519.PublicKey, now time.Time) (release.FeedRelease, string, bool, uint64, error) {
	var none release.FeedRelease
	fctx, cancel := context.WithTimeout(ctx, feedTimeout)
	defer cancel()
	data, err := release.FetchFeed(fctx, feed, release.FetchOptions{HTTPClient: fc.client})
	if err != nil {
		return none, "", false, 0, err
	}
	mem, err := fc.load()
	if err != nil {
		return none, "", false, 0, fmt.Errorf("release feed %s: %w", feed, err)
	}
	f, err := release.VerifyFeed(data, feed, keys, now, mem.Highest)
	if err != nil {
		return none, "", false, 0, err
	}
	if f.Number > mem.Highest {
		mem.Highest = f.Number
		if err := fc.save(mem); err != nil {
			// Without the record, a replayed older feed would be believed
			// after a restart: better not to believe this one either.
			return none, "", false, 0, fmt.Errorf("release feed %s: recording its number %d: %w", feed, f.Number, err)
		}
	}
	if fc.s.self.Build == "" {
		return none, "", false, f.Number, fmt.Errorf("release feed %s: %w", feed, errUnknownBuild)
	}
	r, ok := f.Newest(release.Platform(), fc.s.self.Build)
	if !ok {
		return none, "", false, f.Number, nil
	}
	source, err := release.ResolveURL(feed, r)
	if err != nil {
		return none, "", false, f.Number, fmt.Errorf("release feed %s: %w", feed, err)
	}
	return r, source, true, f.Number, nil
}

// checkAndAnnounce is the daily check: a failure is logged, never more;
// a newer release is logged, and mailed to [SELFUPDATE] Notify once.
func (fc *feedChecker) checkAndAnnounce(ctx context.Context) {
	log := fc.s.log
	feed := fc.s.conf().SelfUpdate.Feed
	r, source, found, err := fc.run(ctx)
	switch {
	case ctx.Err() != nil:
		return
	case err != nil:
		log.Warn("release feed: check failed; nothing changes, the next check is in a day", "feed", feed, "err", err)
		return
	case !found:
		log.Info("release feed: checked; no newer release", "feed", feed, "running", fc.s.self.Build, "platform", release.Platform())
		return
	}
	fc.check.Lock()
	defer fc.check.Unlock()
	mem, err := fc.load()
	if err != nil {
		// Unreachable in practice (run read it a moment ago); the
		// newer release is announced again rather than not at all.
		log.Warn("release feed", "err", err)
	}
	if mem.Announced == r.Build {
		log.Info("release feed: a newer release is available (already announced)", "build", r.Build, "running", fc.s.self.Build, "source", source)
		return
	}
	log.Warn("release feed: a newer release of the server is available; install it with \"smartclient admin update-server\" (without --from)",
		"build", r.Build, "running", fc.s.self.Build, "notes", r.FirstLine(), "source", source)
	if cfg := fc.s.conf(); cfg.SelfUpdate.Notify != "" {
		to := cfg.SelfUpdate.Notify
		subject, body := newerMail(fc.s.self.Build, r, source, feed)
		mc := cfg.Mail
		err := mail.Send(ctx, mail.Config{Host: mc.Host, Port: mc.Port, From: mc.From, User: mc.User, Password: mc.Password,
			StartTLS: mc.StartTLS, Timeout: 30 * time.Second}, to, subject, body)
		if err != nil {
			// Not recorded as announced: the next check tries again.
			log.Warn("release feed: mailing the administrator of the newer release failed; trying again at the next check", "to", to, "err", err)
			return
		}
		log.Info("release feed: newer release mailed", "to", to, "build", r.Build)
	}
	mem.Announced = r.Build
	if err := fc.save(mem); err != nil {
		log.Warn("release feed: recording the announced release", "err", err)
	}
}

// newerMail is the subject and text of the mail announcing release r.
func newerMail(running string, r release.FeedRelease, source, feed string) (string, string) {
	host, _ := os.Hostname()
	subject := fmt.Sprintf("appserver on %s: release %s is available (running %s)", host, r.Build, running)
	var b strings.Builder
	fmt.Fprintf(&b, "A newer release of the server is available.\n\n")
	fmt.Fprintf(&b, "Server:        %s\n", host)
	fmt.Fprintf(&b, "Running build: %s\n", running)
	fmt.Fprintf(&b, "New build:     %s (%s)\n", r.Build, r.Platform)
	fmt.Fprintf(&b, "Release:       %s\n", source)
	fmt.Fprintf(&b, "Feed:          %s\n", feed)
	if r.Notes != "" {
		fmt.Fprintf(&b, "\nRelease notes:\n%s\n", r.Notes)
	}
	fmt.Fprintf(&b, "\nTo install it, from an administrator's workstation:\n    smartclient admin update-server --countdown 5m\n")
	fmt.Fprintf(&b, "(without --from, the server takes the newest release of its feed). You are told of each release once.\n")
	return subject, b.String()
}

// newestForUpdate checks the feed now and returns the newest release for
// an update asked for without a source, or why there is none, worded for
// the administrator.
func (fc *feedChecker) newestForUpdate(ctx context.Context) (release.FeedRelease, string, error) {
	feed := fc.s.conf().SelfUpdate.Feed
	if feed == "" {
		return release.FeedRelease{}, "", refused("no release source given, and [SELFUPDATE] Feed is not set in AppServer.ini: give --from SOURCE, or set Feed")
	}
	r, source, found, err := fc.run(ctx)
	switch {
	case err != nil:
		return release.FeedRelease{}, "", refused("no release source given, and the release feed could not be used: %v", err)
	case !found:
		return release.FeedRelease{}, "", refused("no release source given, and the release feed %s lists no release for %s newer than the running build %s",
			feed, release.Platform(), fc.s.self.Build)
	}
	return r, source, nil
}

// feedFields fills the feed fields of an UpdateStatus (see
// syncproto.AdminFeed).
func (s *Server) feedFields(st *syncproto.UpdateStatus) {
	fs := s.FeedStatus()
	if fs.Feed == "" {
		return
	}
	if !fs.Checked.IsZero() {
		st.FeedChecked = fs.Checked.Unix()
	}
	if fs.Newest != nil {
		st.NewestBuild = fs.Newest.Build
		st.NewestNotes = truncate(fs.Newest.FirstLine(), syncproto.MaxMessage)
	}
	if fs.Err != nil {
		st.FeedError = truncate(fs.Err.Error(), syncproto.MaxMessage)
	}
}

// truncate cuts s to at most n bytes, dropping a rune cut in two.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
