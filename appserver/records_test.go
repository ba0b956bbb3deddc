package appserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/erpupdate/smartsync/appserver/internal/clientdb"
	"github.com/erpupdate/smartsync/smartclient"
)

// TestRecordsLockedServingGoesOn: while another program holds the
// client records' file locked, clients are served as ever; their
// outcomes wait in memory, the console says why its pages are old, and
// they are written once the lock is let go.
func TestRecordsLockedServingGoesOn(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"app": "one"}, oldTime)
	state := t.TempDir()
	ts := startServerIn(t, linuxConfig(t, dir), state, func(s *Server) {
		s.recordsOptions = clientdb.Options{RetryEvery: 100 * time.Millisecond, BusyTimeout: 50 * time.Millisecond}
	}, nil)
	sync := func(host string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if _, err := smartclient.Sync(ctx, smartclient.Options{Dir: filepath.Join(t.TempDir(), host), Server: ts.addr, OS: "linux",
			Yes: true, AllowUnsigned: true, Timeout: 10 * time.Second, RetryFor: -1, Host: host, User: "u"}); err != nil {
			t.Fatalf("%s: %v", host, err)
		}
	}
	sync("ws-1")
	db := ts.srv.records.Load() // open since the server serves
	if err := db.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}

	// Another program (an administrator's sqlite3 shell) takes the lock.
	other, err := sql.Open("sqlite", "file:"+clientsDBFile(state))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	sync("ws-2") // served all the same
	sync("ws-3")
	var e *clientdb.Error
	for deadline := time.Now().Add(10 * time.Second); !(errors.As(db.Err(), &e) && e.Kind == clientdb.KindLocked && db.Queued() == 2); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("while locked: Err %v, %d queued, want locked and 2\n%s", db.Err(), db.Queued(), ts.logs)
		}
	}
	if !strings.Contains(ts.logs.String(), "level=ERROR") || !strings.Contains(ts.logs.String(), "clients.db") {
		t.Errorf("the lock is not logged as an error naming the file:\n%s", ts.logs)
	}
	// The console says why it may be out of date.
	src := &consoleSource{s: ts.srv}
	if ov, err := src.Overview(t.Context()); err == nil {
		// Read through the lock (readers go on in WAL mode): the page
		// says it may be behind, and why.
		if !strings.Contains(ov.Behind, "2 reports wait in memory") || !strings.Contains(ov.Behind, "locked") {
			t.Errorf("the overview read through the lock does not say it may be behind: %q", ov.Behind)
		}
	} else if !strings.Contains(err.Error(), "locked") {
		t.Errorf("the overview's error does not say the file is locked: %v", err)
	}

	if _, err := conn.ExecContext(t.Context(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := db.Flush(ctx); err != nil {
		t.Fatalf("after the lock: %v", err)
	}
	list, err := db.Clients(t.Context(), clientdb.Filter{})
	if err != nil || len(list) != 3 {
		t.Fatalf("after the lock: %d clients (%v), want 3", len(list), err)
	}
	if db.Err() != nil {
		t.Errorf("Err after recovery: %v", db.Err())
	}
}

// TestDigestFromRecords: the daily digest is made from what real syncs
// recorded: the failure with its host, user and reason, and nothing on a
// quiet day.
func TestDigestFromRecords(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"keep": "folder"}, oldTime)
	cfg := linuxConfig(t, dir)
	state := t.TempDir()
	publishTree(t, cfg, state, "7.00.240601A", map[string]string{"app": "one", "lib/x.so": "x"}, nil)
	ts := startServerIn(t, cfg, state, nil, nil)
	start := time.Now().Add(-time.Second)
	o := smartclient.Options{Dir: filepath.Join(t.TempDir(), "caixa-9"), Server: ts.addr, OS: "linux", Yes: true, AllowUnsigned: true,
		Timeout: 10 * time.Second, RetryFor: -1, Host: "caixa-9", User: "rita"}
	if _, err := smartclient.Sync(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.records.Load().Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, _, any, err := ts.srv.makeDigest(t.Context(), start, time.Now().Add(time.Second)); err != nil || any {
		t.Fatalf("a digest of a good day: any %v, err %v", any, err)
	}
	publishTree(t, cfg, state, "7.00.240701A", map[string]string{"app": "two", "lib/x.so": "x2"}, nil)
	waitServed(t, ts, "7.00.240701A")
	if err := os.Chmod(filepath.Join(o.Dir, "lib", "x.so"), 0o444); err != nil {
		t.Fatal(err)
	}
	if _, err := smartclient.Sync(t.Context(), o); err == nil {
		t.Fatal("the sync over a read-only file did not fail")
	}
	if err := ts.srv.records.Load().Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	subject, body, any, err := ts.srv.makeDigest(t.Context(), start, time.Now().Add(time.Second))
	if err != nil || !any {
		t.Fatalf("a digest of a bad day: any %v, err %v", any, err)
	}
	if !strings.Contains(subject, "1 failed sync since") {
		t.Errorf("subject %q", subject)
	}
	for _, want := range []string{"caixa-9 (rita, linux)", "preflight:", "lib/x.so is read-only", "appserver clients --config"} {
		if !strings.Contains(body, want) {
			t.Errorf("the digest does not say %q:\n%s", want, body)
		}
	}
}

// TestClientCountsBounded: builds are what clients say; past
// maxClientSeries pairs, the smallest are counted as build "other", so a
// script that makes up builds cannot make up series without end.
func TestClientCountsBounded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"app": "one"}, oldTime)
	ts := startServer(t, linuxConfig(t, dir), nil, nil)
	// Serve has opened the records once a session is served.
	if err := fullSession(ts.addr, "0123456789abcdef0123456789abcdef", map[string]string{"app": "one"}); err != nil {
		t.Fatal(err)
	}
	db := ts.srv.records.Load()
	now := time.Now()
	for i := range 300 {
		db.Record(clientdb.Sync{ClientID: fmt.Sprintf("%032x", i+1), OS: "linux", Build: fmt.Sprintf("made-up-%d", i), At: now, Outcome: "failed"})
	}
	for i := range 5 {
		db.Record(clientdb.Sync{ClientID: fmt.Sprintf("%032x", 1000+i), OS: "windows", Build: "7.00.240601A", At: now, Outcome: "updated"})
	}
	if err := db.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	counts, err := ts.srv.clientCounts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	if len(counts) > maxClientSeries || counts[[2]string{"7.00.240601A", "windows"}] != 5 || counts[[2]string{"other", "linux"}] == 0 || total < 305 {
		t.Errorf("%d series, windows 7.00.240601A %d, other linux %d, total %d", len(counts),
			counts[[2]string{"7.00.240601A", "windows"}], counts[[2]string{"other", "linux"}], total)
	}
}
