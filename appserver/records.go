package appserver

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/clientdb"
)

// The client records: every sync's outcome, written by the running
// server to STATE/clients.db (package clientdb) and read by the console,
// the metrics and `appserver clients`. The file is the administrator's
// view, never the service: a locked, full or corrupt file is logged and
// the records wait in memory (bounded) while clients are served as ever.

// recordsClose bounds the wait for queued records at the server's stop.
const recordsClose = 5 * time.Second

// openRecords opens the client records for Serve.
func (s *Server) openRecords(ctx context.Context) *clientdb.DB {
	cfg := s.conf()
	// Sessions still finishing after ctx ends report too: the writer
	// stops at closeRecords, once they are done.
	opt := s.recordsOptions
	opt.KeepDays = cfg.Status.KeepDays
	db := clientdb.Open(context.WithoutCancel(ctx), clientsDBFile(s.state), s.log, opt)
	s.records.Store(db)
	return db
}

// rememberWithin bounds the reports the server reads back at its start
// to know one sent again (see recentReports): a client sends a report it
// kept at its next connection, within days.
const rememberWithin = 30 * 24 * time.Hour

// rememberReports reads the ids of the latest reports from db into
// s.reports, once the file is open (in the background, as it opens), so
// that a report sent again after a restart is not counted anew in the
// metrics either (the file itself records it once in any case). A file
// that does not open within a minute is left alone.
func (s *Server) rememberReports(ctx context.Context, db *clientdb.DB) {
	deadline := time.Now().Add(time.Minute)
	for {
		keys, err := db.RecentReports(ctx, time.Now().Add(-rememberWithin), maxReportsKept)
		if err == nil {
			s.reports.seed(keys)
			return
		}
		if time.Now().After(deadline) {
			s.log.Info("client records: the ids of the latest reports were not read; a report sent again may be counted twice in the metrics", "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// closeRecords writes what is queued, for a while, and closes the file.
func (s *Server) closeRecords(db *clientdb.DB) {
	ctx, cancel := context.WithTimeout(context.Background(), recordsClose)
	defer cancel()
	if err := db.Close(ctx); err != nil {
		s.log.Error("client records: not all were written", "file", db.Path(), "err", err)
	}
}

// recordSync is the sink of every outcome (see outcome.go): the client
// records. It never blocks: the records are queued and written by
// clientdb's own goroutine.
func (s *Server) recordSync(r outcomeRecord) {
	db := s.records.Load()
	if db == nil {
		return // not serving: no session can end
	}
	db.Record(clientdb.Sync{ClientID: r.ClientID, Host: r.Host, User: r.User, OS: r.OS, Path: r.Path, Addr: r.Addr,
		Build: r.Build, Release: r.Release, Ring: r.Ring, At: r.At, Reported: r.Reported, Outcome: r.Outcome,
		Step: r.Step, Reason: r.Reason, Files: int(r.Files), Bytes: int64(r.Bytes), Duration: r.Duration,
		Supersedes: r.Supersedes, ReportID: r.ReportID})
}

// maxClientSeries bounds the {build, os} pairs appserver_clients
// exports: a build is what a client says, and a script making up builds
// must not make up series without end. The pairs with the fewest clients
// past it are counted as build "other".
const maxClientSeries = 100

// clientCounts is the clients per build and OS, for the metrics.
func (s *Server) clientCounts(ctx context.Context) (map[[2]string]int, error) {
	db := s.records.Load()
	if db == nil {
		return nil, errNoRecords
	}
	sum, err := db.Summary(ctx, time.Time{})
	if err != nil {
		return nil, withHealth(db, err)
	}
	pairs := slices.Clone(sum.BuildOS)
	slices.SortStableFunc(pairs, func(a, b clientdb.BuildOS) int { return cmp.Compare(b.N, a.N) })
	out := make(map[[2]string]int, min(len(pairs), maxClientSeries))
	for i, b := range pairs {
		k := [2]string{b.Build, b.OS}
		if i >= maxClientSeries-len(knownOSes) {
			k[0] = "other"
		}
		out[k] += b.N
	}
	return out, nil
}

// knownOSes are the OSes a client may name; one "other" series each is
// kept room for.
var knownOSes = []string{"windows", "linux", "darwin"}

// countClients returns how many clients of osName each release number
// has, from the client records in state: none before the first report,
// an error naming the file when it cannot be read.
func countClients(state, osName string) (map[uint64]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := clientdb.OpenReadOnly(ctx, clientsDBFile(state))
	var e *clientdb.Error
	if errors.As(err, &e) && e.Kind == clientdb.KindMissing {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.ReleaseCounts(ctx, osName)
}
