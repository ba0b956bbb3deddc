package appserver

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/erpupdate/smartsync/appserver/internal/clientdb"
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
	// Supersedes is, for a late report of a sync the server recorded as
	// cut (interrupted, step transfer), when that cut ended: the
	// client's report replaces it. Zero otherwise.
	Supersedes time.Time
	Outcome    string // syncproto.Outcome's name: "updated", "failed", "interrupted" ...
	Step       string // the step that failed or was interrupted
	Reason     string
	Files      uint32
	Bytes      uint64
	Duration   time.Duration
	// ReportID is the client's Report.ID, 0 for the server's own account
	// of a cut session (and from no client of this version).
	ReportID uint64
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
	// recorded is when each client's last recorded cut ended: the
	// client's own report of that sync, kept and sent at its next
	// connection, then replaces the server's account (see supersedes).
	recorded map[string]time.Time
}

// Bounds of the reports of earlier syncs.
const (
	// maxLateReports bounds the reports of earlier syncs a session may
	// send (a client keeps 8): past it the session is a flood.
	maxLateReports = 16
	// cutMatch is how far a client's report of a cut sync may be from
	// the cut's end, the two clocks disagreeing, and still be taken for
	// the same sync.
	cutMatch = 10 * time.Minute
	// maxCutsKept bounds the cuts remembered; past it the oldest week's
	// are forgotten.
	maxCutsKept = 10_000
	// maxReportsKept is how many reports' ids the server remembers to
	// know a report sent again (its ReportAck lost) before it reaches
	// the records, which know it too (clientdb): enough for every
	// workstation of a large site's day.
	maxReportsKept = 16_384
)

// reportKey names one sync of one client: its id and Report.ID, as the
// records name it too.
type reportKey = clientdb.ReportKey

// recentReports remembers the latest reports the server took, so that one
// delivered again is neither logged as new nor counted twice. It is safe
// for concurrent use.
type recentReports struct {
	mu    sync.Mutex
	seen  map[reportKey]struct{}
	order []reportKey // a ring of the keys in seen, oldest at next
	next  int
}

// seed puts keys, read back from the records at the server's start,
// oldest first, before the reports taken since the start: when there are
// more than the ring holds, the oldest of keys go first.
func (rr *recentReports) seed(keys []reportKey) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	cur := slices.Concat(rr.order[rr.next:], rr.order[:rr.next]) // oldest first
	all := make([]reportKey, 0, len(keys)+len(cur))
	seen := make(map[reportKey]struct{}, cap(all))
	for _, k := range slices.Concat(keys, cur) {
		if _, dup := seen[k]; !dup && k.ID != 0 {
			seen[k] = struct{}{}
			all = append(all, k)
		}
	}
	// A key taken since the start that was also read back keeps its
	// first place: it is as old as its first report.
	if len(all) > maxReportsKept {
		for _, k := range all[:len(all)-maxReportsKept] {
			delete(seen, k)
		}
		all = all[len(all)-maxReportsKept:]
	}
	rr.order, rr.next, rr.seen = all, 0, seen
}

// add remembers the report id of client and reports whether it was new.
// A report without an id is always new.
func (rr *recentReports) add(client string, id uint64) bool {
	if id == 0 {
		return true
	}
	k := reportKey{Client: client, ID: id}
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if _, ok := rr.seen[k]; ok {
		return false
	}
	if rr.seen == nil {
		rr.seen = make(map[reportKey]struct{})
	}
	if len(rr.order) < maxReportsKept {
		rr.order = append(rr.order, k)
	} else {
		delete(rr.seen, rr.order[rr.next])
		rr.order[rr.next] = k
		rr.next = (rr.next + 1) % maxReportsKept
	}
	rr.seen[k] = struct{}{}
	return true
}

// lateAt is when a late report says its sync ended, as the server
// believes it: never after the report came, nor more than a year before
// (a workstation's clock gone wrong must not make a row that never ages
// nor hides the outcomes that follow).
func lateAt(at int64, reported time.Time) time.Time {
	t := time.Unix(at, 0)
	if t.After(reported) || t.Before(reported.AddDate(-1, 0, 0)) {
		return reported
	}
	return t
}

// supersedes returns the end of the cut the server recorded of the sync
// that the client's late report, ended at at, tells of; zero when none.
// It forgets the cut: one report replaces it.
func (c *outcomeCuts) supersedes(id string, at time.Time, grace time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ended, ok := c.recorded[id]
	if !ok || at.Before(ended.Add(-grace-cutMatch)) || at.After(ended.Add(cutMatch)) {
		return time.Time{}
	}
	delete(c.recorded, id)
	return ended
}

// remember records that the cut of client id, ended then, was recorded.
func (c *outcomeCuts) remember(id string, ended time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.recorded == nil {
		c.recorded = map[string]time.Time{}
	}
	if len(c.recorded) >= maxCutsKept {
		for k, t := range c.recorded {
			if time.Since(t) > 7*24*time.Hour {
				delete(c.recorded, k)
			}
		}
		if len(c.recorded) >= maxCutsKept {
			return // a flood of cuts: their late reports are recorded twice
		}
	}
	c.recorded[id] = ended
}

// recordOutcome logs r, the report of a sync of the client of ss that
// the server had at reported, and hands it to the sink. Failures and
// interruptions are logged at WARN, the rest at INFO.
func (s *Server) recordOutcome(ss *session, r syncproto.Report, reported time.Time) {
	if r.At == 0 {
		s.reported(ss.hello.ClientID)
	}
	if !s.reports.add(ss.hello.ClientID, r.ID) {
		// The client did not have the ReportAck of this report and
		// sent it again: it was logged, counted and recorded already.
		s.log.Info("a report sent again is not recorded twice", "id", ss.hello.ClientID, "host", ss.hello.Host,
			"report", r.ID, "outcome", r.Outcome.String(), "client", ss.raw.RemoteAddr().String())
		return
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
		Duration: time.Duration(r.Duration) * time.Millisecond, ReportID: r.ID,
	}
	if r.At != 0 {
		rec.At, rec.Late = lateAt(r.At, reported), true
		grace := s.cuts.grace
		if grace <= 0 {
			grace = defaultCutGrace
		}
		if r.Outcome == syncproto.OutcomeInterrupted || r.Outcome == syncproto.OutcomeFailed {
			rec.Supersedes = s.cuts.supersedes(rec.ClientID, rec.At, grace)
		}
	} else {
		rec.Release = ss.release
		if r.Outcome == syncproto.OutcomeUpdated && r.Build != ss.releaseBuild {
			// A client that says it installed another build than the
			// release it was served is not on that release.
			rec.Release = 0
		}
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
	if !rec.Supersedes.IsZero() {
		attrs = append(attrs, "replaces_cut_at", rec.Supersedes.UTC().Format(time.RFC3339))
	}
	s.log.Log(context.Background(), level, msg, attrs...)
	if rec.Supersedes.IsZero() {
		// A report that replaces the server's account of a cut sync is
		// that sync, counted once already.
		s.metrics.sync(rec.Outcome)
	}
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
		c.remember(id, ended)
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
