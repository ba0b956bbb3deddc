package appserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/clientdb"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/erpupdate/smartsync/internal/testtree"
	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/syncproto"
)

// outcomeSink reads the outcomes a server recorded in its client
// records, the real SQLite file, as outcome records.
type outcomeSink struct {
	srv *Server
}

func (k *outcomeSink) all() []outcomeRecord {
	db := k.srv.records.Load()
	if db == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.Flush(ctx); err != nil {
		return nil
	}
	clients, err := db.Clients(ctx, clientdb.Filter{})
	if err != nil {
		return nil
	}
	var out []outcomeRecord
	for _, c := range clients {
		_, hist, err := db.Client(ctx, c.ID, 1000)
		if err != nil {
			return nil
		}
		for _, h := range slices.Backward(hist) { // oldest first
			out = append(out, outcomeRecord{ClientID: h.ClientID, Host: h.Host, User: h.User, OS: h.OS, Path: h.Path,
				Addr: h.Addr, Build: h.Build, Release: h.Release, Ring: h.Ring, At: h.At, Reported: h.Reported,
				Late: !h.At.Equal(h.Reported), Outcome: h.Outcome, Step: h.Step, Reason: h.Reason,
				Files: uint32(h.Files), Bytes: uint64(h.Bytes), Duration: h.Duration})
		}
	}
	return out
}

// wait returns the first record that ok accepts, within 10 s.
func (k *outcomeSink) wait(t *testing.T, what string, ok func(outcomeRecord) bool) outcomeRecord {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, r := range k.all() {
			if ok(r) {
				return r
			}
		}
	}
	t.Fatalf("no record of %s; the sink has %+v", what, k.all())
	return outcomeRecord{}
}

// outcomeSite is a server of a linux update folder whose outcomes are
// collected, and the options of a client of it.
type outcomeSite struct {
	dir  string // the update folder
	ts   *testServer
	sink *outcomeSink
}

func newOutcomeSite(t *testing.T, files map[string]string, tune func(*Server)) *outcomeSite {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, files, oldTime)
	st := &outcomeSite{dir: dir}
	st.ts = startServer(t, linuxConfig(t, dir), func(s *Server) {
		s.cuts.grace = 200 * time.Millisecond
		if tune != nil {
			tune(s)
		}
	}, nil)
	st.sink = &outcomeSink{srv: st.ts.srv}
	return st
}

func (st *outcomeSite) client(t *testing.T, log *bytes.Buffer) smartclient.Options {
	o := smartclient.Options{Dir: filepath.Join(t.TempDir(), "install"), Server: st.ts.addr, OS: "linux", Yes: true,
		AllowUnsigned: true, Timeout: 5 * time.Second, RetryFor: -1, Host: "ws-7", User: "maria"}
	if log != nil {
		o.Log = slog.New(slog.NewTextHandler(log, nil))
	}
	return o
}

func syncOK(t *testing.T, o smartclient.Options) *smartclient.Result {
	t.Helper()
	res, err := smartclient.Sync(t.Context(), o)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return res
}

// logLine returns the server's log line with msg and every one of want.
func logLine(t *testing.T, logs *testtree.Buffer, msg string, want ...string) string {
	t.Helper()
	for line := range strings.Lines(logs.String()) {
		if !strings.Contains(line, "msg=\""+msg+"\"") {
			continue
		}
		found := true
		for _, w := range want {
			found = found && strings.Contains(line, w)
		}
		if found {
			return line
		}
	}
	t.Fatalf("no log line %q with %q:\n%s", msg, want, logs.String())
	return ""
}

// TestOutcomeSuccess: an update and a no-op check each reach the sink
// with the workstation's names, its install folder, the build and the
// figures, logged at INFO.
func TestOutcomeSuccess(t *testing.T) {
	st := newOutcomeSite(t, map[string]string{"app.txt": "one", "lib/a.so": "two"}, nil)
	o := st.client(t, nil)
	syncOK(t, o)
	r := st.sink.wait(t, "the update", func(r outcomeRecord) bool { return r.Outcome == "updated" })
	abs, _ := filepath.Abs(o.Dir)
	if r.ClientID == "" || r.Host != "ws-7" || r.User != "maria" || r.OS != "linux" || r.Path != abs || r.Build != srvBuild ||
		r.Files != 2 || r.Step != "" || r.Reason != "" || r.Late || !strings.HasPrefix(r.Addr, "127.0.0.1:") ||
		r.Duration <= 0 || r.Reported.IsZero() || !r.At.Equal(r.Reported) {
		t.Errorf("record of the update: %+v", r)
	}
	logLine(t, st.ts.logs, "sync outcome", "level=INFO", "outcome=updated", "host=ws-7", "user=maria", "build="+srvBuild)
	syncOK(t, o)
	st.sink.wait(t, "the no-op check", func(r outcomeRecord) bool { return r.Outcome == "up-to-date" })
}

