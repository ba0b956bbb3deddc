// Package clientdb is the server's record of every client: one row per
// client id with its latest state, and a history of its syncs, kept in an
// embedded SQLite file (modernc.org/sqlite, pure Go) in the state folder.
//
// The record is never allowed to stop updates from being served. Open
// never fails; Record never blocks: reports are queued in memory (bounded)
// and written in batches by one writer goroutine, which keeps them queued
// while the file is locked, full or corrupt, says so once (Err, and one
// ERROR log line per episode), retries, and writes them when the file
// works again. Reads go through a separate small pool of read-only
// connections, so the console reads while the writer waits on a lock.
//
// The `appserver clients` command opens the same file with OpenReadOnly
// while the server runs (the file is in WAL mode).
package clientdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite" // the "sqlite" database/sql driver
)

// lowerFunc is SQL's smartsync_lower(text): strings.ToLower, which knows
// Unicode's cases, where SQLite's lower knows ASCII's only. It is
// registered with the driver, for every connection it opens.
const lowerFunc = "smartsync_lower"

func init() {
	sqlite.MustRegisterDeterministicScalarFunction(lowerFunc, 1, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		switch v := args[0].(type) {
		case string:
			return strings.ToLower(v), nil
		case []byte:
			return strings.ToLower(string(v)), nil
		}
		return args[0], nil // NULL, a number: as it is
	})
}

// The outcomes of a sync, as reported by the client.
const (
	OutcomeUpdated     = "updated"
	OutcomeUpToDate    = "up-to-date"
	OutcomeFailed      = "failed"
	OutcomeDeclined    = "declined"
	OutcomeChecked     = "checked"
	OutcomeInterrupted = "interrupted"
)

// Sync is one client's report of one sync, as the server got it.
type Sync struct {
	ClientID string
	Host     string
	User     string
	OS       string
	Path     string // the install folder on the client
	Addr     string // the client's address as the server saw it
	Build    string // the build installed after the sync
	Release  uint64 // the release's history number, 0 if none
	Ring     string // the rollout ring, "" if no rollout
	At       time.Time
	// Reported is when the server got the report; later than At for a
	// report the client kept and sent at its next connection. Zero means At.
	Reported time.Time
	Outcome  string // one of the Outcome constants
	Step     string // the step that failed, if it failed
	Reason   string // why it failed or was declined
	Files    int
	Bytes    int64
	Duration time.Duration
	// Supersedes, when not zero, is the At of the server's own account
	// of a sync that was cut (outcome interrupted, step "transfer"),
	// which this report, the client's of the same sync delivered late,
	// replaces: that row goes, and the client's state is this report's
	// if it was the cut's.
	Supersedes time.Time
	// ReportID is the client's id of the sync (syncproto.Report.ID),
	// 0 when it has none: a sync already recorded with the same client
	// and ReportID is not recorded again (its report was sent twice).
	ReportID uint64
}

// Client is one client's latest state.
type Client struct {
	ID        string
	Host      string
	User      string
	OS        string
	Path      string
	Addr      string
	Build     string
	Release   uint64 // the release installed: of its last update or up-to-date sync (a failure keeps it)
	Ring      string
	FirstSeen time.Time // the earliest sync's end
	LastSeen  time.Time // the latest time the server heard from it
	// LastSync is when the sync whose outcome follows ended.
	LastSync    time.Time
	Outcome     string
	Step        string
	Reason      string
	Files       int
	Bytes       int64
	Duration    time.Duration
	LastSuccess time.Time // zero if it never updated or was up to date
}

// Failed tells whether the client's last outcome was a failure (failed or
// interrupted).
func (c Client) Failed() bool {
	return c.Outcome == OutcomeFailed || c.Outcome == OutcomeInterrupted
}

// Options tunes a DB; the zero value takes the defaults.
type Options struct {
	// QueueMax bounds the reports kept in memory while they wait to be
	// written (default 10,000); past it the oldest are dropped.
	QueueMax int
	// RetryEvery is how often a failing file is tried again (default 30 s).
	RetryEvery time.Duration
	// KeepDays is how long sync history is kept (default 90); client
	// rows are kept for ever.
	KeepDays int
	// BusyTimeout is how long one write waits for another program's lock
	// before the write counts as failed (default 5 s).
	BusyTimeout time.Duration
	// BatchMax bounds the reports written in one transaction (default 500).
	BatchMax int
	// MaxPageCount, if positive, caps the file at that many pages
	// (PRAGMA max_page_count; a page is 4 KiB); a write past it fails as
	// "full". Zero means no cap.
	MaxPageCount int
}

