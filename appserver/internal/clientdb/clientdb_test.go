package clientdb

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuf collects a logger's lines for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// count is how many lines contain s.
func (l *logBuf) count(s string) int {
	return strings.Count(l.String(), s)
}

func newLog() (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// fastOpts retry quickly so tests do not wait.
func fastOpts() Options {
	return Options{RetryEvery: 20 * time.Millisecond, BusyTimeout: 20 * time.Millisecond}
}

// waitFor polls cond until it holds, failing the test after 15 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func open(t *testing.T, path string, opt Options) (*DB, *logBuf) {
	t.Helper()
	log, lb := newLog()
	d := Open(t.Context(), path, log, opt)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.Close(ctx)
	})
	return d, lb
}

func flush(t *testing.T, d *DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	if err := d.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func sync1(id string, at time.Time, outcome string) Sync {
	return Sync{ClientID: id, Host: "host-" + id, User: "user-" + id, OS: "linux", Path: "/opt/erp",
		Addr: "10.0.0.1:5000", Build: "B1", Release: 1, At: at, Outcome: outcome, Files: 3, Bytes: 1000,
		Duration: 1500 * time.Millisecond}
}

// rawDB opens path with a plain second connection, as another program would.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func version(t *testing.T, path string) int {
	t.Helper()
	v, err := userVersion(t.Context(), rawDB(t, path))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func ids(cs []Client) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

func TestSchemaVersion(t *testing.T) {
	if SchemaVersion != len(migrations) {
		t.Fatalf("SchemaVersion %d, but %d migrations", SchemaVersion, len(migrations))
	}
}

func TestOpenNewFile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prepare func(path string) error
	}{
		{"missing", func(string) error { return nil }},
		{"empty", func(p string) error { return os.WriteFile(p, nil, 0o600) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "clients.db")
			if err := tc.prepare(path); err != nil {
				t.Fatal(err)
			}
			d, _ := open(t, path, fastOpts())
			d.Record(sync1("a", t0, OutcomeUpdated))
			flush(t, d)
			if err := d.Err(); err != nil {
				t.Fatalf("Err: %v", err)
			}
			cs, err := d.Clients(t.Context(), Filter{})
			if err != nil || len(cs) != 1 {
				t.Fatalf("Clients: %v %v", cs, err)
			}
			if v := version(t, path); v != SchemaVersion {
				t.Errorf("user_version %d, want %d", v, SchemaVersion)
			}
			var mode string
			if err := rawDB(t, path).QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
				t.Errorf("journal_mode %q %v, want wal", mode, err)
			}
			// Windows has no such mode bits: the file takes its folder's ACL.
			if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 && tc.name == "missing" && runtime.GOOS != "windows" {
				t.Errorf("new file mode %v, want private", fi.Mode())
			}
		})
	}
}

func TestMigrateFromV1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.db")
	raw := rawDB(t, path)
	if _, err := migrate(t.Context(), raw, 1); err != nil {
		t.Fatal(err)
	}
	if v := version(t, path); v != 1 {
		t.Fatalf("v1 file has version %d", v)
	}
	at := ms(t0)
	if _, err := raw.Exec(`INSERT INTO clients (id, host, user_name, os, path, addr, build, release,
		first_seen, last_seen, last_at, last_outcome, last_reason, last_success)
		VALUES ('old', 'oldhost', 'olduser', 'windows', 'C:\erp', '10.1.1.1:1', 'B0', 7, ?, ?, ?, 'failed', 'disk full', 0)`,
		at, at, at); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`INSERT INTO syncs (client_id, at, reported, host, build, release, outcome, reason)
		VALUES ('old', ?, ?, 'oldhost', 'B0', 7, 'failed', 'disk full')`, at, at); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	d, lb := open(t, path, fastOpts())
	d.Record(Sync{ClientID: "new", Host: "newhost", Build: "B1", Ring: "pilot", Release: 8, At: t0.Add(time.Minute), Outcome: OutcomeUpdated})
	flush(t, d)
	if v := version(t, path); v != SchemaVersion {
		t.Errorf("user_version %d after migration, want %d", v, SchemaVersion)
	}
	if !strings.Contains(lb.String(), "schema migrated") || !strings.Contains(lb.String(), "from=1") {
		t.Errorf("log does not say the schema was migrated from 1:\n%s", lb)
	}
	c, hist, err := d.Client(t.Context(), "old", 0)
	if err != nil {
		t.Fatal(err)
	}
	if c.Host != "oldhost" || c.Release != 7 || c.Ring != "" || c.Reason != "disk full" || !c.Failed() || len(hist) != 1 {
		t.Errorf("old client after migration: %+v %+v", c, hist)
	}
	s, err := d.Summary(t.Context(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(s.Rings, RingRelease{"pilot", 8, 1}) || s.Clients != 2 {
		t.Errorf("summary after migration: %+v", s)
	}
}

func TestNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.db")
	if _, err := rawDB(t, path).Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	d, _ := open(t, path, fastOpts())
	d.Record(sync1("a", t0, OutcomeUpdated))
	var e *Error
	waitFor(t, "Err to say newer", func() bool { return errors.As(d.Err(), &e) && e.Kind == KindNewer })
	if !strings.Contains(e.Error(), "newer server") || !strings.Contains(e.Error(), path) {
		t.Errorf("error %q does not name the file and a newer server", e)
	}
	if d.Queued() != 1 {
		t.Errorf("queued %d, want 1", d.Queued())
	}
}