// TestOutcomeReadOnlyFile: a read-only file in the install fails the
// preflight; the step and the reason reach the server, logged at WARN,
// where the server once logged an unexpected message and lost them.
func TestOutcomeReadOnlyFile(t *testing.T) {
	// Published releases, not the folder edited: a server under Wine
	// may not hear of an edit before the client comes.
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"keep": "folder"}, oldTime)
	cfg, state := linuxConfig(t, dir), t.TempDir()
	const b1, b2 = "7.00.240601A", "7.00.240701A"
	publishTree(t, cfg, state, b1, map[string]string{"app.txt": "one", "lib/libtotvs.so": "v1"}, nil)
	ts := startServerIn(t, cfg, state, nil, nil)
	st := &outcomeSite{dir: dir, ts: ts, sink: &outcomeSink{srv: ts.srv}}
	o := st.client(t, nil)
	syncOK(t, o)
	publishTree(t, cfg, state, b2, map[string]string{"app.txt": "one", "lib/libtotvs.so": "v2, a new build"}, nil)
	waitServed(t, ts, b2)
	lib := filepath.Join(o.Dir, "lib", "libtotvs.so")
	if err := os.Chmod(lib, 0o444); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(lib, 0o644) })
	if _, err := smartclient.Sync(t.Context(), o); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("sync over a read-only file: %v", err)
	}
	r := st.sink.wait(t, "the failure", func(r outcomeRecord) bool { return r.Outcome == "failed" })
	if r.Step != "preflight" || !strings.Contains(r.Reason, "the file lib/libtotvs.so is read-only") || r.Host != "ws-7" || r.Late {
		t.Errorf("record of the failure: %+v", r)
	}
	logLine(t, st.ts.logs, "sync failed", "level=WARN", "step=preflight", "host=ws-7", "user=maria", "build="+b1,
		"lib/libtotvs.so is read-only", "client=127.0.0.1:")
	if strings.Contains(st.ts.logs.String(), "unexpected message") {
		t.Errorf("the server took the report as unexpected:\n%s", st.ts.logs)
	}
}

// cancelOnProgress cancels the sync once file data has arrived.
type cancelOnProgress struct {
	once   sync.Once
	cancel context.CancelFunc
}

func (p *cancelOnProgress) Start(int, int64) {}
func (p *cancelOnProgress) Add(n int64) {
	if n > 0 {
		p.once.Do(p.cancel)
	}
}
func (p *cancelOnProgress) FileDone() {}
func (p *cancelOnProgress) Finish()   {}

