package appserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/clientdb"
	"github.com/erpupdate/smartsync/appserver/internal/console"
	"github.com/erpupdate/smartsync/appserver/internal/rollout"
	"github.com/erpupdate/smartsync/syncproto"
)

// consoleSource is the console's view of the server: the client records,
// the rollouts, the release history, the self-update and the log.
type consoleSource struct {
	s       *Server
	ring    *logRing // nil: no log lines kept
	started time.Time
}

// errNoRecords is the console's answer while Serve has not opened the
// client records.
var errNoRecords = errors.New("the client records are not open (the server is not serving)")

func (c *consoleSource) db() (*clientdb.DB, error) {
	db := c.s.records.Load()
	if db == nil {
		return nil, errNoRecords
	}
	return db, nil
}

// withHealth adds the records file's trouble to a query's error: the
// administrator sees why the page is empty, or old.
func withHealth(db *clientdb.DB, err error) error {
	if err == nil {
		return nil
	}
	if h := db.Err(); h != nil {
		return fmt.Errorf("%w (the records file: %v; %d reports wait in memory)", err, h, db.Queued())
	}
	return err
}

func (c *consoleSource) Overview(ctx context.Context) (console.Overview, error) {
	db, err := c.db()
	if err != nil {
		return console.Overview{}, err
	}
	cfg := c.s.conf()
	now := time.Now()
	sum, err := db.Summary(ctx, now.Add(-cfg.Status.StaleAfter()))
	if err != nil {
		return console.Overview{}, withHealth(db, err)
	}
	o := console.Overview{Clients: sum.Clients, StaleDays: cfg.Status.StaleDays}
	for _, b := range sum.BuildOS {
		o.Builds = append(o.Builds, console.BuildCount{Build: b.Build, OS: b.OS, Clients: b.N})
	}
	for _, f := range sum.Failures {
		o.Failures = append(o.Failures, console.Failure{ClientID: f.ID, Host: f.Host, User: f.User, OS: f.OS,
			Build: f.Build, Step: f.Step, Reason: failureReason(f.Outcome, f.Reason), When: f.LastSync})
	}
	for _, st := range sum.StaleList {
		o.Stale = append(o.Stale, console.StaleClient{ClientID: st.ID, Host: st.Host, User: st.User, OS: st.OS, Build: st.Build, LastSeen: st.LastSeen})
	}
	o.Rollouts = c.rollouts(now)
	if h := db.Err(); h != nil {
		// The file reads but cannot be written (locked by another
		// program, full): the reports since wait in memory.
		o.Behind = fmt.Sprintf("The client records cannot be written now, so this page may be behind: %d reports wait in memory (%v). The server tries again every 30 s; see its log.", db.Queued(), h)
	}
	return o, nil
}

// failureReason is what the console shows of a failure: an interrupted
// sync says so even without a reason.
func failureReason(outcome, reason string) string {
	if reason == "" && outcome == clientdb.OutcomeInterrupted {
		return "interrupted"
	}
	return reason
}

// rollouts is the progress of the staged rollout of every OS served.
func (c *consoleSource) rollouts(now time.Time) []console.Rollout {
	var out []console.Rollout
	for _, osName := range slices.Sorted(maps.Keys(c.s.Indexes())) {
		st := c.s.rollouts.of(osName).Status(now)
		// Without a pilot ring every release goes to everyone at once:
		// there is no rollout to watch, unless one was halted or is
		// still in its pilot phase from before the ring was removed.
		if st.Phase == rollout.PhaseNone || len(st.Policy.Pilot) == 0 && st.Phase != rollout.PhasePilot && st.Phase != rollout.PhaseHalted {
			continue
		}
		state := console.RolloutRunning
		switch st.Phase {
		case rollout.PhaseHalted:
			state = console.RolloutHalted
		case rollout.PhasePromoted, rollout.PhaseComplete:
			state = console.RolloutPromoted
		}
		for _, g := range []struct {
			name string
			ring rollout.Ring
		}{{"pilot", st.Pilot}, {"everyone", st.Everyone}} {
			out = append(out, console.Rollout{OS: osName, Ring: g.name, Release: st.Release, Build: st.Build,
				Successes: g.ring.Successes, Failures: g.ring.Failures, Pending: max(0, g.ring.Clients-g.ring.Successes-g.ring.Failures),
				State: state})
		}
	}
	return out
}

func (c *consoleSource) Clients(ctx context.Context, f console.ClientFilter) (console.ClientList, error) {
	db, err := c.db()
	if err != nil {
		return console.ClientList{}, err
	}
	cf := clientdb.Filter{Failed: f.FailedOnly, Build: f.Build, OS: f.OS, Search: f.Search, Sort: f.Sort, Desc: f.Desc, Limit: f.Limit, Offset: f.Offset}
	if f.StaleDays > 0 {
		cf.StaleSince = time.Now().Add(-time.Duration(f.StaleDays) * 24 * time.Hour)
	}
	total, err := db.Count(ctx, cf)
	if err != nil {
		return console.ClientList{}, withHealth(db, err)
	}
	list, err := db.Clients(ctx, cf)
	if err != nil {
		return console.ClientList{}, withHealth(db, err)
	}
	out := console.ClientList{Total: total, Clients: make([]console.ClientRow, 0, len(list))}
	for _, cl := range list {
		out.Clients = append(out.Clients, clientRow(cl))
	}
	return out, nil
}