func TestRecordAndQuery(t *testing.T) {
	d, _ := open(t, filepath.Join(t.TempDir(), "clients.db"), fastOpts())
	ctx := t.Context()
	recs := []Sync{
		{ClientID: "c1", Host: "alpha", User: "ann", OS: "linux", Path: "/opt/erp", Build: "B2", Release: 2, Ring: "pilot", At: t0.Add(-3 * time.Hour), Outcome: OutcomeUpdated, Bytes: 500},
		{ClientID: "c1", Host: "alpha", User: "ann", OS: "linux", Path: "/opt/erp", Build: "B2", Release: 2, Ring: "pilot", At: t0.Add(-1 * time.Hour), Outcome: OutcomeUpToDate},
		{ClientID: "c2", Host: "Bravo", User: "bob", OS: "windows", Path: `C:\ERP 100%`, Build: "B1", Release: 1, At: t0.Add(-2 * time.Hour), Outcome: OutcomeFailed, Step: "install", Reason: "the file lib/x.so is read-only"},
		{ClientID: "c3", Host: "charlie", User: "o'brien", OS: "windows", Path: `C:\erp_test`, Build: "B2", Release: 2, At: t0.Add(-10 * 24 * time.Hour), Outcome: OutcomeUpdated},
		{ClientID: "c4", Host: "delta", User: "dan", OS: "darwin", Path: "/Applications/ÉRP Ação", Build: "B1", Release: 1, At: t0.Add(-30 * time.Minute), Outcome: OutcomeInterrupted, Step: "transfer", Reason: "connection reset"},
	}
	for _, r := range recs {
		d.Record(r)
	}
	// A report the client kept from an earlier sync arrives last: it
	// must not move last_seen back nor replace the newer outcome.
	late := recs[1]
	late.At, late.Reported, late.Outcome, late.Reason, late.Build = t0.Add(-5*time.Hour), t0, OutcomeFailed, "old failure", "B0"
	d.Record(late)
	flush(t, d)

	c1, hist, err := d.Client(ctx, "c1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if c1.Outcome != OutcomeUpToDate || c1.Build != "B2" || c1.Ring != "pilot" || !c1.LastSync.Equal(t0.Add(-time.Hour)) {
		t.Errorf("late report overwrote the newer outcome: %+v", c1)
	}
	if !c1.LastSeen.Equal(t0) || !c1.FirstSeen.Equal(t0.Add(-5*time.Hour)) || !c1.LastSuccess.Equal(t0.Add(-time.Hour)) {
		t.Errorf("c1 seen %v..%v success %v", c1.FirstSeen, c1.LastSeen, c1.LastSuccess)
	}
	if len(hist) != 3 || !hist[0].At.Equal(t0.Add(-time.Hour)) || hist[2].Outcome != OutcomeFailed || !hist[2].Reported.Equal(t0) {
		t.Errorf("c1 history not newest first with the late report: %+v", hist)
	}
	if _, _, err := d.Client(ctx, "nobody", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown client: %v, want ErrNotFound", err)
	}

	for _, tc := range []struct {
		name string
		f    Filter
		want []string
	}{
		{"all by host", Filter{}, []string{"c1", "c2", "c3", "c4"}},
		{"host desc", Filter{Sort: "host", Desc: true}, []string{"c4", "c3", "c2", "c1"}},
		{"user", Filter{Sort: "user"}, []string{"c1", "c2", "c4", "c3"}},
		{"os", Filter{Sort: "os"}, []string{"c4", "c1", "c2", "c3"}},
		{"build desc", Filter{Sort: "build", Desc: true}, []string{"c3", "c1", "c4", "c2"}},
		{"last_seen", Filter{Sort: "last_seen"}, []string{"c3", "c2", "c4", "c1"}},
		{"outcome", Filter{Sort: "outcome"}, []string{"c2", "c4", "c1", "c3"}},
		{"failed", Filter{Failed: true}, []string{"c2", "c4"}},
		{"build", Filter{Build: "B1"}, []string{"c2", "c4"}},
		{"os", Filter{OS: "windows"}, []string{"c2", "c3"}},
		{"stale", Filter{StaleSince: t0.Add(-24 * time.Hour)}, []string{"c3"}},
		{"search host case", Filter{Search: "BRA"}, []string{"c2"}},
		{"search id", Filter{Search: "c4"}, []string{"c4"}},
		{"search beyond ASCII, any case", Filter{Search: "érp aÇ"}, []string{"c4"}},
		{"search quote", Filter{Search: "o'b"}, []string{"c3"}},
		{"search percent", Filter{Search: "100%"}, []string{"c2"}},
		{"percent is no wildcard", Filter{Search: "%"}, []string{"c2"}},
		{"underscore is no wildcard", Filter{Search: "_"}, []string{"c3"}},
		{"search hostile", Filter{Search: `'); DROP TABLE clients; --`}, nil},
		{"limit offset", Filter{Limit: 2, Offset: 1}, []string{"c2", "c3"}},
		{"offset only", Filter{Offset: 3}, []string{"c4"}},
		{"combined", Filter{Build: "B2", OS: "linux"}, []string{"c1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := d.Clients(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(cs); !slices.Equal(got, tc.want) {
				t.Errorf("Clients(%+v) = %v, want %v", tc.f, got, tc.want)
			}
			n, err := d.Count(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if tc.f.Limit == 0 && tc.f.Offset == 0 && n != len(tc.want) {
				t.Errorf("Count = %d, want %d", n, len(tc.want))
			}
		})
	}

	s, err := d.Summary(ctx, t0.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if s.Clients != 4 || s.Failed != 2 || s.Stale != 1 || ids(s.StaleList)[0] != "c3" {
		t.Errorf("summary counts: %+v", s)
	}
	if got := ids(s.Failures); !slices.Equal(got, []string{"c4", "c2"}) || s.Failures[1].Reason != "the file lib/x.so is read-only" {
		t.Errorf("failures not newest first with reasons: %+v", s.Failures)
	}
	if !slices.Equal(s.Builds, []Count{{"B1", 2}, {"B2", 2}}) || s.OSes[0] != (Count{"windows", 2}) {
		t.Errorf("builds %v oses %v", s.Builds, s.OSes)
	}
	if !slices.Contains(s.BuildOS, BuildOS{"B2", "windows", 1}) || !slices.Contains(s.Rings, RingRelease{"pilot", 2, 1}) || !slices.Contains(s.Rings, RingRelease{"", 0, 2}) { // c2 and c4 failed: no release installed
		t.Errorf("buildOS %v rings %v", s.BuildOS, s.Rings)
	}

	// The day before t0: c2 and c4 failed; the late report's failure,
	// at -5 h but reported at t0, is the next day's news. c3 (last seen
	// 10 days ago) went stale at 7 days if the window covers day 3,
	// which it does not.
	dg, err := d.Digest(ctx, t0.Add(-24*time.Hour), t0, 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if dg.Failed != 2 || dg.Failures[0].ClientID != "c4" || dg.Stale != 0 || dg.Empty() {
		t.Errorf("digest: %+v", dg)
	}
	if next, err := d.Digest(ctx, t0, t0.Add(24*time.Hour), 7*24*time.Hour); err != nil || next.Failed != 1 || next.Failures[0].Reason != "old failure" {
		t.Errorf("the next day's digest: %+v, %v, want the failure reported late", next, err)
	}
	dg, err = d.Digest(ctx, t0.Add(-24*time.Hour), t0, 9*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if dg.Stale != 1 || dg.NewlyStale[0].ID != "c3" {
		t.Errorf("digest with 9-day stale age: %+v", dg)
	}
}

func TestHostileSort(t *testing.T) {
	d, _ := open(t, filepath.Join(t.TempDir(), "clients.db"), fastOpts())
	d.Record(sync1("a", t0, OutcomeUpdated))
	flush(t, d)
	for _, sort := range []string{"host; DROP TABLE clients", "id", "last_reason", "(SELECT 1)", "HOST", "host DESC"} {
		_, err := d.Clients(t.Context(), Filter{Sort: sort})
		if err == nil || !strings.Contains(err.Error(), "unknown sort") {
			t.Errorf("Sort %q: err %v, want unknown sort", sort, err)
		}
	}
	if n, err := d.Count(t.Context(), Filter{}); err != nil || n != 1 {
		t.Errorf("clients table after hostile input: %d %v", n, err)
	}
	if _, err := d.Clients(t.Context(), Filter{Limit: -1}); err == nil {
		t.Error("negative limit accepted")
	}
}

func TestRetention(t *testing.T) {
	opt := fastOpts()
	opt.KeepDays = 30
	d, _ := open(t, filepath.Join(t.TempDir(), "clients.db"), opt)
	now := t0
	d.Record(sync1("old", now.AddDate(0, 0, -40), OutcomeUpdated))
	d.Record(sync1("both", now.AddDate(0, 0, -31), OutcomeFailed))
	d.Record(sync1("both", now.AddDate(0, 0, -29), OutcomeUpdated))
	d.Record(sync1("new", now.AddDate(0, 0, -1), OutcomeUpdated))
	flush(t, d)
	n, err := d.Prune(t.Context(), now)
	if err != nil || n != 2 {
		t.Fatalf("Prune = %d, %v; want 2 syncs deleted", n, err)
	}
	for id, want := range map[string]int{"old": 0, "both": 1, "new": 1} {
		c, hist, err := d.Client(t.Context(), id, 0)
		if err != nil {
			t.Fatalf("client %s row was deleted: %v", id, err)
		}
		if len(hist) != want {
			t.Errorf("client %s keeps %d syncs, want %d", id, len(hist), want)
		}
		if id == "both" && c.Outcome != OutcomeUpdated {
			t.Errorf("client row changed by pruning: %+v", c)
		}
	}
}

func TestPruneAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.db")
	d, _ := open(t, path, fastOpts())
	d.Record(sync1("old", time.Now().AddDate(0, 0, -100), OutcomeUpdated))
	flush(t, d)
	if err := d.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	d2, lb := open(t, path, fastOpts())
	waitFor(t, "prune at open", func() bool { return strings.Contains(lb.String(), "old sync history deleted") })
	_, hist, err := d2.Client(t.Context(), "old", 0)
	if err != nil || len(hist) != 0 {
		t.Errorf("after open: %v %v", hist, err)
	}
}

func TestLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.db")
	d, lb := open(t, path, fastOpts())
	d.Record(sync1("first", t0, OutcomeUpdated))
	flush(t, d)

	// Another program takes the write lock.
	other := rawDB(t, path)
	conn, err := other.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		d.Record(sync1(fmt.Sprintf("locked%d", i), t0.Add(time.Minute), OutcomeUpdated))
	}
	if q := d.Queued(); q == 0 {
		t.Fatal("nothing queued: Record wrote through a held lock?")
	}
	var e *Error
	waitFor(t, "Err to say locked", func() bool { return errors.As(d.Err(), &e) && e.Kind == KindLocked })
	if !strings.Contains(e.Error(), path) || !strings.Contains(e.Error(), "locked") {
		t.Errorf("error %q does not name the file and the lock", e)
	}
	if d.Queued() != 3 {
		t.Errorf("queued %d while locked, want 3", d.Queued())
	}
	// Reads go on while the writer waits.
	if cs, err := d.Clients(t.Context(), Filter{}); err != nil || len(cs) != 1 {
		t.Errorf("read while locked: %v %v", ids(cs), err)
	}
	// More retries do not log again.
	tries := d.failures.Load()
	waitFor(t, "three more retries", func() bool { return d.failures.Load() >= tries+3 })
	if n := lb.count("cannot be written"); n != 1 {
		t.Errorf("locked logged %d times, want once:\n%s", n, lb)
	}

	if _, err := conn.ExecContext(t.Context(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "queued records written", func() bool { return d.Queued() == 0 && d.Err() == nil })
	if n, err := d.Count(t.Context(), Filter{}); err != nil || n != 4 {
		t.Errorf("after the lock: %d clients, %v; want 4", n, err)
	}
	if !strings.Contains(lb.String(), "works again") || !strings.Contains(lb.String(), "written=3") {
		t.Errorf("recovery not logged with the count:\n%s", lb)
	}
}

func TestFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.db")
	d, lb := open(t, path, fastOpts())
	d.Record(sync1("first", t0, OutcomeUpdated))
	flush(t, d)
	// Cap the file at its size now (SQLite keeps the cap at least there).
	d.maxPages.Store(1)
	long := strings.Repeat("x", maxReason)
	// More than the free pages the file may have (in WAL mode some are
	// in the log): a few may still fit before it is full.
	const n = 400
	for i := range n {
		s := sync1(fmt.Sprintf("c%03d", i), t0, OutcomeFailed)
		s.Reason = long
		d.Record(s)
	}
	var e *Error
	var logged time.Time
	waitFor(t, "Err to say full", func() bool {
		if errors.As(d.Err(), &e) && e.Kind == KindFull {
			return true
		}
		if time.Since(logged) > time.Second { // what it says meanwhile, should it never say full
			t.Logf("not full yet: Err %v, %d queued, %d failures", d.Err(), d.Queued(), d.failures.Load())
			logged = time.Now()
		}
		return false
	})
	if !strings.Contains(e.Error(), path) || !strings.Contains(e.Error(), "full") {
		t.Errorf("error %q does not name the file and say full", e)
	}
	if q := d.Queued(); q == 0 || q > n {
		t.Errorf("queued %d while full, want some of %d (a failed batch must stay queued)", q, n)
	}
	if !strings.Contains(lb.String(), "level=ERROR") {
		t.Errorf("full not logged at ERROR:\n%s", lb)
	}
	d.maxPages.Store(0)
	d.Record(sync1("after", t0, OutcomeUpdated))
	waitFor(t, "queued records written", func() bool { return d.Queued() == 0 && d.Err() == nil })
	if got, err := d.Count(t.Context(), Filter{}); err != nil || got != n+2 {
		t.Errorf("after raising the cap: %d clients, %v; want %d", got, err, n+2)
	}
}

func TestCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.db")
	garbage := bytes.Repeat([]byte("this is not a database\n"), 400)
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	d, lb := open(t, path, fastOpts())
	d.Record(sync1("a", t0, OutcomeUpdated))
	d.Record(sync1("b", t0, OutcomeFailed))
	var e *Error
	waitFor(t, "Err to say corrupt", func() bool { return errors.As(d.Err(), &e) && e.Kind == KindCorrupt })
	msg := e.Error()
	if !strings.Contains(msg, path) || !strings.Contains(msg, "corrupt") || !strings.Contains(msg, "aside") {
		t.Errorf("error %q does not name the file, say corrupt and what to do", msg)
	}
	if d.Queued() != 2 {
		t.Errorf("queued %d, want 2", d.Queued())
	}
	if _, err := d.Clients(t.Context(), Filter{}); err == nil {
		t.Error("query on a corrupt file did not fail")
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, garbage) {
		t.Fatal("the corrupt file was modified")
	}
	if err := os.Rename(path, path+".bad"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "records written to a new file", func() bool { return d.Queued() == 0 && d.Err() == nil })
	if n, err := d.Count(t.Context(), Filter{}); err != nil || n != 2 {
		t.Errorf("new file holds %d clients, %v; want 2", n, err)
	}
	t.Log(lb)
	if lb.count("level=ERROR") != 1 || !strings.Contains(lb.String(), "written=2") {
		t.Errorf("want one ERROR and a recovery with written=2:\n%s", lb)
	}
}