// The defaults of Options.
const (
	DefaultQueueMax    = 10_000
	DefaultRetryEvery  = 30 * time.Second
	DefaultKeepDays    = 90
	DefaultBusyTimeout = 5 * time.Second
	DefaultBatchMax    = 500
)

func (o Options) withDefaults() Options {
	if o.QueueMax <= 0 {
		o.QueueMax = DefaultQueueMax
	}
	if o.RetryEvery <= 0 {
		o.RetryEvery = DefaultRetryEvery
	}
	if o.KeepDays <= 0 {
		o.KeepDays = DefaultKeepDays
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = DefaultBusyTimeout
	}
	if o.BatchMax <= 0 {
		o.BatchMax = DefaultBatchMax
	}
	return o
}

// Memory: SQLite's page cache is per connection; these cap the caches
// at 2 MiB in all. The open database with 10,000 clients measured about
// 8 MiB of resident memory, most of it SQLite's own code.
const (
	writerCacheKiB = 1024
	readerCacheKiB = 512
	readerConns    = 2
)

// Bounds on the strings of one report, so a client cannot make a row (or
// the queue) large.
const (
	maxField  = 1024
	maxReason = 4096
)

// queued is one report waiting, numbered so the writer can take a batch
// out after it is committed even if the oldest were dropped meanwhile.
type queued struct {
	seq uint64
	s   Sync
}

// DB is the server's client database. Its methods are safe for
// concurrent use.
type DB struct {
	path string
	log  *slog.Logger
	opt  Options

	wake    chan struct{} // a report was queued (buffered 1)
	closing chan struct{} // closed by Close
	done    chan struct{} // closed when the writer has stopped

	closeOnce sync.Once
	closeCtx  context.Context // set before closing is closed

	maxPages atomic.Int64 // the cap to apply on the writer's connection
	failures atomic.Int64 // failed attempts since Open (tests wait on it)

	mu      sync.Mutex
	queue   []queued
	nextSeq uint64
	dropped uint64 // in the current episode, not yet logged
	dropLog bool   // the queue-full warning was logged this episode
	dropAll uint64 // since Open
	err     error  // the current problem, nil when healthy
	// recovered is the problem a write just ended, for healthy to log.
	recovered error
	opened    bool          // the writer has the file open and migrated
	changed   chan struct{} // closed and replaced at every change of state
	w         *sql.DB       // the writer's connection (one); used by the writer goroutine only
	r         *Reader       // the read pool

	pruneReq chan pruneReq // Prune's requests to the writer
}

// Open starts the client database at path (created if missing) and
// returns at once; it never fails. A writer goroutine opens the file,
// migrates its schema, prunes old history, and then writes what Record
// queues; while it cannot (the file is locked, full, corrupt, in a
// missing folder), Err says why and it tries again every
// Options.RetryEvery. The writer stops at Close or when ctx is done
// (after a last write, bounded to a few seconds).
func Open(ctx context.Context, path string, log *slog.Logger, opt Options) *DB {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opt = opt.withDefaults()
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	d := &DB{
		path:     path,
		log:      log,
		opt:      opt,
		wake:     make(chan struct{}, 1),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
		changed:  make(chan struct{}),
		pruneReq: make(chan pruneReq),
	}
	d.maxPages.Store(int64(opt.MaxPageCount))
	go d.run(ctx)
	return d
}

// Path is the database file.
func (d *DB) Path() string { return d.path }

// Err is the current problem with the file (an *Error), nil when the last
// attempt to open or write it worked (and before the first attempt).
func (d *DB) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// Queued is the number of reports waiting to be written.
func (d *DB) Queued() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.queue)
}

// Dropped is the number of reports dropped since Open because the queue
// was full.
func (d *DB) Dropped() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dropAll
}