func clientRow(cl clientdb.Client) console.ClientRow {
	return console.ClientRow{ID: cl.ID, Host: cl.Host, User: cl.User, OS: cl.OS, Build: cl.Build, Release: cl.Release,
		Ring: cl.Ring, LastSeen: cl.LastSeen, Outcome: cl.Outcome, Failed: cl.Failed(), Step: cl.Step,
		Reason: failureReason(cl.Outcome, cl.Reason)}
}

// historyShown is how many syncs a client's page shows.
const historyShown = 100

func (c *consoleSource) Client(ctx context.Context, id string) (console.ClientDetail, error) {
	db, err := c.db()
	if err != nil {
		return console.ClientDetail{}, err
	}
	cl, hist, err := db.Client(ctx, id, historyShown)
	if errors.Is(err, clientdb.ErrNotFound) {
		return console.ClientDetail{}, fmt.Errorf("client %q: %w", id, console.ErrNotFound)
	}
	if err != nil {
		return console.ClientDetail{}, withHealth(db, err)
	}
	d := console.ClientDetail{ClientRow: clientRow(cl), InstallPath: cl.Path, FirstSeen: cl.FirstSeen}
	for _, h := range hist {
		failed := h.Outcome == clientdb.OutcomeFailed || h.Outcome == clientdb.OutcomeInterrupted
		d.History = append(d.History, console.SyncRecord{When: h.At, Outcome: h.Outcome, Failed: failed, Step: h.Step,
			Reason: failureReason(h.Outcome, h.Reason), Build: h.Build, Release: h.Release, Files: h.Files, Bytes: h.Bytes, Duration: h.Duration})
	}
	return d, nil
}

func (c *consoleSource) Releases(ctx context.Context) ([]console.Release, error) {
	list, err := ListReleases(c.s.state)
	if err != nil {
		return nil, err
	}
	out := make([]console.Release, 0, len(list))
	for _, r := range list {
		out = append(out, console.Release{OS: r.OS, Number: r.Number, Build: r.Build, Date: r.Published, Files: r.Files,
			Bytes: r.Bytes, Signed: r.Signed, Expires: r.Expires, Clients: max(r.Clients, 0), Served: r.Served})
	}
	return out, nil
}

func (c *consoleSource) SelfUpdate(ctx context.Context) (console.SelfUpdate, error) {
	st := c.s.upd.status()
	su := console.SelfUpdate{Build: c.s.self.Build, Started: c.started}
	if su.Build == "" {
		su.Build = st.RunningBuild
	}
	desc := st.State.String()
	if st.OldBuild != "" || st.NewBuild != "" {
		desc += fmt.Sprintf(": %s to %s", orNone(st.OldBuild), orNone(st.NewBuild))
	}
	if st.Message != "" {
		desc += " (" + st.Message + ")"
	}
	switch st.State {
	case syncproto.StateNone:
	case syncproto.StateScheduled, syncproto.StatePreparing, syncproto.StateCountdown, syncproto.StateSwitching:
		su.InProgress = desc
	default:
		su.LastResult = desc
		if st.When > 0 {
			su.LastWhen = time.Unix(st.When, 0)
		}
	}
	return su, nil
}

func (c *consoleSource) RecentLog(ctx context.Context, n int) ([]console.LogLine, error) {
	if c.ring == nil {
		return nil, nil
	}
	lines := c.ring.Recent(n)
	out := make([]console.LogLine, 0, len(lines))
	for _, l := range lines {
		out = append(out, console.LogLine{Time: l.Time, Level: l.Level.String(), Message: l.Message, Attrs: l.Attrs})
	}
	return out, nil
}

// consoleHandler is the web console of the server: its pages, its API
// and its metrics, with the [ADMIN] login beyond loopback. ring gives
// the recent log lines (nil: none).
func (s *Server) consoleHandler(ring *logRing) (http.Handler, error) {
	cfg := s.conf()
	host, _ := os.Hostname()
	c, err := console.New(console.Options{
		Source:       &consoleSource{s: s, ring: ring, started: time.Now()},
		Log:          s.log,
		RequireLogin: !cfg.HTTP.Loopback(),
		Login: func(ctx context.Context, user, password string) error {
			return CheckPassword(s.conf(), user, password)
		},
		// The admin channel's: both count the same failures.
		Throttle: &s.logins,
		Metrics:  s.MetricsHandler(),
		Name:     host,
	})
	if err != nil {
		return nil, err
	}
	s.console.Store(c)
	return c, nil
}

// serveConsole serves the console on [HTTP] Listen until ctx ends (in
// the background: a console that cannot listen is logged and the
// updates are served all the same); wait returns once it has stopped.
func (s *Server) serveConsole(ctx context.Context, ring *logRing) (wait func()) {
	cfg := s.conf()
	if cfg.HTTP.Listen == "" {
		s.log.Info("web console off ([HTTP] Listen=off)")
		return func() {}
	}
	h, err := s.consoleHandler(ring)
	if err != nil {
		s.log.Error("the web console is not served; the updates are", "err", err)
		return func() {}
	}
	var tlsConf *tls.Config
	if !cfg.HTTP.Loopback() {
		tlsConf = s.tlsConfig
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		cs := startConsole(ctx, s.log, cfg.HTTP.Listen, listenRetry, tlsConf, h)
		if cs == nil {
			return
		}
		s.consoleAddr.Store(cs.Addr().String())
		<-ctx.Done()
		cs.stop()
	}()
	return func() { <-done }
}