func TestQueueBound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("garbage!"), 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	opt := fastOpts()
	opt.QueueMax = 5
	d, lb := open(t, path, opt)
	waitFor(t, "Err", func() bool { return d.Err() != nil })
	for i := range 12 {
		d.Record(sync1(fmt.Sprintf("c%02d", i), t0.Add(time.Duration(i)*time.Second), OutcomeUpdated))
	}
	if d.Queued() != 5 || d.Dropped() != 7 {
		t.Errorf("queued %d dropped %d, want 5 and 7", d.Queued(), d.Dropped())
	}
	if n := lb.count("queue is full"); n != 1 {
		t.Errorf("queue full logged %d times, want once", n)
	}
	os.Remove(path)
	waitFor(t, "written", func() bool { return d.Queued() == 0 && d.Err() == nil })
	cs, err := d.Clients(t.Context(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(cs); !slices.Equal(got, []string{"c07", "c08", "c09", "c10", "c11"}) {
		t.Errorf("kept %v, want the 5 newest", got)
	}
	if !strings.Contains(lb.String(), "dropped=7") {
		t.Errorf("dropped count not logged:\n%s", lb)
	}
}

func TestCloseFlushes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.db")
	log, _ := newLog()
	d := Open(t.Context(), path, log, Options{})
	for i := range 100 {
		d.Record(sync1(fmt.Sprintf("c%d", i), t0, OutcomeUpdated))
	}
	if err := d.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	r, err := OpenReadOnly(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if n, err := r.Count(t.Context(), Filter{}); err != nil || n != 100 {
		t.Errorf("after Close: %d %v, want 100", n, err)
	}
	d.Record(sync1("late", t0, OutcomeUpdated)) // after Close: queued, never blocks
}

func TestOpenReadOnly(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()

	_, err := OpenReadOnly(ctx, filepath.Join(dir, "none.db"))
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindMissing || !strings.Contains(err.Error(), "no client has reported yet") {
		t.Errorf("missing file: %v", err)
	}

	bad := filepath.Join(dir, "bad.db")
	os.WriteFile(bad, bytes.Repeat([]byte("not sqlite"), 500), 0o600)
	_, err = OpenReadOnly(ctx, bad)
	if !errors.As(err, &e) || e.Kind != KindCorrupt || !strings.Contains(err.Error(), bad) {
		t.Errorf("garbage file: %v", err)
	}

	other := filepath.Join(dir, "other.db")
	if _, err := rawDB(t, other).Exec("CREATE TABLE t (x)"); err != nil {
		t.Fatal(err)
	}
	_, err = OpenReadOnly(ctx, other)
	if !errors.As(err, &e) || e.Kind != KindCorrupt {
		t.Errorf("another program's database: %v", err)
	}

	// While the server holds the file and writes.
	path := filepath.Join(dir, "clients.db")
	d, _ := open(t, path, fastOpts())
	d.Record(sync1("a", t0, OutcomeUpdated))
	flush(t, d)
	r, err := OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	d.Record(sync1("b", t0, OutcomeFailed))
	flush(t, d)
	cs, err := r.Clients(ctx, Filter{})
	if err != nil || !slices.Equal(ids(cs), []string{"a", "b"}) {
		t.Errorf("read-only view: %v %v", ids(cs), err)
	}
	before, _ := os.ReadFile(path)
	if _, err := r.db.ExecContext(ctx, "DELETE FROM clients"); err == nil {
		t.Error("the read-only reader could write")
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Error("file changed by the reader")
	}
}

// A folder name with the characters a URI gives meaning to.
func TestOddPath(t *testing.T) {
	for _, name := range []string{"a b", "q?mode=ro", "h#x", "p%20c", "ü&é"} {
		t.Run(name, func(t *testing.T) {
			if strings.Contains(name, "?") && runtime.GOOS == "windows" {
				t.Skip("Windows allows no ? in a name")
			}
			dir := filepath.Join(t.TempDir(), name)
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "clients.db")
			d, _ := open(t, path, fastOpts())
			d.Record(sync1("a", t0, OutcomeUpdated))
			flush(t, d)
			if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
				t.Fatalf("database not at %s: %v", path, err)
			}
			r, err := OpenReadOnly(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if n, err := r.Count(t.Context(), Filter{}); err != nil || n != 1 {
				t.Errorf("read back %d %v", n, err)
			}
		})
	}
}

