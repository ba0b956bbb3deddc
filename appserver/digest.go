package appserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/erpupdate/smartsync/internal/termtext"
)

// The daily digest: once a day at [STATUS] DigestAt, the clients that
// failed or went stale since the last digest are mailed to [STATUS]
// Notify; a quiet day sends nothing. The time of the last digest is kept
// in STATE/digest.json, so that a restart neither repeats nor skips one.

// digestFile is where the time of the last digest is kept.
func digestFile(state string) string { return filepath.Join(state, "digest.json") }

type digestState struct {
	Last time.Time `json:"last"` // the end of the period the last digest covered
}

// nextDigest is the first time of day at (an offset from local
// midnight) strictly after t.
func nextDigest(t time.Time, at time.Duration) time.Time {
	y, m, d := t.Date()
	next := time.Date(y, m, d, int(at/time.Hour), int(at%time.Hour/time.Minute), 0, 0, t.Location())
	if !next.After(t) {
		next = time.Date(y, m, d+1, int(at/time.Hour), int(at%time.Hour/time.Minute), 0, 0, t.Location())
	}
	return next
}

// readDigestState returns the end of the last digest's period, or
// fallback when there was none (or its record cannot be read: the next
// digest then covers the last day only).
func readDigestState(state string, fallback time.Time) time.Time {
	b, err := os.ReadFile(digestFile(state))
	if err != nil {
		return fallback
	}
	var st digestState
	if json.Unmarshal(b, &st) != nil || st.Last.IsZero() || st.Last.After(time.Now().Add(time.Hour)) {
		return fallback
	}
	return st.Last
}

func writeDigestState(state string, last time.Time) error {
	b, err := json.Marshal(digestState{Last: last})
	if err != nil {
		return err
	}
	if err := atomicfile.Write(digestFile(state), b, 0o644); err != nil {
		return fmt.Errorf("recording the digest's time: %w", err)
	}
	return nil
}

// digestMaker makes the digest of the period since..until: its subject
// and body, and whether there is anything to say.
type digestMaker func(ctx context.Context, since, until time.Time) (subject, body string, any bool, err error)

// runDigests sends the digests until ctx ends. It reads [STATUS] at each
// turn, so a reload changes the time and the address. now and after are
// the clock (time.Now and time.After outside tests).
func (s *Server) runDigests(ctx context.Context, makeDigest digestMaker, now func() time.Time, after func(time.Duration) <-chan time.Time) {
	for {
		cfg := s.conf()
		t := now()
		// Looked at again at least hourly, so that a reload's new
		// DigestAt is kept the same day.
		wait, due := nextDigest(t, cfg.Status.DigestAt).Sub(t), true
		if wait > digestRecheck {
			wait, due = digestRecheck, false
		}
		select {
		case <-ctx.Done():
			return
		case <-after(wait):
		}
		if !due {
			continue
		}
		cfg = s.conf()
		if cfg.Status.Notify == "" || cfg.Mail.Host == "" {
			continue
		}
		until := now()
		since := readDigestState(s.state, until.Add(-24*time.Hour))
		subject, body, any, err := makeDigest(ctx, since, until)
		if err != nil {
			s.log.Error("making the daily digest", "err", err)
			continue
		}
		if any {
			s.mailStatus(subject, body)
		} else {
			s.log.Info("daily digest: no client failed or went stale; nothing mailed", "since", since.Format(time.RFC3339))
		}
		if err := writeDigestState(s.state, until); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("the next digest may repeat this one", "err", err)
		}
	}
}

// digestRecheck is how long, at most, the digest's loop waits before it
// reads [STATUS] DigestAt again.
const digestRecheck = time.Hour

// digestShown bounds the lines of each list in a digest mail.
const digestShown = 50

// makeDigest is the digest of the client records: the failed syncs and
// the clients gone stale in since..until.
func (s *Server) makeDigest(ctx context.Context, since, until time.Time) (subject, body string, any bool, err error) {
	db := s.records.Load()
	if db == nil {
		return "", "", false, errNoRecords
	}
	cfg := s.conf()
	// What waits in memory belongs in the digest: a digest without it
	// is not sent, and the period stays open for the next turn.
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = db.Flush(fctx)
	cancel()
	if err != nil {
		return "", "", false, fmt.Errorf("the records held in memory cannot be written: %w", err)
	}
	d, err := db.Digest(ctx, since, until, cfg.Status.StaleAfter())
	if err != nil {
		return "", "", false, withHealth(db, err)
	}
	if d.Empty() {
		return "", "", false, nil
	}
	host, _ := os.Hostname()
	var parts []string
	if d.Failed > 0 {
		parts = append(parts, plural(d.Failed, "failed sync", "failed syncs"))
	}
	if d.Stale > 0 {
		parts = append(parts, plural(d.Stale, "client gone stale", "clients gone stale"))
	}
	subject = fmt.Sprintf("appserver on %s: %s since %s", host, strings.Join(parts, ", "), since.Local().Format("2006-01-02 15:04"))
	var b strings.Builder
	fmt.Fprintf(&b, "The workstations' syncs from %s to %s.\n", since.Local().Format("2006-01-02 15:04"), until.Local().Format("2006-01-02 15:04"))
	if d.Failed > 0 {
		fmt.Fprintf(&b, "\n%s:\n", plural(d.Failed, "failed sync", "failed syncs"))
		for i, f := range d.Failures {
			if i == digestShown {
				fmt.Fprintf(&b, "  ... and %d more: appserver clients --failed\n", d.Failed-digestShown)
				break
			}
			reason := strings.Trim(f.Step+": "+failureReason(f.Outcome, f.Reason), ": ")
			fmt.Fprintf(&b, "  %s  %s (%s, %s) on build %s: %s %s\n", f.At.Local().Format("2006-01-02 15:04"),
				orNone(f.Host), orNone(f.User), f.OS, orNone(f.Build), f.Outcome, termtext.Line(reason, 200))
		}
	}
	if d.Stale > 0 {
		fmt.Fprintf(&b, "\n%s (not seen for %d days):\n", plural(d.Stale, "client gone stale", "clients gone stale"), cfg.Status.StaleDays)
		for i, c := range d.NewlyStale {
			if i == digestShown {
				fmt.Fprintf(&b, "  ... and %d more: appserver clients --stale %dd\n", d.Stale-digestShown, cfg.Status.StaleDays)
				break
			}
			fmt.Fprintf(&b, "  %s (%s, %s) on build %s, last seen %s\n", orNone(c.Host), orNone(c.User), c.OS, orNone(c.Build), c.LastSeen.Local().Format("2006-01-02 15:04"))
		}
	}
	fmt.Fprintf(&b, "\nappserver clients --config %s shows every workstation; so does the web console (%s).\n", cfg.File, consoleURL(cfg))
	return subject, b.String(), true, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
