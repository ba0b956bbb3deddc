package appserver

import (
	"context"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/erpupdate/smartsync/appserver/internal/rollout"
	"github.com/erpupdate/smartsync/syncproto"
)

// The outcome of every sync reaches the server (see syncproto's
// "Reports" and "Reports delivered late"): the client's report of this
// session, the reports of earlier syncs it could not deliver then, and,
// for a session that fetched and ended without a report, the server's own
// account of it (interrupted, step "transfer"). Each is logged, failures
// and interruptions at WARN, and handed to the sink s.outcomes, where the
// client records are kept.

// outcomeRecord is one sync's outcome, as the sink is handed it.
type outcomeRecord struct {
	ClientID, Host, User, OS string
	Path                     string // the install folder
	Addr                     string // the client's address, IP:port
	Build                    string // the build installed after the sync
	// Release is the published release the session was served, 0 for
	// an update folder, or for a report of an earlier sync (the session
	// that delivers it may be served another).
	Release uint64
	// Ring is the client's ring of the staged rollout ("pilot",
	// "everyone"); "" when releases are not staged, or the session was
	// served none.
	Ring string
	// At is when the sync ended: when the report came, for this
	// session's; what the client says, for an earlier sync's (Late).
	At       time.Time
	Reported time.Time // when the server had the report
	Late     bool      // the report of an earlier sync, delivered late
	Outcome  string    // syncproto.Outcome's name: "updated", "failed", "interrupted" ...
	Step     string    // the step that failed or was interrupted
	Reason   string
	Files    uint32
	Bytes    uint64
	Duration time.Duration
}

// stepTransfer is the step of a session the server saw end without a
// report after it sent a manifest.
const stepTransfer = "transfer"

// defaultCutGrace is how long the server waits, after a session that
// fetched ended without a report, for the client's report on a session
// of its own (a client whose transfer ended early reports so; see
// syncproto's doc) before it records the session as interrupted.
const defaultCutGrace = 15 * time.Second

// outcomeCuts are the sessions cut without a report, each waiting for
// its client's report over the grace.
type outcomeCuts struct {
	mu    sync.Mutex
	byID  map[string]chan struct{} // closed when the client reports
	grace time.Duration            // 0: defaultCutGrace
}

// recordOutcome logs r, the report of a sync of the client of ss that
// the server had at reported, and hands it to the sink. Failures and
// interruptions are logged at WARN, the rest at INFO.
func (s *Server) recordOutcome(ss *session, r syncproto.Report, reported time.Time) {
	if r.At == 0 {
		s.reported(ss.hello.ClientID)
	}
	s.noteOutcome(ss, r, reported)
}

// noteOutcome is recordOutcome, for the server's own account of a session
// too (see sessionCut).
func (s *Server) noteOutcome(ss *session, r syncproto.Report, reported time.Time) {
	rec := outcomeRecord{
		ClientID: ss.hello.ClientID, Host: ss.hello.Host, User: ss.hello.User, OS: ss.hello.OS, Path: ss.hello.Path,
		Addr: ss.raw.RemoteAddr().String(), Build: r.Build, At: reported, Reported: reported,
		Outcome: r.Outcome.String(), Step: r.Step, Reason: r.Message, Files: r.Files, Bytes: r.Bytes,
		Duration: time.Duration(r.Duration) * time.Millisecond,
	}
	if r.At != 0 {
		rec.At, rec.Late = time.Unix(r.At, 0), true
	} else {
		rec.Release = ss.release
		rec.Ring = s.ringOf(ss)
	}
	level, msg := slog.LevelInfo, "sync outcome"
	switch r.Outcome {
	case syncproto.OutcomeFailed:
		level, msg = slog.LevelWarn, "sync failed"
	case syncproto.OutcomeInterrupted:
		level, msg = slog.LevelWarn, "sync interrupted"
	}
	attrs := []any{"id", rec.ClientID, "host", rec.Host, "user", rec.User, "os", rec.OS, "build", rec.Build, "outcome", rec.Outcome}
	if rec.Step != "" || rec.Reason != "" {
		attrs = append(attrs, "step", rec.Step, "reason", rec.Reason)
	}
	attrs = append(attrs, "client", rec.Addr, "path", rec.Path, "files", rec.Files, "bytes", rec.Bytes, "duration", rec.Duration)
	if rec.Release != 0 {
		attrs = append(attrs, "release", rec.Release)
	}
	if rec.Ring != "" {
		attrs = append(attrs, "ring", rec.Ring)
	}
	if rec.Late {
		attrs = append(attrs, "late", true, "at", rec.At.UTC().Format(time.RFC3339))
	}
	s.log.Log(context.Background(), level, msg, attrs...)
	s.metrics.sync(rec.Outcome)
	if s.outcomes != nil {
		s.outcomes(rec)
	}
}

// ringOf is the ring of the staged rollout the client of ss is in, ""
// when releases are not staged or the session was served none.
func (s *Server) ringOf(ss *session) string {
	if ss.release == 0 || s.rollouts == nil {
		return ""
	}
	rs := s.rollouts
	rs.mu.Lock()
	p := rs.policy
	rs.mu.Unlock()
	switch {
	case len(p.Pilot) == 0:
		return ""
	case p.InPilot(rollout.Client{ID: ss.hello.ClientID, Host: ss.hello.Host, Build: ss.hello.ClientBuild}):
		return "pilot"
	}
	return "everyone"
}

// sessionCut records, after the grace, a session that fetched (was sent a
// manifest) and ended without a report, err being why (nil: the client
// closed it), unless its client reports meanwhile.
func (s *Server) sessionCut(ss *session, err error) {
	if ss.outcome != "manifest sent" && ss.outcome != "sending" {
		return
	}
	reason := "the session ended without a report"
	if err != nil {
		reason = err.Error()
	}
	if len(reason) > syncproto.MaxMessage {
		reason = reason[:syncproto.MaxMessage]
		for !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	r := syncproto.Report{Outcome: syncproto.OutcomeInterrupted, Build: ss.hello.ClientBuild, Step: stepTransfer,
		Message: reason, Files: uint32(ss.files), Bytes: uint64(ss.fileByte)}
	ended := time.Now()
	id := ss.hello.ClientID
	reported := make(chan struct{})
	c := &s.cuts
	c.mu.Lock()
	if c.byID == nil {
		c.byID = map[string]chan struct{}{}
	}
	if old := c.byID[id]; old != nil {
		close(old) // one cut a client: the newer is recorded
	}
	c.byID[id] = reported
	grace := c.grace
	c.mu.Unlock()
	if grace <= 0 {
		grace = defaultCutGrace
	}
	s.wg.Go(func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-reported:
			return
		case <-t.C:
		case <-s.stopping:
		}
		c.mu.Lock()
		if c.byID[id] == reported {
			delete(c.byID, id)
		}
		c.mu.Unlock()
		s.noteOutcome(ss, r, ended)
	})
}

// reported tells a cut session of the client id waiting over its grace
// that the client reported: its report says more than the cut.
func (s *Server) reported(id string) {
	c := &s.cuts
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch := c.byID[id]; ch != nil {
		close(ch)
		delete(c.byID, id)
	}
}