// A folder that does not exist: Err says so, the reports wait.
func TestMissingFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	path := filepath.Join(dir, "clients.db")
	d, _ := open(t, path, fastOpts())
	d.Record(sync1("a", t0, OutcomeUpdated))
	var e *Error
	waitFor(t, "Err", func() bool { return errors.As(d.Err(), &e) })
	if e.Kind != KindAccess || !strings.Contains(e.Error(), "folder exists") {
		t.Errorf("missing folder: %v (kind %v)", e, e.Kind)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	flush(t, d)
}

// Close on a file that cannot be written says how many reports are lost.
func TestCloseReportsUnwritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("garbage!"), 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	log, _ := newLog()
	d := Open(t.Context(), path, log, fastOpts())
	d.Record(sync1("a", t0, OutcomeUpdated))
	waitFor(t, "Err", func() bool { return d.Err() != nil })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := d.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "1 reports not written") || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("Close: %v, want 1 report not written and why", err)
	}
	if _, err := d.Clients(ctx, Filter{}); err == nil {
		t.Error("query after Close worked")
	}
}

// Another program holds the file when the server starts: the open waits
// for it, serving goes on, and the reports are written afterwards.
func TestLockedAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.db")
	other := rawDB(t, path)
	conn, err := other.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"BEGIN EXCLUSIVE", "CREATE TABLE theirs (x)"} {
		if _, err := conn.ExecContext(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	d, lb := open(t, path, fastOpts())
	d.Record(sync1("a", t0, OutcomeUpdated))
	var e *Error
	waitFor(t, "Err to say locked", func() bool { return errors.As(d.Err(), &e) && e.Kind == KindLocked })
	if e.Op != "open" {
		t.Errorf("locked at %q, want open", e.Op)
	}
	if _, err := conn.ExecContext(t.Context(), "COMMIT"); err != nil {
		t.Fatal(err)
	}
	flush(t, d)
	waitFor(t, "healthy", func() bool { return d.Err() == nil })
	if n, err := d.Count(t.Context(), Filter{}); err != nil || n != 1 {
		t.Errorf("after the lock: %d %v", n, err)
	}
	if !strings.Contains(lb.String(), "works again") {
		t.Errorf("recovery not logged:\n%s", lb)
	}
}

// A report the database refuses (here an administrator's trigger) is
// dropped with a warning; the others in its batch are written.
func TestRefusedRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.db")
	d, lb := open(t, path, fastOpts())
	d.Record(sync1("first", t0, OutcomeUpdated))
	flush(t, d)
	if _, err := rawDB(t, path).Exec(`CREATE TRIGGER refuse BEFORE INSERT ON syncs
		WHEN NEW.client_id = 'poison' BEGIN SELECT RAISE(ABORT, 'refused'); END`); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "poison", "b"} {
		d.Record(sync1(id, t0, OutcomeUpdated))
	}
	flush(t, d)
	cs, err := d.Clients(t.Context(), Filter{})
	if err != nil || !slices.Equal(ids(cs), []string{"a", "b", "first"}) {
		t.Errorf("clients %v %v, want a, b, first", ids(cs), err)
	}
	if !strings.Contains(lb.String(), "refused by the database") || !strings.Contains(lb.String(), "client=poison") {
		t.Errorf("refusal not logged:\n%s", lb)
	}
	if d.Err() != nil {
		t.Errorf("Err after a refused record: %v", d.Err())
	}
}

