package clientdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// The writer goroutine owns the writer connection: it opens the file,
// migrates, writes the queue in batches, prunes the history daily, and on
// a failure keeps the queue, sets Err, waits Options.RetryEvery and tries
// again (reopening the file after anything but a lock or a full disk, so
// a corrupt file moved aside is replaced by a new one).

// pruneEvery is how often the writer deletes old history.
const pruneEvery = 24 * time.Hour

// stopBudget bounds the last write when Open's ctx is done (Close
// brings its own ctx).
const stopBudget = 5 * time.Second

// pruneReq is a Prune call handed to the writer.
type pruneReq struct {
	ctx   context.Context
	now   time.Time
	reply chan pruneReply
}

type pruneReply struct {
	n   int64
	err error
}

func (d *DB) run(ctx context.Context) {
	defer close(d.done)
	defer d.closeConns()
	wctx := context.Background()
	var applied int64 // the max_page_count set on the writer's connection
	nextPrune := time.Time{}
	for {
		if d.stopped(ctx) {
			d.lastWrite(ctx, &applied)
			return
		}
		if d.w == nil {
			applied = 0
			if err := d.openFile(wctx); err != nil {
				d.fail(err)
				if !d.sleep(ctx, d.opt.RetryEvery) {
					d.lastWrite(ctx, &applied)
					return
				}
				continue
			}
			d.prune(wctx, time.Now())
			nextPrune = time.Now().Add(pruneEvery)
		}
		if !time.Now().Before(nextPrune) {
			d.prune(wctx, time.Now())
			nextPrune = time.Now().Add(pruneEvery)
		}
		n, err := d.writeAll(wctx, &applied)
		if err != nil {
			d.fail(err)
			if k := kindOf(err); k != KindLocked && k != KindFull {
				d.closeConns()
			}
			if !d.sleep(ctx, d.opt.RetryEvery) {
				d.lastWrite(ctx, &applied)
				return
			}
			continue
		}
		d.healthy(n)
		// Idle until there is work.
		t := time.NewTimer(time.Until(nextPrune))
		select {
		case <-d.wake:
		case <-t.C:
		case req := <-d.pruneReq:
			n, err := d.pruneNow(req.ctx, req.now)
			req.reply <- pruneReply{n, err}
		case <-d.closing:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// stopped tells whether Close was called or ctx is done.
func (d *DB) stopped(ctx context.Context) bool {
	select {
	case <-d.closing:
		return true
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

// sleep waits dur (answering Prune with the current error meanwhile) and
// reports false if the writer must stop.
func (d *DB) sleep(ctx context.Context, dur time.Duration) bool {
	t := time.NewTimer(dur)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return true
		case req := <-d.pruneReq:
			req.reply <- pruneReply{0, d.Err()}
		case <-d.closing:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// lastWrite is the writer's last try at the queue before it stops,
// bounded by Close's ctx (or stopBudget when Open's ctx ended).
func (d *DB) lastWrite(ctx context.Context, applied *int64) {
	d.mu.Lock()
	cctx := d.closeCtx
	d.mu.Unlock()
	if cctx == nil {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(context.Background(), stopBudget)
		defer cancel()
	}
	if d.Queued() == 0 {
		return
	}
	if d.w == nil {
		if err := d.openFile(cctx); err != nil {
			d.fail(err)
			return
		}
	}
	n, err := d.writeAll(cctx, applied)
	if err != nil {
		d.fail(err)
		return
	}
	d.healthy(n)
}

// openFile opens the file for writing, sets WAL mode, migrates the schema
// and opens the read pool.
func (d *DB) openFile(ctx context.Context) error {
	// A new file is made private: it names the estate's hosts and users.
	// SQLite gives its -wal and -shm files the same mode.
	if f, err := os.OpenFile(d.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		f.Close()
	}
	w, err := sql.Open("sqlite", dsn(d.path, writerCacheKiB, d.opt.BusyTimeout, nil))
	if err != nil {
		return wrap(d.path, "open", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	var mode string
	if err := w.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode); err != nil {
		w.Close()
		return wrap(d.path, "open", fmt.Errorf("set WAL mode: %w", err))
	}
	if !strings.EqualFold(mode, "wal") {
		w.Close()
		return wrap(d.path, "open", fmt.Errorf("set WAL mode: the file stays in %q mode", mode))
	}
	from, err := migrate(ctx, w, len(migrations))
	if err != nil {
		w.Close()
		return wrap(d.path, "migrate", err)
	}
	switch {
	case from == 0:
		d.log.Info("client database created", "file", d.path, "schema", len(migrations))
	case from != len(migrations):
		d.log.Info("client database schema migrated", "file", d.path, "from", from, "to", len(migrations))
	}
	r, err := sql.Open("sqlite", dsn(d.path, readerCacheKiB, d.opt.BusyTimeout, url.Values{"_pragma": {"query_only(1)"}}))
	if err != nil {
		w.Close()
		return wrap(d.path, "open", err)
	}
	r.SetMaxOpenConns(readerConns)
	r.SetMaxIdleConns(readerConns)
	r.SetConnMaxIdleTime(time.Minute)
	d.mu.Lock()
	d.w = w
	d.r = &Reader{db: r, path: d.path}
	d.opened = true
	d.signalLocked()
	d.mu.Unlock()
	return nil
}

// closeConns closes both pools; the next round reopens the file.
func (d *DB) closeConns() {
	d.mu.Lock()
	w, r := d.w, d.r
	d.w, d.r, d.opened = nil, nil, false
	d.mu.Unlock()
	if w != nil {
		w.Close()
	}
	if r != nil {
		r.db.Close()
	}
}

// signalLocked wakes Flush; d.mu is held.
func (d *DB) signalLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// fail records err as the current problem and logs it at ERROR when it
// starts an episode (or changes its kind).
func (d *DB) fail(err error) {
	err = wrap(d.path, "write", err)
	d.failures.Add(1)
	d.mu.Lock()
	prev := d.err
	d.err = err
	queued := len(d.queue)
	d.signalLocked()
	d.mu.Unlock()
	var pe *Error
	if prev != nil && errors.As(prev, &pe) && pe.Kind == kindOf2(err) {
		return
	}
	d.log.Error("client records cannot be written; they wait in memory and are written when the database works again",
		"file", d.path, "problem", kindOf2(err).String(), "queued", queued, "err", err)
}

// kindOf2 is the Kind of an error made by wrap.
func kindOf2(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return kindOf(err)
}

// healthy ends a failure episode after n reports were written: it logs
// the recovery and the reports dropped meanwhile.
func (d *DB) healthy(n int) {
	d.mu.Lock()
	prev := d.err
	if prev == nil {
		prev = d.recovered
	}
	d.recovered = nil
	dropped := d.dropped
	d.err = nil
	d.dropped = 0
	d.dropLog = false
	queued := len(d.queue)
	d.signalLocked()
	d.mu.Unlock()
	if prev != nil {
		d.log.Info("client database works again", "file", d.path, "written", n, "queued", queued)
	}
	if dropped > 0 {
		d.log.Warn("client records were dropped because the queue was full", "file", d.path,
			"dropped", dropped, "queue_max", d.opt.QueueMax)
	}
}

// writeAll writes the queue in batches until it is empty, and returns how
// many reports it wrote.
func (d *DB) writeAll(ctx context.Context, applied *int64) (int, error) {
	total := 0
	for {
		// The cap, at each batch: it may change while the queue is
		// written.
		if want := d.maxPages.Load(); want != *applied {
			v := want
			if v <= 0 {
				v = 4294967294 // SQLite's default
			}
			if _, err := d.w.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", v)); err != nil {
				return total, fmt.Errorf("set max_page_count: %w", err)
			}
			*applied = want
		}
		d.mu.Lock()
		n := min(len(d.queue), d.opt.BatchMax)
		batch := make([]queued, n)
		copy(batch, d.queue[:n])
		d.mu.Unlock()
		if n == 0 {
			return total, nil
		}
		if err := writeBatch(ctx, d.w, batch); err != nil {
			if !recordError(err) {
				return total, err
			}
			// One report the database refuses must not hold up the
			// others: write them one by one and drop the refused.
			for i := range batch {
				err := writeBatch(ctx, d.w, batch[i:i+1])
				if err != nil && !recordError(err) {
					return total, err
				}
				if err != nil {
					d.log.Warn("client record refused by the database; dropped", "file", d.path,
						"client", batch[i].s.ClientID, "err", err)
				}
				d.remove(batch[i].seq)
			}
			total += n
			continue
		}
		d.remove(batch[n-1].seq)
		total += n
	}
}

// remove takes the reports up to seq out of the queue.
func (d *DB) remove(last uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i := 0
	for i < len(d.queue) && d.queue[i].seq <= last {
		i++
	}
	clear(d.queue[:i])
	d.queue = d.queue[i:]
	// A write went through: the file works again, and Flush's callers
	// must not read an error of the past (healthy logs the recovery).
	if d.err != nil {
		d.recovered, d.err = d.err, nil
	}
	if len(d.queue) == 0 {
		d.queue = nil // let the backing array go
	}
	d.signalLocked()
}

// recordError tells whether err is about one report rather than the file
// (a constraint, e.g. an administrator's trigger, or a value too big).
func recordError(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_RANGE:
		return true
	}
	return false
}

const upsertClient = `INSERT INTO clients (id, host, user_name, os, path, addr, build, release, ring,
	first_seen, last_seen, last_at, last_outcome, last_step, last_reason, last_files, last_bytes,
	last_duration, last_success)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, iif(?12 IN ('updated', 'up-to-date'), ?8, 0), ?9, ?10, ?11, ?10, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
ON CONFLICT (id) DO UPDATE SET
	first_seen    = min(first_seen, excluded.first_seen),
	last_seen     = max(last_seen, excluded.last_seen),
	last_success  = max(last_success, excluded.last_success),
	last_at       = iif(last_at = ?19, excluded.last_at, max(last_at, excluded.last_at)),
	host          = iif((excluded.last_at >= last_at OR last_at = ?19), excluded.host, host),
	user_name     = iif((excluded.last_at >= last_at OR last_at = ?19), excluded.user_name, user_name),
	os            = iif((excluded.last_at >= last_at OR last_at = ?19), excluded.os, os),
	path          = iif((excluded.last_at >= last_at OR last_at = ?19), excluded.path, path),
	addr          = iif((excluded.last_at >= last_at OR last_at = ?19), excluded.addr, addr),
	-- A report that knows no build (a client that could not read its
	-- state) leaves the one known.
	build         = iif((excluded.last_at >= last_at OR last_at = ?19) AND excluded.build != '', excluded.build, build),
	-- The release a sync was served is the client's only once installed
	-- (or found up to date): a failed update leaves the one it had.
	release       = iif((excluded.last_at >= last_at OR last_at = ?19) AND excluded.last_outcome IN ('updated', 'up-to-date'), excluded.release, release),
	ring          = iif((excluded.last_at >= last_at OR last_at = ?19), excluded.ring, ring),
	last_outcome  = iif((excluded.last_at >= last_at OR last_at = ?19), excluded.last_outcome, last_outcome),
	last_step     = iif((excluded.last_at >= last_at OR last_at = ?19), excluded.last_step, last_step),
	last_reason   = iif((excluded.last_at >= last_at OR last_at = ?19), excluded.last_reason, last_reason),
	last_files    = iif((excluded.last_at >= last_at OR last_at = ?19), excluded.last_files, last_files),
	last_bytes    = iif((excluded.last_at >= last_at OR last_at = ?19), excluded.last_bytes, last_bytes),
	last_duration = iif((excluded.last_at >= last_at OR last_at = ?19), excluded.last_duration, last_duration)`

// deleteCut removes the server's account of a cut sync that the client's
// own report replaces (Sync.Supersedes).
const deleteCut = `DELETE FROM syncs WHERE client_id = ? AND at = ? AND step = 'transfer' AND outcome = 'interrupted'`

const insertSync = `INSERT INTO syncs (client_id, at, reported, host, user_name, os, path, addr,
	build, release, ring, outcome, step, reason, files, bytes, duration, report_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// recordedSync finds a sync of a client by its ReportID.
const recordedSync = `SELECT 1 FROM syncs WHERE client_id = ? AND report_id = ? AND report_id != 0`

// writeBatch writes batch in one transaction.
func writeBatch(ctx context.Context, w *sql.DB, batch []queued) error {
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	up, err := tx.PrepareContext(ctx, upsertClient)
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	defer up.Close()
	ins, err := tx.PrepareContext(ctx, insertSync)
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	defer ins.Close()
	for _, q := range batch {
		s := q.s
		if s.ReportID != 0 {
			var one int
			err := tx.QueryRowContext(ctx, recordedSync, s.ClientID, int64(s.ReportID)).Scan(&one)
			if err == nil {
				continue // recorded already: the report was sent twice
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("look for the sync %d of %q: %w", s.ReportID, s.ClientID, err)
			}
		}
		at, rep := ms(s.At), ms(s.Reported)
		var cut int64 // ?19 of upsertClient: never a last_at without a cut
		if !s.Supersedes.IsZero() {
			cut = ms(s.Supersedes)
			if _, err := tx.ExecContext(ctx, deleteCut, s.ClientID, cut); err != nil {
				return fmt.Errorf("replace the cut sync of %q: %w", s.ClientID, err)
			}
		}
		var success int64
		if s.Outcome == OutcomeUpdated || s.Outcome == OutcomeUpToDate {
			success = at
		}
		if _, err := up.ExecContext(ctx, s.ClientID, s.Host, s.User, s.OS, s.Path, s.Addr, s.Build,
			int64(s.Release), s.Ring, at, max(at, rep), s.Outcome, s.Step, s.Reason, s.Files, s.Bytes,
			s.Duration.Milliseconds(), success, cut); err != nil {
			return fmt.Errorf("write client %q: %w", s.ClientID, err)
		}
		if _, err := ins.ExecContext(ctx, s.ClientID, at, rep, s.Host, s.User, s.OS, s.Path, s.Addr,
			s.Build, int64(s.Release), s.Ring, s.Outcome, s.Step, s.Reason, s.Files, s.Bytes,
			s.Duration.Milliseconds(), int64(s.ReportID)); err != nil {
			return fmt.Errorf("write sync of %q: %w", s.ClientID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Prune deletes the sync history older than Options.KeepDays before now
// (client rows are kept) and returns how many syncs it deleted. The writer
// also prunes at open and daily; Prune is for tests and tools.
func (d *DB) Prune(ctx context.Context, now time.Time) (int64, error) {
	req := pruneReq{ctx: ctx, now: now, reply: make(chan pruneReply, 1)}
	select {
	case d.pruneReq <- req:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-d.done:
		return 0, fmt.Errorf("client database %s: prune: closed", d.path)
	}
	select {
	case r := <-req.reply:
		return r.n, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// prune is the writer's periodic Prune; a failure is left to the next
// write to report.
func (d *DB) prune(ctx context.Context, now time.Time) {
	if _, err := d.pruneNow(ctx, now); err != nil {
		d.log.Warn("client database: deleting old sync history failed; tried again tomorrow", "file", d.path, "err", err)
	}
}

func (d *DB) pruneNow(ctx context.Context, now time.Time) (int64, error) {
	if d.w == nil {
		return 0, d.Err()
	}
	cut := now.AddDate(0, 0, -d.opt.KeepDays)
	res, err := d.w.ExecContext(ctx, "DELETE FROM syncs WHERE at < ?", ms(cut))
	if err != nil {
		return 0, wrap(d.path, "prune", err)
	}
	n, _ := res.RowsAffected()
	if n > 0 {
		d.log.Info("client database: old sync history deleted", "file", d.path, "syncs", n,
			"keep_days", d.opt.KeepDays)
	}
	return n, nil
}

// ms is t in milliseconds since the Unix epoch (0 for the zero time).
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMS is the inverse of ms.
func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}
