package clientdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Reader answers queries on a client database. A DB has one (its read
// pool); OpenReadOnly makes one for a program that is not the server.
// Its methods are safe for concurrent use.
type Reader struct {
	db   *sql.DB
	path string
}

// OpenReadOnly opens the client database at path for reading only, for
// `appserver clients`; it works while the server writes the file. It
// fails with an *Error of KindMissing when no file exists yet, and of
// KindCorrupt when the file is not a client database.
func OpenReadOnly(ctx context.Context, path string) (*Reader, error) {
	db, path, err := openExisting(ctx, path, "open", DefaultBusyTimeout, url.Values{"mode": {"ro"}})
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(readerConns)
	db.SetMaxIdleConns(readerConns)
	return &Reader{db: db, path: path}, nil
}

// openExisting opens the client database at path, made absolute (it is
// returned so), which must exist and be of this package's schema, as a
// program beside the server does (`appserver clients`): busy is how long
// a query waits for the server's lock, extra more of the file's URI. An
// error is an *Error for op, of KindMissing when no file exists yet,
// KindCorrupt when it is not a client database, and KindNewer when a
// newer server wrote it.
func openExisting(ctx context.Context, path, op string, busy time.Duration, extra url.Values) (*sql.DB, string, error) {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, path, &Error{Path: path, Op: op, Kind: KindMissing, Err: err}
		}
		return nil, path, wrap(path, op, err)
	}
	db, err := sql.Open("sqlite", dsn(path, readerCacheKiB, busy, extra))
	if err != nil {
		return nil, path, wrap(path, op, err)
	}
	v, err := userVersion(ctx, db)
	if err == nil {
		// Reading the schema makes SQLite read the header: a file that is
		// not a database fails here.
		var n int
		err = db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'clients'").Scan(&n)
		if err == nil && n == 0 {
			db.Close()
			return nil, path, &Error{Path: path, Op: op, Kind: KindCorrupt, Err: fmt.Errorf("no clients table")}
		}
	}
	if err != nil {
		db.Close()
		return nil, path, wrap(path, op, err)
	}
	switch {
	case v > len(migrations):
		db.Close()
		return nil, path, &Error{Path: path, Op: op, Kind: KindNewer, Err: &newerSchemaError{found: v}}
	case v < len(migrations):
		db.Close()
		return nil, path, &Error{Path: path, Op: op, Kind: KindOther,
			Err: fmt.Errorf("schema v%d is older than v%d: start the server once to migrate it", v, len(migrations))}
	}
	return db, path, nil
}

// Close closes the reader's connections.
func (r *Reader) Close() error { return r.db.Close() }

// Filter selects and orders clients.
type Filter struct {
	Failed     bool      // only clients whose last outcome was failed or interrupted
	Build      string    // only this build
	OS         string    // only this OS
	StaleSince time.Time // only clients last seen before this (zero: any)
	// Search keeps clients whose host, user, id or path contains it,
	// both in Unicode lower case (not ASCII's only: "JOÃO" finds
	// "joão"; not full case folding: "STRASSE" does not find
	// "straße"); it is matched as plain text.
	Search string
	Sort   string // one of SortKeys; "" is "host"
	Desc   bool
	Limit  int // 0: no limit
	Offset int
}

// SortKeys are the accepted Filter.Sort values.
var SortKeys = []string{"host", "user", "os", "build", "release", "ring", "last_seen", "outcome"}

// sortColumns maps SortKeys to SQL; a Sort is never put in SQL otherwise.
var sortColumns = map[string]string{
	"host":      "host COLLATE NOCASE",
	"user":      "user_name COLLATE NOCASE",
	"os":        "os",
	"build":     "build",
	"release":   "release",
	"ring":      "ring",
	"last_seen": "last_seen",
	"outcome":   "last_outcome",
}

// maxList bounds the lists in a Summary and a Digest.
const maxList = 200