// TestOutcomeInterrupted: a sync cancelled in the middle of its
// transfer is recorded by the server as interrupted (the session fetched
// and ended without a report), and the client's own report, kept in
// .smartclient, reaches the server at its next session, with its time.
func TestOutcomeInterrupted(t *testing.T) {
	big := make([]byte, 4<<20)
	rand.NewChaCha8([32]byte{5}).Read(big)
	st := newOutcomeSite(t, map[string]string{"app.txt": "one", "lib/big.so": string(big)}, func(s *Server) {
		s.MaxClientBytesPerSecond = 128 << 10 // 32 s for the big file
		s.TransferMinRate = 0
	})
	o := st.client(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	o.Progress = &cancelOnProgress{cancel: cancel}
	before := time.Now().Unix()
	if _, err := smartclient.Sync(ctx, o); err == nil {
		t.Fatal("a cancelled sync succeeded")
	}
	cut := st.sink.wait(t, "the cut session", func(r outcomeRecord) bool { return r.Outcome == "interrupted" && !r.Late })
	if cut.Step != "transfer" || cut.Host != "ws-7" || cut.Reason == "" {
		t.Errorf("the server's record of the cut session: %+v", cut)
	}
	logLine(t, st.ts.logs, "sync interrupted", "level=WARN", "step=transfer", "host=ws-7")
	if _, err := os.Stat(filepath.Join(o.Dir, ".smartclient", "pending-reports.json")); err != nil {
		t.Fatalf("the client kept no report: %v", err)
	}

	// The next session sends it first: it arrives before any file.
	ctx2, cancel2 := context.WithCancel(t.Context())
	o.Progress = &cancelOnProgress{cancel: cancel2}
	done := make(chan struct{})
	go func() {
		defer close(done)
		smartclient.Sync(ctx2, o)
	}()
	late := st.sink.wait(t, "the late report", func(r outcomeRecord) bool { return r.Late })
	cancel2()
	<-done
	if late.Outcome != "interrupted" || late.Step != "fetch" || late.At.Unix() < before || late.At.After(late.Reported) ||
		late.Release != 0 || late.Duration <= 0 || late.Host != "ws-7" {
		t.Errorf("the late report: %+v", late)
	}
	logLine(t, st.ts.logs, "sync interrupted", "level=WARN", "step=fetch", "late=true", "replaces_cut_at=")
	// The client's own report replaces the server's account of the cut
	// sync: one sync, one row, counted once.
	for _, r := range st.sink.all() {
		if r.Step == "transfer" && r.At.Equal(cut.At) {
			t.Errorf("the cut is still recorded beside the client's report of it: %+v", r)
		}
	}
	if n := testutil.ToFloat64(st.ts.srv.metrics.syncs.WithLabelValues("interrupted")); n < 1 || n > 2 {
		// 1 for the first sync; the second, cancelled too, may be cut
		// and counted by now.
		t.Errorf("appserver_syncs_total{outcome=interrupted} = %v, want the first sync counted once", n)
	}
}

// TestOutcomeQueuedWhileServerDown: a sync that cannot reach the server
// keeps its report, and the next sync delivers it, then forgets it.
func TestOutcomeQueuedWhileServerDown(t *testing.T) {
	st := newOutcomeSite(t, map[string]string{"app.txt": "one"}, nil)
	o := st.client(t, nil)
	syncOK(t, o)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := o
	down.Server = ln.Addr().String()
	ln.Close() // nobody listens there now
	if _, err := smartclient.Sync(t.Context(), down); err == nil {
		t.Fatal("a sync with the server down succeeded")
	}
	pendingFile := filepath.Join(o.Dir, ".smartclient", "pending-reports.json")
	data, err := os.ReadFile(pendingFile)
	if err != nil {
		t.Fatalf("the client kept no report: %v", err)
	}
	var kept struct{ Reports []struct{ ID uint64 } }
	if err := json.Unmarshal(data, &kept); err != nil || len(kept.Reports) != 1 || kept.Reports[0].ID == 0 {
		t.Fatalf("the kept reports %s (%v): want one, with the sync's id", data, err)
	}
	syncOK(t, o)
	late := st.sink.wait(t, "the late report", func(r outcomeRecord) bool { return r.Late })
	if late.Outcome != "failed" || late.Step != "connect" || !strings.Contains(late.Reason, down.Server) {
		t.Errorf("the late report: %+v", late)
	}
	logLine(t, st.ts.logs, "sync failed", "level=WARN", "step=connect", "late=true")
	st.sink.wait(t, "the sync's own report", func(r outcomeRecord) bool { return r.Outcome == "up-to-date" && !r.Late })
	if _, err := os.Stat(pendingFile); !os.IsNotExist(err) {
		t.Errorf("the report is still kept once delivered: %v", err)
	}

	// A new workstation whose first sync cannot reach the server: its
	// install folder keeps only its id and the report, delivered next.
	fresh := down
	fresh.Dir, fresh.Host = filepath.Join(t.TempDir(), "new"), "ws-new"
	if _, err := smartclient.Sync(t.Context(), fresh); err == nil {
		t.Fatal("a first sync with the server down succeeded")
	}
	fresh.Server = o.Server
	syncOK(t, fresh)
	late = st.sink.wait(t, "the new workstation's late report", func(r outcomeRecord) bool { return r.Late && r.Host == "ws-new" })
	if late.Outcome != "failed" || late.Step != "connect" {
		t.Errorf("the new workstation's late report: %+v", late)
	}
}

// TestOutcomeCorruptPending: a damaged file of kept reports, and the
// temporary file of a write a crash cut, are dropped with a log line; the
// sync works and sends nothing of them.
func TestOutcomeCorruptPending(t *testing.T) {
	st := newOutcomeSite(t, map[string]string{"app.txt": "one"}, nil)
	var clientLog bytes.Buffer
	o := st.client(t, &clientLog)
	syncOK(t, o)
	meta := filepath.Join(o.Dir, ".smartclient")
	writeFile(t, filepath.Join(meta, "pending-reports.json"), `{"version":1,"reports":[{"outcome":3,"at":17`)
	writeFile(t, filepath.Join(meta, ".pending-reports.json.tmp-42"), "torn")
	if res := syncOK(t, o); res.Outcome != syncproto.OutcomeUpToDate {
		t.Fatalf("outcome %v", res.Outcome)
	}
	if !strings.Contains(clientLog.String(), "dropping the damaged file of reports not yet delivered") {
		t.Errorf("the client did not log the drop:\n%s", clientLog.String())
	}
	st.sink.wait(t, "the sync's report", func(r outcomeRecord) bool { return r.Outcome == "up-to-date" })
	for _, r := range st.sink.all() {
		if r.Late {
			t.Errorf("a report from the damaged file: %+v", r)
		}
	}
	for _, p := range []string{"pending-reports.json", ".pending-reports.json.tmp-42"} {
		if _, err := os.Stat(filepath.Join(meta, p)); !os.IsNotExist(err) {
			t.Errorf("%s is still there: %v", p, err)
		}
	}
}

// TestOutcomeProtocol, with a client that speaks the protocol by hand: a
// report of an earlier sync is acknowledged and the session's requests go
// on; a session cut after its manifest is recorded as interrupted after
// the grace, unless its client reports on a session of its own within it
// (a transfer that a full disk ended early).
func TestOutcomeProtocol(t *testing.T) {
	const grace = time.Second
	site := func(t *testing.T) *outcomeSite {
		return newOutcomeSite(t, map[string]string{"app.txt": "one", "lib/a.so": "two"}, func(s *Server) { s.cuts.grace = grace })
	}
	hello := func(t *testing.T, st *outcomeSite, id string) *testClient {
		t.Helper()
		c := mustDial(t, st.ts.addr)
		if err := c.send(syncproto.Hello{ClientBuild: srvMinBuild, OS: "linux", ClientID: id, Host: "ws-" + id, User: "u", Path: "/opt/totvs"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.r.Expect(syncproto.MsgWelcome); err != nil {
			t.Fatal(err)
		}
		return c
	}
	t.Run("late report, then the session goes on", func(t *testing.T) {
		st := site(t)
		c := hello(t, st, "a1")
		at := time.Now().Add(-time.Hour).Unix()
		if err := c.report(syncproto.Report{Outcome: syncproto.OutcomeFailed, Build: srvMinBuild, Step: "fetch", Message: "disk full", At: at}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.manifest(); err != nil {
			t.Fatalf("the manifest after a late report: %v", err)
		}
		if err := c.send(syncproto.RequestEnd{}); err != nil {
			t.Fatal(err)
		}
		if err := c.report(syncproto.Report{Outcome: syncproto.OutcomeChecked, Build: srvMinBuild, Duration: 1500}); err != nil {
			t.Fatal(err)
		}
		late := st.sink.wait(t, "the late report", func(r outcomeRecord) bool { return r.Late })
		if late.At.Unix() != at || late.Outcome != "failed" || late.Step != "fetch" || late.Reason != "disk full" || late.Path != "/opt/totvs" {
			t.Errorf("late report: %+v", late)
		}
		own := st.sink.wait(t, "the session's report", func(r outcomeRecord) bool { return r.Outcome == "checked" })
		if own.Late || own.Duration != 1500*time.Millisecond || own.Host != "ws-a1" {
			t.Errorf("the session's report: %+v", own)
		}
	})
	t.Run("a report sent again, its ReportAck lost", func(t *testing.T) {
		st := site(t)
		c := hello(t, st, "d1")
		if _, _, err := c.manifest(); err != nil {
			t.Fatal(err)
		}
		if err := c.send(syncproto.RequestEnd{}); err != nil {
			t.Fatal(err)
		}
		const id = 0xfeed_0000_0000_0001 // above int64's range: stored as it is
		first := syncproto.Report{Outcome: syncproto.OutcomeFailed, Build: srvMinBuild, Step: "install", Message: "the switch failed", ID: id}
		if err := c.send(first); err != nil {
			t.Fatal(err)
		}
		// The client never reads the ReportAck: the connection goes first.
		st.sink.wait(t, "the report", func(r outcomeRecord) bool { return r.Outcome == "failed" && r.ClientID == "d1" })
		c.conn.Close()
		// The client kept it and sends it at its next session, late.
		again := first
		again.At = time.Now().Add(-time.Minute).Unix()
		c2 := hello(t, st, "d1")
		if err := c2.report(again); err != nil {
			t.Fatal(err)
		}
		// And a report of another sync with another id is recorded.
		other := syncproto.Report{Outcome: syncproto.OutcomeFailed, Build: srvMinBuild, Step: "fetch", Message: "another", At: again.At, ID: id + 1}
		if err := c2.report(other); err != nil {
			t.Fatal(err)
		}
		st.sink.wait(t, "the other sync", func(r outcomeRecord) bool { return r.Reason == "another" })
		n := 0
		for _, r := range st.sink.all() {
			if r.Reason == "the switch failed" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("the report sent twice is recorded %d times, want once: %+v", n, st.sink.all())
		}
		logLine(t, st.ts.logs, "a report sent again is not recorded twice", "id=d1", "report=18369338455114121217")
		if got := testutil.ToFloat64(st.ts.srv.metrics.syncs.WithLabelValues("failed")); got != 2 {
			t.Errorf("appserver_syncs_total{outcome=failed} = %v, want 2 (the report sent twice counted once)", got)
		}
	})
	t.Run("cut", func(t *testing.T) {
		st := site(t)
		c := hello(t, st, "b1")
		if _, _, err := c.manifest(); err != nil {
			t.Fatal(err)
		}
		c.conn.Close()
		r := st.sink.wait(t, "the cut", func(r outcomeRecord) bool { return r.Outcome == "interrupted" })
		if r.Step != "transfer" || r.Host != "ws-b1" || r.Reason == "" || r.Late {
			t.Errorf("record of the cut: %+v", r)
		}
	})
	t.Run("cut, then reported alone", func(t *testing.T) {
		st := site(t)
		c := hello(t, st, "c1")
		if _, _, err := c.manifest(); err != nil {
			t.Fatal(err)
		}
		c.conn.Close()
		c2 := hello(t, st, "c1")
		if err := c2.report(syncproto.Report{Outcome: syncproto.OutcomeFailed, Build: srvMinBuild, Step: "fetch", Message: "no space left on device"}); err != nil {
			t.Fatal(err)
		}
		st.sink.wait(t, "the failure", func(r outcomeRecord) bool { return r.Outcome == "failed" })
		time.Sleep(grace + 300*time.Millisecond)
		for _, r := range st.sink.all() {
			if r.Outcome == "interrupted" {
				t.Errorf("the cut is recorded although its client reported: %+v", r)
			}
		}
	})
}

// TestOutcomeLateReportsNotCounted: a staged rollout counts a session's
// own report only: reports of earlier syncs, failures though they be,
// sent by pilot workstations after a fetch, neither halt it nor count;
// the session's own record names its release and ring, the late one
// neither.
func TestOutcomeLateReportsNotCounted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"keep": "folder"}, oldTime)
	cfg, _ := loadServerConfig(t, "Enable=1", "PathLinux="+dir, "Build="+srvBuild,
		"[ROLLOUT]", "Pilot=pilot-*", "Delay=0", "MinSuccesses=5", "HaltPercent=40", "MinReports=2")
	state := t.TempDir()
	const b1, b2 = "7.00.240601A", "7.00.240701A"
	publishTree(t, cfg, state, b1, map[string]string{"app": "one"}, nil)
	ts := startServerIn(t, cfg, state, nil, nil)
	sink := &outcomeSink{srv: ts.srv}
	publishTree(t, cfg, state, b2, map[string]string{"app": "two"}, nil)
	waitServed(t, ts, b2)
	for _, id := range []string{"p1", "p2", "p3"} {
		c, _ := fetchAs(t, ts.addr, "pilot-"+id, id, b1)
		late := syncproto.Report{Outcome: syncproto.OutcomeFailed, Build: b2, Step: "install", Message: "an earlier failure", At: time.Now().Add(-time.Hour).Unix()}
		if err := c.report(late); err != nil {
			t.Fatal(err)
		}
		if err := c.report(syncproto.Report{Outcome: syncproto.OutcomeChecked, Build: b1}); err != nil {
			t.Fatal(err)
		}
		c.conn.Close()
	}
	if got := syncAs(t, ts.addr, "pilot-9", "p9", b1, syncproto.OutcomeUpToDate); got != b2 {
		t.Errorf("late reports halted the rollout: a pilot got %s, want %s\n%s", got, b2, ts.logs)
	}
	own := sink.wait(t, "a session's own report", func(r outcomeRecord) bool { return r.Outcome == "checked" && r.ClientID == "p1" })
	if own.Release != 2 || own.Ring != "pilot" {
		t.Errorf("the session's own record: %+v", own)
	}
	late := sink.wait(t, "a late report", func(r outcomeRecord) bool { return r.Late && r.ClientID == "p1" })
	if late.Release != 0 || late.Ring != "" || late.Outcome != "failed" {
		t.Errorf("the late record: %+v", late)
	}
}

// TestOutcomeDeclinedAndChecked: a first install the user declines, one
// declined for want of a terminal to ask on, and a check each reach the
// server.
func TestOutcomeDeclinedAndChecked(t *testing.T) {
	st := newOutcomeSite(t, map[string]string{"app.txt": "one"}, nil)
	asked := st.client(t, nil)
	asked.Yes, asked.Host = false, "asked"
	asked.Confirm = func(string) (bool, error) { return false, nil }
	if _, err := smartclient.Sync(t.Context(), asked); !errors.Is(err, smartclient.ErrDeclined) {
		t.Fatalf("declined sync: %v", err)
	}
	r := st.sink.wait(t, "the user's no", func(r outcomeRecord) bool { return r.Outcome == "declined" && r.Host == "asked" })
	if r.Step != "" || r.Late {
		t.Errorf("record of the user's no: %+v", r)
	}
	noTerminal := st.client(t, nil)
	noTerminal.Yes, noTerminal.Host = false, "unattended"
	if _, err := smartclient.Sync(t.Context(), noTerminal); !errors.Is(err, smartclient.ErrDeclined) {
		t.Fatalf("sync without a terminal: %v", err)
	}
	r = st.sink.wait(t, "the unattended no", func(r outcomeRecord) bool { return r.Outcome == "declined" && r.Host == "unattended" })
	if r.Reason != "no terminal to ask on" {
		t.Errorf("record of the unattended no: %+v", r)
	}
	check := st.client(t, nil)
	check.CheckOnly, check.Host, check.Dir = true, "checker", asked.Dir
	if _, err := smartclient.Sync(t.Context(), check); err != nil {
		t.Fatalf("check: %v", err)
	}
	st.sink.wait(t, "the check", func(r outcomeRecord) bool { return r.Outcome == "checked" && r.Host == "checker" })
	logLine(t, st.ts.logs, "sync outcome", "level=INFO", "outcome=declined", "host=asked")
}

// TestOutcomeBrokenInstall: a workstation whose state file is damaged
// fails every sync before it starts; the failure reaches the server
// (step "state", the reason naming the file), and the client's row keeps
// the build it knew, the report knowing none.
func TestOutcomeBrokenInstall(t *testing.T) {
	st := newOutcomeSite(t, map[string]string{"app.txt": "one"}, nil)
	o := st.client(t, nil)
	syncOK(t, o)
	stateFile := filepath.Join(o.Dir, ".smartclient", "state.bin")
	if _, err := os.Stat(stateFile); err != nil {
		t.Fatalf("no state file after a sync: %v", err)
	}
	writeFile(t, stateFile, "not a state file")
	_, err := smartclient.Sync(t.Context(), o)
	if err == nil || !strings.Contains(err.Error(), "reading client state") {
		t.Fatalf("sync with a damaged state file: %v", err)
	}
	r := st.sink.wait(t, "the failure", func(r outcomeRecord) bool { return r.Outcome == "failed" })
	if r.Step != "state" || !strings.Contains(r.Reason, "state.bin") || r.Host != "ws-7" || r.Late {
		t.Errorf("record of the failure: %+v", r)
	}
	logLine(t, st.ts.logs, "sync failed", "level=WARN", "step=state", "host=ws-7")
	db := st.ts.srv.records.Load()
	c, _, err := db.Client(t.Context(), r.ClientID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if c.Build != srvBuild || !c.Failed() {
		t.Errorf("the client's row: build %q, outcome %s; want the build it had, %q, and the failure", c.Build, c.Outcome, srvBuild)
	}
}

// TestOutcomeReportSentAgainAfterRestart: the server reads the ids of the
// latest reports back from clients.db at its start, so that a report
// whose ReportAck was lost just before a restart, sent again after it, is
// neither logged as new nor counted again in the metrics.
func TestOutcomeReportSentAgainAfterRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"app.txt": "one"}, oldTime)
	cfg, state := linuxConfig(t, dir), t.TempDir()
	const id = 0xfeed_0000_0000_0002
	first := syncproto.Report{Outcome: syncproto.OutcomeFailed, Build: srvMinBuild, Step: "install", Message: "before the restart", ID: id}
	report := func(ts *testServer, r syncproto.Report) {
		t.Helper()
		c := mustDial(t, ts.addr)
		if err := c.send(syncproto.Hello{ClientBuild: srvMinBuild, OS: "linux", ClientID: "r1", Host: "ws-r1"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.r.Expect(syncproto.MsgWelcome); err != nil {
			t.Fatal(err)
		}
		if err := c.report(r); err != nil {
			t.Fatal(err)
		}
		c.conn.Close()
	}
	ts := startServerIn(t, cfg, state, nil, nil)
	report(ts, first)
	(&outcomeSink{srv: ts.srv}).wait(t, "the report", func(r outcomeRecord) bool { return r.Reason == "before the restart" })
	if err := ts.stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}

	ts2 := startServerIn(t, cfg, state, nil, nil)
	key := reportKey{Client: "r1", ID: id}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ts2.srv.reports.mu.Lock()
		_, ok := ts2.srv.reports.seen[key]
		ts2.srv.reports.mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted server did not read the report's id back from clients.db:\n%s", ts2.logs)
		}
	}
	again := first
	again.At = time.Now().Add(-time.Minute).Unix()
	report(ts2, again)
	logLine(t, ts2.logs, "a report sent again is not recorded twice", "id=r1")
	if got := testutil.ToFloat64(ts2.srv.metrics.syncs.WithLabelValues("failed")); got != 0 {
		t.Errorf("appserver_syncs_total{outcome=failed} = %v after the restart, want 0: the report was counted before it", got)
	}
	n := 0
	for _, r := range (&outcomeSink{srv: ts2.srv}).all() {
		if r.Reason == "before the restart" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the report is recorded %d times, want once", n)
	}
}