// Record queues s to be written and returns at once. A report without a
// client id is ignored. When Options.QueueMax reports wait, the oldest is
// dropped (and counted, and logged once per episode).
func (d *DB) Record(s Sync) {
	if s.ClientID == "" {
		d.log.Warn("client record without a client id ignored", "addr", s.Addr, "host", s.Host)
		return
	}
	s = clean(s)
	d.mu.Lock()
	warn, problem := false, d.err
	if len(d.queue) >= d.opt.QueueMax {
		n := len(d.queue) - d.opt.QueueMax + 1
		clear(d.queue[:n])
		d.queue = d.queue[n:]
		d.dropped += uint64(n)
		d.dropAll += uint64(n)
		warn = !d.dropLog
		d.dropLog = true
	}
	d.nextSeq++
	d.queue = append(d.queue, queued{seq: d.nextSeq, s: s})
	d.mu.Unlock()
	if warn {
		d.log.Warn("client records queue is full; dropping the oldest reports until the database works again",
			"file", d.path, "queue_max", d.opt.QueueMax, "problem", errString(problem))
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func errString(err error) string {
	if err == nil {
		return "none"
	}
	return err.Error()
}

// clean bounds s's strings and fills its zero times.
func clean(s Sync) Sync {
	cut := func(v string, n int) string {
		if len(v) <= n {
			return v
		}
		return strings.ToValidUTF8(v[:n], "")
	}
	s.ClientID = cut(s.ClientID, maxField)
	s.Host = cut(s.Host, maxField)
	s.User = cut(s.User, maxField)
	s.OS = cut(s.OS, maxField)
	s.Path = cut(s.Path, maxField)
	s.Addr = cut(s.Addr, maxField)
	s.Build = cut(s.Build, maxField)
	s.Ring = cut(s.Ring, maxField)
	s.Outcome = cut(s.Outcome, maxField)
	s.Step = cut(s.Step, maxField)
	s.Reason = cut(s.Reason, maxReason)
	if s.At.IsZero() && s.Reported.IsZero() {
		s.At = time.Now()
	}
	if s.At.IsZero() {
		s.At = s.Reported
	}
	if s.Reported.IsZero() {
		s.Reported = s.At
	}
	return s
}

// Flush waits until every report queued so far is written, or ctx is
// done, and returns Err (or ctx's error) if some are still queued.
func (d *DB) Flush(ctx context.Context) error {
	d.mu.Lock()
	target := d.nextSeq
	d.mu.Unlock()
	for {
		d.mu.Lock()
		ok := len(d.queue) == 0 || d.queue[0].seq > target
		ch, err := d.changed, d.err
		d.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if err != nil {
				return err
			}
			return fmt.Errorf("client database %s: flush: %w", d.path, ctx.Err())
		case <-d.done:
			return fmt.Errorf("client database %s: flush: closed with %d reports queued: %v", d.path, d.Queued(), errString(d.Err()))
		}
	}
}

// Close stops the writer after it has written what it can before ctx is
// done, and closes the file. It returns an error if reports are left
// unwritten. Close is safe to call more than once.
func (d *DB) Close(ctx context.Context) error {
	d.closeOnce.Do(func() {
		d.mu.Lock()
		d.closeCtx = ctx
		d.mu.Unlock()
		close(d.closing)
	})
	select {
	case <-d.done:
	case <-ctx.Done():
		return fmt.Errorf("client database %s: close: %w (%d reports not written)", d.path, ctx.Err(), d.Queued())
	}
	if n := d.Queued(); n > 0 {
		return fmt.Errorf("client database %s: %d reports not written: %v", d.path, n, errString(d.Err()))
	}
	return nil
}

// reader is the read pool, or an error saying why there is none.
func (d *DB) reader() (*Reader, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.r != nil {
		return d.r, nil
	}
	if d.err != nil {
		return nil, d.err
	}
	return nil, fmt.Errorf("client database %s is not open yet (the server opens it in the background)", d.path)
}

// fileURI is path as a SQLite URI with query q (SQLite's own parameters
// like mode=ro are honoured only in this form).
func fileURI(path string, q url.Values) string {
	p := filepath.ToSlash(path)
	if runtime.GOOS == "windows" && !strings.HasPrefix(p, "/") {
		p = "/" + p // file:///C:/x
	}
	u := url.URL{Scheme: "file", Path: p, RawQuery: q.Encode()}
	if u.Host == "" {
		return "file://" + u.EscapedPath() + "?" + u.RawQuery
	}
	return u.String()
}

// dsn is the URI of path with the per-connection settings.
func dsn(path string, cacheKiB int, busy time.Duration, extra url.Values) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", fmt.Sprintf("cache_size(%d)", -cacheKiB))
	q.Add("_txlock", "immediate")
	for k, vs := range extra {
		for _, v := range vs {
			q.Add(k, v)
		}
	}
	return fileURI(path, q)
}