const clientColumns = `id, host, user_name, os, path, addr, build, release, ring, first_seen,
	last_seen, last_at, last_outcome, last_step, last_reason, last_files, last_bytes, last_duration,
	last_success`

func scanClient(sc interface{ Scan(...any) error }) (Client, error) {
	var c Client
	var rel, first, last, lastAt, dur, success int64
	err := sc.Scan(&c.ID, &c.Host, &c.User, &c.OS, &c.Path, &c.Addr, &c.Build, &rel, &c.Ring, &first,
		&last, &lastAt, &c.Outcome, &c.Step, &c.Reason, &c.Files, &c.Bytes, &dur, &success)
	c.Release = uint64(rel)
	c.FirstSeen, c.LastSeen, c.LastSync = fromMS(first), fromMS(last), fromMS(lastAt)
	c.Duration = time.Duration(dur) * time.Millisecond
	c.LastSuccess = fromMS(success)
	return c, err
}

// where is f's WHERE clause and its arguments (always placeholders).
func (f Filter) where() (string, []any) {
	var conds []string
	var args []any
	if f.Failed {
		conds = append(conds, "last_outcome IN ('failed', 'interrupted')")
	}
	if f.Build != "" {
		conds = append(conds, "build = ?")
		args = append(args, f.Build)
	}
	if f.OS != "" {
		conds = append(conds, "os = ?")
		args = append(args, f.OS)
	}
	if !f.StaleSince.IsZero() {
		conds = append(conds, "last_seen < ?")
		args = append(args, ms(f.StaleSince))
	}
	if f.Search != "" {
		// instr, not LIKE: % and _ in the search are plain characters.
		// smartsync_lower, not SQLite's lower (ASCII only): "João" is
		// found as "joão".
		conds = append(conds, "(instr(smartsync_lower(host), smartsync_lower(?)) > 0 OR instr(smartsync_lower(user_name), smartsync_lower(?)) > 0 OR instr(smartsync_lower(id), smartsync_lower(?)) > 0 OR instr(smartsync_lower(path), smartsync_lower(?)) > 0)")
		args = append(args, f.Search, f.Search, f.Search, f.Search)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// Clients lists the clients f selects, in f's order.
func (r *Reader) Clients(ctx context.Context, f Filter) ([]Client, error) {
	col := "host COLLATE NOCASE"
	if f.Sort != "" {
		c, ok := sortColumns[f.Sort]
		if !ok {
			return nil, fmt.Errorf("clientdb: unknown sort %q (want one of %s)", f.Sort, strings.Join(SortKeys, ", "))
		}
		col = c
	}
	dir := " ASC"
	if f.Desc {
		dir = " DESC"
	}
	if f.Limit < 0 || f.Offset < 0 {
		return nil, fmt.Errorf("clientdb: negative limit %d or offset %d", f.Limit, f.Offset)
	}
	where, args := f.where()
	q := "SELECT " + clientColumns + " FROM clients" + where + " ORDER BY " + col + dir + ", id" + dir
	if f.Limit > 0 || f.Offset > 0 {
		limit := f.Limit
		if limit == 0 {
			limit = -1
		}
		q += " LIMIT ? OFFSET ?"
		args = append(args, limit, f.Offset)
	}
	return r.listClients(ctx, q, args...)
}

func (r *Reader) listClients(ctx context.Context, q string, args ...any) ([]Client, error) {
	out, err := queryClients(ctx, r.db, q, args...)
	return out, wrap(r.path, "query", err)
}

// queryClients runs q, a SELECT of clientColumns, on db or a transaction.
func queryClients(ctx context.Context, db interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, q string, args ...any) ([]Client, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Client
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// Count is how many clients f selects (ignoring its Sort, Limit and
// Offset), for paging.
func (r *Reader) Count(ctx context.Context, f Filter) (int, error) {
	where, args := f.where()
	var n int
	if err := r.db.QueryRowContext(ctx, "SELECT count(*) FROM clients"+where, args...).Scan(&n); err != nil {
		return 0, wrap(r.path, "query", err)
	}
	return n, nil
}

const syncColumns = `client_id, at, reported, host, user_name, os, path, addr, build, release, ring,
	outcome, step, reason, files, bytes, duration`

func scanSync(sc interface{ Scan(...any) error }) (Sync, error) {
	var s Sync
	var at, rep, rel, dur int64
	err := sc.Scan(&s.ClientID, &at, &rep, &s.Host, &s.User, &s.OS, &s.Path, &s.Addr, &s.Build, &rel,
		&s.Ring, &s.Outcome, &s.Step, &s.Reason, &s.Files, &s.Bytes, &dur)
	s.At, s.Reported = fromMS(at), fromMS(rep)
	s.Release = uint64(rel)
	s.Duration = time.Duration(dur) * time.Millisecond
	return s, err
}

func (r *Reader) listSyncs(ctx context.Context, q string, args ...any) ([]Sync, error) {
	rows, err := r.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, wrap(r.path, "query", err)
	}
	defer rows.Close()
	var out []Sync
	for rows.Next() {
		s, err := scanSync(rows)
		if err != nil {
			return nil, wrap(r.path, "query", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap(r.path, "query", err)
	}
	return out, nil
}

// Client is one client and its history, newest first, at most limit syncs
// (limit <= 0: 100). It returns ErrNotFound for an unknown id.
func (r *Reader) Client(ctx context.Context, id string, limit int) (Client, []Sync, error) {
	if limit <= 0 {
		limit = 100
	}
	c, err := scanClient(r.db.QueryRowContext(ctx, "SELECT "+clientColumns+" FROM clients WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Client{}, nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if err != nil {
		return Client{}, nil, wrap(r.path, "query", err)
	}
	syncs, err := r.listSyncs(ctx, "SELECT "+syncColumns+" FROM syncs WHERE client_id = ? ORDER BY at DESC, id DESC LIMIT ?", id, limit)
	if err != nil {
		return Client{}, nil, err
	}
	return c, syncs, nil
}

// Count is a number of clients with something in common.
type Count struct {
	Key string // the build, the OS
	N   int
}

// BuildOS is the number of clients on one build and OS.
type BuildOS struct {
	Build, OS string
	N         int
}

// RingRelease is the number of clients of one rollout ring on one release.
type RingRelease struct {
	Ring    string
	Release uint64
	N       int
}

// Summary is the estate at a glance, for the console's overview and the
// metrics.
type Summary struct {
	Clients   int
	Builds    []Count       // per build, most clients first
	OSes      []Count       // per OS, most clients first
	BuildOS   []BuildOS     // per build and OS (for appserver_clients{build,os})
	Rings     []RingRelease // per ring ("" outside any rollout) and release
	Failed    int           // clients whose last outcome failed or was interrupted
	Failures  []Client      // those clients, newest failure first (at most 200)
	Stale     int           // clients not seen since staleBefore
	StaleList []Client      // those clients, longest unseen first (at most 200)
}

// Summary sums up the estate; clients last seen before staleBefore are
// stale (zero staleBefore: none).
func (r *Reader) Summary(ctx context.Context, staleBefore time.Time) (Summary, error) {
	var s Summary
	if err := r.db.QueryRowContext(ctx, "SELECT count(*) FROM clients").Scan(&s.Clients); err != nil {
		return s, wrap(r.path, "query", err)
	}
	rows, err := r.db.QueryContext(ctx, "SELECT build, os, count(*) FROM clients GROUP BY build, os ORDER BY build, os")
	if err != nil {
		return s, wrap(r.path, "query", err)
	}
	builds, oses := map[string]int{}, map[string]int{}
	for rows.Next() {
		var b BuildOS
		if err := rows.Scan(&b.Build, &b.OS, &b.N); err != nil {
			rows.Close()
			return s, wrap(r.path, "query", err)
		}
		s.BuildOS = append(s.BuildOS, b)
		builds[b.Build] += b.N
		oses[b.OS] += b.N
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s, wrap(r.path, "query", err)
	}
	s.Builds, s.OSes = counts(builds), counts(oses)

	rows, err = r.db.QueryContext(ctx, "SELECT ring, release, count(*) FROM clients GROUP BY ring, release ORDER BY ring, release DESC")
	if err != nil {
		return s, wrap(r.path, "query", err)
	}
	for rows.Next() {
		var rr RingRelease
		var rel int64
		if err := rows.Scan(&rr.Ring, &rel, &rr.N); err != nil {
			rows.Close()
			return s, wrap(r.path, "query", err)
		}
		rr.Release = uint64(rel)
		s.Rings = append(s.Rings, rr)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s, wrap(r.path, "query", err)
	}

	failed := Filter{Failed: true}
	if s.Failed, err = r.Count(ctx, failed); err != nil {
		return s, err
	}
	if s.Failures, err = r.listClients(ctx, "SELECT "+clientColumns+
		" FROM clients WHERE last_outcome IN ('failed', 'interrupted') ORDER BY last_at DESC, id LIMIT ?", maxList); err != nil {
		return s, err
	}
	if !staleBefore.IsZero() {
		stale := Filter{StaleSince: staleBefore, Sort: "last_seen", Limit: maxList}
		if s.Stale, err = r.Count(ctx, stale); err != nil {
			return s, err
		}
		if s.StaleList, err = r.Clients(ctx, stale); err != nil {
			return s, err
		}
	}
	return s, nil
}

// counts is m as a list, most first, then by key.
func counts(m map[string]int) []Count {
	out := make([]Count, 0, len(m))
	for k, n := range m {
		out = append(out, Count{k, n})
	}
	slices.SortFunc(out, func(a, b Count) int {
		if a.N != b.N {
			return b.N - a.N
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out
}

// Digest is what a daily mail lists.
type Digest struct {
	// Failures are the failed and interrupted syncs in the window, newest
	// first (at most 200); Failed is how many there were.
	Failures []Sync
	Failed   int
	// NewlyStale are the clients that went stale in the window (their
	// last sighting crossed the stale age), longest unseen first (at
	// most 200); Stale is how many there were.
	NewlyStale []Client
	Stale      int
}

// Empty tells whether the digest has nothing to say (no mail is sent).
func (d Digest) Empty() bool { return d.Failed == 0 && d.Stale == 0 }

// Digest is what happened in [since, now): the failures the server had
// reports of in that window (late ones too), and the clients that went
// stale (not seen for staleAfter) in it.
func (r *Reader) Digest(ctx context.Context, since, now time.Time, staleAfter time.Duration) (Digest, error) {
	var d Digest
	from, to := ms(since), ms(now)
	// By when the server had them: a failure reported late, after the
	// digest of the day it happened, is in the next one.
	if err := r.db.QueryRowContext(ctx, "SELECT count(*) FROM syncs WHERE outcome IN ('failed', 'interrupted') AND reported >= ? AND reported < ?",
		from, to).Scan(&d.Failed); err != nil {
		return d, wrap(r.path, "query", err)
	}
	var err error
	if d.Failures, err = r.listSyncs(ctx, "SELECT "+syncColumns+
		" FROM syncs WHERE outcome IN ('failed', 'interrupted') AND reported >= ? AND reported < ? ORDER BY reported DESC, id DESC LIMIT ?",
		from, to, maxList); err != nil {
		return d, err
	}
	sfrom, sto := ms(since.Add(-staleAfter)), ms(now.Add(-staleAfter))
	if err := r.db.QueryRowContext(ctx, "SELECT count(*) FROM clients WHERE last_seen >= ? AND last_seen < ?",
		sfrom, sto).Scan(&d.Stale); err != nil {
		return d, wrap(r.path, "query", err)
	}
	if d.NewlyStale, err = r.listClients(ctx, "SELECT "+clientColumns+
		" FROM clients WHERE last_seen >= ? AND last_seen < ? ORDER BY last_seen, id LIMIT ?", sfrom, sto, maxList); err != nil {
		return d, err
	}
	return d, nil
}

// The DB's queries go through its read pool; while the file is not open
// they return Err.

// Clients is Reader.Clients on the server's database.
func (d *DB) Clients(ctx context.Context, f Filter) ([]Client, error) {
	r, err := d.reader()
	if err != nil {
		return nil, err
	}
	return r.Clients(ctx, f)
}

// Count is Reader.Count on the server's database.
func (d *DB) Count(ctx context.Context, f Filter) (int, error) {
	r, err := d.reader()
	if err != nil {
		return 0, err
	}
	return r.Count(ctx, f)
}

// Client is Reader.Client on the server's database.
func (d *DB) Client(ctx context.Context, id string, limit int) (Client, []Sync, error) {
	r, err := d.reader()
	if err != nil {
		return Client{}, nil, err
	}
	return r.Client(ctx, id, limit)
}

// Summary is Reader.Summary on the server's database.
func (d *DB) Summary(ctx context.Context, staleBefore time.Time) (Summary, error) {
	r, err := d.reader()
	if err != nil {
		return Summary{}, err
	}
	return r.Summary(ctx, staleBefore)
}

// Digest is Reader.Digest on the server's database.
func (d *DB) Digest(ctx context.Context, since, now time.Time, staleAfter time.Duration) (Digest, error) {
	r, err := d.reader()
	if err != nil {
		return Digest{}, err
	}
	return r.Digest(ctx, since, now, staleAfter)
}

// ReleaseCounts is how many clients of osName have each release
// installed (releases numbered 0, none, left out), for the CLIENTS
// column of `appserver releases`.
func (r *Reader) ReleaseCounts(ctx context.Context, osName string) (map[uint64]int, error) {
	rows, err := r.db.QueryContext(ctx, "SELECT release, count(*) FROM clients WHERE os = ? AND release != 0 GROUP BY release", osName)
	if err != nil {
		return nil, wrap(r.path, "query", err)
	}
	defer rows.Close()
	out := map[uint64]int{}
	for rows.Next() {
		var n int64
		var c int
		if err := rows.Scan(&n, &c); err != nil {
			return nil, wrap(r.path, "query", err)
		}
		out[uint64(n)] = c
	}
	if err := rows.Err(); err != nil {
		return nil, wrap(r.path, "query", err)
	}
	return out, nil
}

// ReportKey names one sync by its client and its report id.
type ReportKey struct {
	Client string
	ID     uint64
}

// RecentReports returns the report ids of the syncs reported since since,
// at most limit of them, oldest first: what the server remembers at its
// start to know a report sent again.
func (r *Reader) RecentReports(ctx context.Context, since time.Time, limit int) ([]ReportKey, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT client_id, report_id FROM
		(SELECT client_id, report_id, reported FROM syncs WHERE report_id != 0 AND reported >= ? ORDER BY reported DESC LIMIT ?)
		ORDER BY reported`, ms(since), limit)
	if err != nil {
		return nil, wrap(r.path, "recent reports", err)
	}
	defer rows.Close()
	var out []ReportKey
	for rows.Next() {
		var k ReportKey
		var id int64
		if err := rows.Scan(&k.Client, &id); err != nil {
			return nil, wrap(r.path, "recent reports", err)
		}
		k.ID = uint64(id)
		out = append(out, k)
	}
	return out, wrap(r.path, "recent reports", rows.Err())
}

// RecentReports is Reader.RecentReports on the server's database.
func (d *DB) RecentReports(ctx context.Context, since time.Time, limit int) ([]ReportKey, error) {
	r, err := d.reader()
	if err != nil {
		return nil, err
	}
	return r.RecentReports(ctx, since, limit)
}
