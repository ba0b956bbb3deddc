package appserver

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/mail/mailtest"
)

func TestNextDigest(t *testing.T) {
	loc := time.FixedZone("BRT", -3*3600)
	at := 7*time.Hour + 30*time.Minute
	for _, tc := range []struct{ now, want string }{
		{"2026-12-06T06:00:00", "2026-12-06T07:30:00"},
		{"2026-12-06T07:30:00", "2026-12-07T07:30:00"}, // strictly after
		{"2026-12-06T07:29:59", "2026-12-06T07:30:00"},
		{"2026-12-31T23:00:00", "2027-01-01T07:30:00"},
	} {
		now, _ := time.ParseInLocation("2006-01-02T15:04:05", tc.now, loc)
		want, _ := time.ParseInLocation("2006-01-02T15:04:05", tc.want, loc)
		if got := nextDigest(now, at); !got.Equal(want) {
			t.Errorf("nextDigest(%s) = %s, want %s", tc.now, got, want)
		}
	}
}

// TestDigestMailed: at DigestAt the period since the last digest is made
// into a mail to [STATUS] Notify, received by a real SMTP server; a quiet
// period sends nothing; the next period starts where the last ended,
// across a restart (STATE/digest.json).
func TestDigestMailed(t *testing.T) {
	smtp := mailtest.Start(t, mailtest.Options{})
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"app": "one"}, oldTime)
	cfg, _ := loadServerConfig(t, "Enable=1", "PathLinux="+dir, "Build="+srvBuild,
		"[STATUS]", "Notify=ti@example.com", "DigestAt=07:30",
		"[MAIL]", "Host="+smtp.Host(), "Port="+strconv.Itoa(smtp.Port()), "From=erp@example.com", "StartTLS=0")
	state := t.TempDir()
	ts := startServerIn(t, cfg, state, nil, nil)

	// Days past, since a record from the future is not believed.
	y, m, d := time.Now().Date()
	clock := time.Date(y, m, d-3, 6, 0, 0, 0, time.Local)
	ticks := make(chan time.Time)
	waits := make(chan time.Duration, 1)
	type period struct{ since, until time.Time }
	periods := make(chan period, 4)
	quiet := false
	makeDigest := func(ctx context.Context, since, until time.Time) (string, string, bool, error) {
		periods <- period{since, until}
		if quiet {
			return "", "", false, nil
		}
		return "2 clients failed", "desk-7 failed: disk full", true, nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ts.srv.runDigests(ctx, makeDigest, func() time.Time { return clock }, func(d time.Duration) <-chan time.Time {
			waits <- d
			return ticks
		})
	}()
	// runUntil answers the loop's waits, moving the clock by each, until
	// it makes a digest; it returns the waits.
	runUntil := func() (period, []time.Duration) {
		t.Helper()
		var ws []time.Duration
		for {
			select {
			case p := <-periods:
				return p, ws
			case d := <-waits:
				ws = append(ws, d)
				clock = clock.Add(d)
				ticks <- clock
			case <-time.After(10 * time.Second):
				t.Fatalf("no digest made; waits %v", ws)
			}
		}
	}
	// First turn: 07:30 is 90 minutes away, looked at again after an hour.
	p, ws := runUntil()
	if len(ws) != 2 || ws[0] != time.Hour || ws[1] != 30*time.Minute {
		t.Errorf("waits %v, want 1h then 30m", ws)
	}
	if !p.until.Equal(clock) || !p.since.Equal(clock.Add(-24*time.Hour)) {
		t.Errorf("first period %v..%v, want the last day", p.since, p.until)
	}
	wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer wcancel()
	msgs, err := smtp.Wait(wctx, 1)
	if err != nil {
		t.Fatalf("no digest mailed: %v\n%s", err, ts.logs)
	}
	if msgs[0].Subject != "2 clients failed" || len(msgs[0].To) != 1 || msgs[0].To[0] != "ti@example.com" || !strings.Contains(msgs[0].Body, "desk-7 failed: disk full") {
		t.Errorf("digest = %q to %v: %q", msgs[0].Subject, msgs[0].To, msgs[0].Body)
	}
	first := clock

	// The next day is quiet: nothing mailed, and the period starts
	// where the first ended, 24 hours later.
	quiet = true
	p, ws = runUntil()
	if !p.since.Equal(first) || !clock.Equal(first.Add(24*time.Hour)) {
		t.Errorf("second period starts %v at %v (waits %v), want %v a day later", p.since, clock, ws, first)
	}
	<-waits
	cancel()
	<-done
	if n := len(smtp.Messages()); n != 1 {
		t.Errorf("%d mails, want 1 (a quiet day sends none)", n)
	}
	// A restart reads where the last period ended.
	if got := readDigestState(state, time.Time{}); !got.Equal(clock) {
		t.Errorf("digest.json says %v, want %v", got, clock)
	}
}