// TestRecentReportsSeed: the ids read back at the start go before those
// taken since; past the ring's size the oldest read back go first, never
// one taken since the start.
func TestRecentReportsSeed(t *testing.T) {
	var rr recentReports
	rr.add("live", 1)
	rr.add("live", 2)
	var keys []reportKey
	for i := range maxReportsKept {
		keys = append(keys, reportKey{Client: "old", ID: uint64(i + 1)})
	}
	keys = append(keys, reportKey{Client: "live", ID: 2}) // read back too
	rr.seed(keys)
	for _, k := range []reportKey{{Client: "live", ID: 1}, {Client: "live", ID: 2}, {Client: "old", ID: maxReportsKept}, {Client: "old", ID: 3}} {
		if rr.add(k.Client, k.ID) {
			t.Errorf("%v forgotten by the seed", k)
		}
	}
	for _, k := range []reportKey{{Client: "old", ID: 1}, {Client: "old", ID: 2}} {
		if _, ok := rr.seen[k]; ok {
			t.Errorf("%v kept: the oldest read back go first", k)
		}
	}
	if len(rr.seen) != maxReportsKept || len(rr.order) != maxReportsKept {
		t.Errorf("%d ids, %d in the ring; want %d", len(rr.seen), len(rr.order), maxReportsKept)
	}
	// The ring goes on from the seed: the next new id evicts the oldest.
	rr.add("new", 1)
	if _, ok := rr.seen[reportKey{Client: "old", ID: 3}]; ok || len(rr.seen) != maxReportsKept {
		t.Errorf("after one more id: old 3 kept %v, %d ids", ok, len(rr.seen))
	}
}