// TestSupersedesCut: the client's late report of a sync the server
// recorded as cut replaces that row, and becomes the client's state when
// the cut was; a late report that supersedes nothing is added.
func TestSupersedesCut(t *testing.T) {
	d, _ := open(t, filepath.Join(t.TempDir(), "clients.db"), fastOpts())
	d.Record(sync1("c1", t0, OutcomeUpdated))
	cut := sync1("c1", t0.Add(time.Hour), OutcomeInterrupted)
	cut.Step, cut.Reason = "transfer", "connection reset by peer"
	d.Record(cut)
	// The client's report, its clock 2 s behind the server's.
	own := sync1("c1", t0.Add(time.Hour-2*time.Second), OutcomeInterrupted)
	own.Step, own.Reason, own.Reported, own.Supersedes = "fetch", "interrupted by the user", t0.Add(2*time.Hour), cut.At
	d.Record(own)
	flush(t, d)
	c, hist, err := d.Client(t.Context(), "c1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[0].Step != "fetch" || hist[1].Outcome != OutcomeUpdated {
		t.Errorf("history %+v, want the client's report in place of the cut, then the update", hist)
	}
	if c.Outcome != OutcomeInterrupted || c.Step != "fetch" || !c.LastSync.Equal(own.At) {
		t.Errorf("client %+v, want the client's report of the cut sync as its state", c)
	}
	// A newer outcome is not hidden by a late report that supersedes
	// nothing.
	d.Record(sync1("c1", t0.Add(3*time.Hour), OutcomeUpdated))
	late := sync1("c1", t0.Add(90*time.Minute), OutcomeFailed)
	late.Reported = t0.Add(4 * time.Hour)
	d.Record(late)
	flush(t, d)
	c, hist, _ = d.Client(t.Context(), "c1", 0)
	if len(hist) != 4 || c.Outcome != OutcomeUpdated {
		t.Errorf("after a late failure older than an update: %d rows, state %s", len(hist), c.Outcome)
	}
}

// TestReportSentTwice: a report whose acknowledgement was lost comes again,
// late, maybe after a restart of the server (nothing of it in memory): the
// file records it once, by the client and its ReportID; another client's
// sync with the same ReportID, and syncs without one, are their own.
func TestReportSentTwice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.db")
	const id = 0xfeed_0000_0000_0001 // above int64's range
	first := sync1("c1", t0, OutcomeFailed)
	first.Step, first.Reason, first.ReportID = "install", "the switch failed", id
	d, _ := open(t, path, fastOpts())
	d.Record(first)
	d.Record(sync1("c1", t0.Add(time.Second), OutcomeChecked)) // no ReportID
	flush(t, d)
	if err := d.Close(t.Context()); err != nil {
		t.Fatal(err)
	}

	d, _ = open(t, path, fastOpts())
	again := first
	again.At, again.Reported = t0.Add(-time.Minute), t0.Add(time.Hour) // the client's clock, sent late
	d.Record(again)
	d.Record(again) // twice in one batch too
	d.Record(sync1("c1", t0.Add(2*time.Second), OutcomeChecked))
	other := sync1("c2", t0, OutcomeFailed)
	other.ReportID = id
	d.Record(other)
	flush(t, d)

	_, hist, err := d.Client(t.Context(), "c1", 0)
	if err != nil {
		t.Fatal(err)
	}
	var failed, checked int
	for _, h := range hist {
		switch h.Outcome {
		case OutcomeFailed:
			failed++
			if !h.At.Equal(first.At) {
				t.Errorf("the failure recorded is the copy sent again: %+v", h)
			}
		case OutcomeChecked:
			checked++
		}
	}
	if failed != 1 || checked != 2 {
		t.Errorf("history of c1: %d failures, %d checks; want 1 and 2 (the report sent twice once, the syncs without an id each): %+v", failed, checked, hist)
	}
	if _, hist, err := d.Client(t.Context(), "c2", 0); err != nil || len(hist) != 1 {
		t.Errorf("c2, with the same ReportID as c1's sync: %d rows, %v; want its own row", len(hist), err)
	}
	var stored int64
	if err := rawDB(t, path).QueryRow(`SELECT report_id FROM syncs WHERE client_id = 'c2'`).Scan(&stored); err != nil || uint64(stored) != id {
		t.Errorf("report_id stored %d, %v; want %d", uint64(stored), err, uint64(id))
	}
}
