package appserver

import (
	"archive/tar"
	"compress/gzip"
	"crypto/ed25519"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/handover"
	"github.com/erpupdate/smartsync/appserver/release"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/otiai10/copy"
)

// vendorKey is the test vendor's signing key; otherKey a key nobody
// trusts.
var (
	vendorKey = ed25519.NewKeyFromSeed([]byte(strings.Repeat("v", ed25519.SeedSize)))
	otherKey  = ed25519.NewKeyFromSeed([]byte(strings.Repeat("o", ed25519.SeedSize)))
)

// serverProgram is the name of the server's program in the test
// installations and releases: appserver, or appserver.exe on Windows,
// where a program without it cannot be started.
var serverProgram = "appserver"

func init() {
	if runtime.GOOS == "windows" {
		serverProgram += ".exe"
	}
}

// helperArg is the first argument of the update helper (see
// handover.Start), which TestMain answers for the stand-in program.
const helperArg = "selfupdate-helper"

// TestMain makes the test binary, when started as a server's update
// helper, a stand-in that exits at once: a copy of it is the server's
// program of the test installations on Windows (see writeStandIn).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == helperArg {
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// writeStandIn writes at path (a test installation's serverProgram) a
// stand-in for the server's program that does nothing when started as the
// update helper: a shell script that exits, or on Windows, which cannot
// run a script as a program, a copy of the test binary (see TestMain).
func writeStandIn(t testing.TB, path string) {
	t.Helper()
	if runtime.GOOS != "windows" {
		writeFile(t, path, "#!/bin/sh\nexit 0\n")
		return
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("finding the test binary to stand in for the server's program: %v", err)
	}
	// Not a hard link: Windows refuses to remove any name of a running
	// program's file, so the test could not remove its installation.
	if err := copy.Copy(self, path); err != nil {
		t.Fatalf("copying the test binary to stand in for the server's program: %v", err)
	}
}

// makeRelease writes a release archive of files (path -> content, with
// BUILD set to build) into dir and signs it with key. It returns the
// archive's path.
func makeRelease(t testing.TB, dir, build string, files map[string]string, key ed25519.PrivateKey) string {
	t.Helper()
	path := filepath.Join(dir, "appserver-"+build+".tar.gz")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	all := map[string]string{"BUILD": build + "\n"}
	for k, v := range files {
		all[k] = v
	}
	for name, content := range all {
		mode := int64(0o644)
		if name == serverProgram || strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(content)), Typeflag: tar.TypeReg, ModTime: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, content); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := release.Sign(path, key); err != nil {
		t.Fatal(err)
	}
	return path
}

// selfUpdateServer starts an in-process server that can be updated: an
// installation folder with BUILD oldBuild and an AppServer.ini with
// [ADMIN] and [SELFUPDATE]. It returns the server and its installation.
func selfUpdateServer(t *testing.T, oldBuild string) (*testServer, string) {
	t.Helper()
	return selfUpdateServerINI(t, oldBuild, "", nil)
}

// selfUpdateServerINI is selfUpdateServer with extra lines appended to its
// [SELFUPDATE] section (and sections after it), and tune applied to the
// server before it serves.
func selfUpdateServerINI(t *testing.T, oldBuild, extra string, tune func(*Server)) (*testServer, string) {
	t.Helper()
	root := t.TempDir()
	install := filepath.Join(root, "appserver")
	upd := filepath.Join(install, "remote_linux_upd")
	if err := os.MkdirAll(upd, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(upd, "smartclient"), "client v1")
	writeFile(t, filepath.Join(install, "BUILD"), oldBuild+"\n")
	writeStandIn(t, filepath.Join(install, serverProgram))
	hash, _ := testHashes()
	ini := "[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nPathLinux=" + upd + "\nBuild=" + srvBuild + "\n" +
		"[ADMIN]\nUser=admin\nPasswordHash=" + hash + "\n" +
		"[SELFUPDATE]\nPublicKey=" + release.FormatPublicKey(vendorKey.Public().(ed25519.PublicKey)) + "\n" + extra
	cfgPath := filepath.Join(install, "AppServer.ini")
	writeFile(t, cfgPath, ini)
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(install, "appserver-state")
	ts := startServer(t, cfg, func(s *Server) {
		s.IdleTimeout = 5 * time.Second
		s.SetSelf(Self{InstallDir: install, Exe: filepath.Join(install, serverProgram), WorkDir: install,
			ConfigFile: cfgPath, StateDir: state, Listen: "127.0.0.1:1", Build: oldBuild})
		if tune != nil {
			tune(s)
		}
	}, nil)
	return ts, install
}

// adminResult is what an administrator's session got.
type adminResult struct {
	events   []string
	statuses []syncproto.UpdateStatus
	session  *syncproto.AdminSession // the server's AdminSession, if it sent one
	token    []byte                  // its token, opened
	err      error
}

// adminSession logs in with password and sends req, reading until the
// server closes the session or stop says enough.
func adminSession(t *testing.T, addr, password string, req syncproto.Admin, stop func(adminResult) bool) adminResult {
	t.Helper()
	return adminExchange(t, addr, []byte(password), req, nil, stop)
}

// adminExchange sends req with secret (a password, or a token with
// AdminToken in req.Flags) sealed; tamper, when set, changes the request
// after it was sealed, as a machine on the way would.
func adminExchange(t *testing.T, addr string, secret []byte, req syncproto.Admin, tamper func(*syncproto.Admin), stop func(adminResult) bool) adminResult {
	t.Helper()
	c := mustDial(t, addr)
	c.conn.SetDeadline(time.Now().Add(20 * time.Second))
	priv, key, err := syncproto.NewAdminKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.send(key); err != nil {
		t.Fatal(err)
	}
	m, err := c.r.Expect(syncproto.MsgAdminKey)
	if err != nil {
		return adminResult{err: err}
	}
	serverKey := m.(syncproto.AdminKey)
	if req.User == "" {
		req.User = "admin"
	}
	if err := syncproto.SealRequest(priv, serverKey, &req, secret); err != nil {
		t.Fatal(err)
	}
	if tamper != nil {
		tamper(&req)
	}
	if err := c.send(req); err != nil {
		t.Fatal(err)
	}
	var res adminResult
	for {
		m, err := c.r.Read()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				res.err = err
			}
			return res
		}
		switch m := m.(type) {
		case syncproto.AdminEvent:
			res.events = append(res.events, m.Text)
		case syncproto.UpdateStatus:
			res.statuses = append(res.statuses, m)
		case syncproto.AdminSession:
			res.session = &m
			if res.token, err = syncproto.OpenToken(priv, serverKey, m); err != nil {
				t.Fatalf("opening the session token: %v", err)
			}
		default:
			t.Fatalf("administrator got %v", m.Type())
		}
		if stop != nil && stop(res) {
			return res
		}
	}
}

func wantCode(t *testing.T, err error, code syncproto.Code, text string) {
	t.Helper()
	var pe *syncproto.Error
	if !errors.As(err, &pe) || pe.Code != code || !strings.Contains(pe.Message, text) {
		t.Fatalf("got %v, want %v containing %q", err, code, text)
	}
}

func TestAdminLogin(t *testing.T) {
	ts, _ := selfUpdateServer(t, "7.00.240501A")
	for _, tc := range []struct {
		name, user, password, want string
	}{
		{"wrong password", "admin", "wrong horse", "wrong administrator user or password"},
		{"wrong user", "root", "correct horse", "wrong administrator user or password"},
		// Two failures: the address is refused unchecked for a second,
		// even with the right password.
		{"throttled", "admin", "correct horse", "too many failed logins"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := adminSession(t, ts.addr, tc.password, syncproto.Admin{User: tc.user, Op: syncproto.OpStatus}, nil)
			wantCode(t, res.err, syncproto.CodeDenied, tc.want)
		})
	}
	ts.srv.logins.Forget() // as a second later
	if !strings.Contains(ts.logs.String(), "administrator login refused") {
		t.Error("refused logins were not logged")
	}
	res := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpStatus}, nil)
	if res.err != nil || len(res.statuses) != 1 || res.statuses[0].State != syncproto.StateNone || res.statuses[0].RunningBuild != "7.00.240501A" {
		t.Fatalf("status = %+v", res)
	}
}

func TestSelfUpdateRefused(t *testing.T) {
	t.Setenv(TestShortCountdownEnv, "1")
	ts, install := selfUpdateServer(t, "7.00.240501A")
	rel := t.TempDir()
	good := map[string]string{serverProgram: "#!/bin/sh\n"}
	badSig := makeRelease(t, t.TempDir(), "7.01.250101A", good, otherKey)
	older := makeRelease(t, t.TempDir(), "6.99.230101A", good, vendorKey)
	same := makeRelease(t, t.TempDir(), "7.00.240501A", good, vendorKey)
	noProgram := makeRelease(t, t.TempDir(), "7.01.250101A", map[string]string{"README": "x"}, vendorKey)
	noSig := makeRelease(t, rel, "7.01.250101A", good, vendorKey)
	os.Remove(noSig + ".sig")
	for _, tc := range []struct {
		name, source string
		countdown    uint32
		want         string
	}{
		{"bad signature", badSig, 5, "release refused"},
		{"downgrade", older, 5, "older than the running build"},
		{"same build", same, 5, "the same as the running build"},
		{"no program", noProgram, 5, "has no " + serverProgram},
		{"no signature", noSig, 5, "signature"},
		{"relative path", "appserver.tar.gz", 5, "absolute"},
		{"countdown too long", badSig, 3600, "countdown"},
		{"no source", "", 5, "no release source"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpUpdate, Source: tc.source, Countdown: tc.countdown}, nil)
			wantCode(t, res.err, syncproto.CodeRefused, tc.want)
			if _, err := os.Stat(install + "_new"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a refused release left %s_new", install)
			}
			st := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpStatus}, nil)
			if len(st.statuses) != 1 || st.statuses[0].State == syncproto.StateCountdown {
				t.Fatalf("status after a refusal: %+v", st)
			}
		})
	}
	// A downgrade the administrator allows is accepted, and can be
	// cancelled during its countdown.
	res := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpUpdate, Source: older, Countdown: 600, Flags: syncproto.AdminAllowDowngrade},
		func(r adminResult) bool {
			return len(r.events) > 0 && strings.Contains(r.events[len(r.events)-1], "countdown")
		})
	if res.err != nil {
		t.Fatalf("allowed downgrade: %v", res.err)
	}
	cancel := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpCancel}, nil)
	if cancel.err != nil || cancel.statuses[0].State != syncproto.StateCancelled {
		t.Fatalf("cancel: %+v", cancel)
	}
	if _, err := os.Stat(install + "_new"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a cancelled update left %s_new", install)
	}
}

// staySession syncs nothing, reports, stays for notices, and reads the
// first heartbeat.
func staySession(t *testing.T, addr string) *testClient {
	t.Helper()
	c := mustDial(t, addr)
	c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.hello(srvBuild, "linux", "stayer"); err != nil {
		t.Fatal(err)
	}
	if err := c.report(syncproto.Report{Outcome: syncproto.OutcomeUpToDate, Build: srvBuild}); err != nil {
		t.Fatal(err)
	}
	if err := c.send(syncproto.Stay{}); err != nil {
		t.Fatal(err)
	}
	// The server's first word to a staying session is a heartbeat.
	if m, err := c.r.Expect(syncproto.MsgNotice); err != nil || m.(syncproto.Notice).Kind != syncproto.NoticeHeartbeat {
		t.Fatalf("first message to a staying session: %v, %v; want a heartbeat", m, err)
	}
	return c
}

func TestCountdownNoticesRefusalsAndCancel(t *testing.T) {
	t.Setenv(TestShortCountdownEnv, "1")
	ts, _ := selfUpdateServer(t, "7.00.240501A")
	src := makeRelease(t, t.TempDir(), "7.01.250101A", map[string]string{serverProgram: "#!/bin/sh\n"}, vendorKey)
	stayers := []*testClient{staySession(t, ts.addr), staySession(t, ts.addr)}
	res := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpUpdate, Source: src, Countdown: 300},
		func(r adminResult) bool {
			return len(r.events) > 0 && strings.Contains(r.events[len(r.events)-1], "countdown")
		})
	if res.err != nil || len(res.statuses) == 0 || res.statuses[0].State != syncproto.StatePreparing || res.statuses[0].ID == "" {
		t.Fatalf("update request: %+v", res)
	}
	if !strings.Contains(strings.Join(res.events, "\n"), "2 connected sessions warned") {
		t.Errorf("events = %q", res.events)
	}
	for i, c := range stayers {
		m, err := c.r.Expect(syncproto.MsgNotice)
		if err != nil {
			t.Fatalf("stayer %d: %v", i, err)
		}
		n := m.(syncproto.Notice)
		if n.Kind != syncproto.NoticeCountdown || n.Seconds < 295 || n.Seconds > 300 || !strings.Contains(n.Message, "Please save your work and quit") {
			t.Errorf("stayer %d got %+v", i, n)
		}
	}
	// A new client is told to come back after the restart.
	c := mustDial(t, ts.addr)
	_, err := c.hello(srvBuild, "linux", "late")
	var pe *syncproto.Error
	if !errors.As(err, &pe) || pe.Code != syncproto.CodeUpdating || pe.Retry < 300 || !strings.Contains(pe.Message, "retry in") {
		t.Fatalf("a new session during the countdown got %v", err)
	}
	st := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpStatus}, nil)
	if st.statuses[0].State != syncproto.StateCountdown || st.statuses[0].NewBuild != "7.01.250101A" || time.Until(time.Unix(st.statuses[0].When, 0)) < 4*time.Minute {
		t.Fatalf("status during the countdown: %+v", st.statuses)
	}
	again := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpUpdate, Source: src, Countdown: 300}, nil)
	wantCode(t, again.err, syncproto.CodeRefused, "already countdown")
	cancel := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpCancel}, nil)
	if cancel.err != nil || cancel.statuses[0].State != syncproto.StateCancelled {
		t.Fatalf("cancel: %+v", cancel)
	}
	for i, c := range stayers {
		m, err := c.r.Expect(syncproto.MsgNotice)
		if err != nil || m.(syncproto.Notice).Kind != syncproto.NoticeCancelled {
			t.Fatalf("stayer %d after cancel: %v %v", i, m, err)
		}
	}
	if _, err := mustDial(t, ts.addr).hello(srvBuild, "linux", "after"); err != nil {
		t.Fatalf("after the cancel, a new session got %v", err)
	}
}

func TestScheduledUpdateKeptAcrossRestart(t *testing.T) {
	t.Setenv(TestShortCountdownEnv, "1")
	ts, install := selfUpdateServer(t, "7.00.240501A")
	src := makeRelease(t, t.TempDir(), "7.01.250101A", map[string]string{serverProgram: "#!/bin/sh\n"}, vendorKey)
	at := time.Now().Add(time.Hour).Truncate(time.Second)
	res := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpUpdate, Source: src, Countdown: 120, At: at.Unix(), Notify: "admin@example.com"}, nil)
	if res.err != nil || len(res.statuses) != 1 || res.statuses[0].State != syncproto.StateScheduled || res.statuses[0].When != at.Unix() {
		t.Fatalf("scheduling: %+v", res)
	}
	id := res.statuses[0].ID
	// A second server on the same state folder, as after a restart.
	if err := ts.stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(filepath.Join(install, "AppServer.ini"))
	if err != nil {
		t.Fatal(err)
	}
	ts2 := startServer(t, cfg, func(s *Server) {
		s.SetSelf(ts.srv.self)
	}, nil)
	st := adminSession(t, ts2.addr, "correct horse", syncproto.Admin{Op: syncproto.OpStatus}, nil)
	if st.err != nil || st.statuses[0].State != syncproto.StateScheduled || st.statuses[0].ID != id || st.statuses[0].When != at.Unix() {
		t.Fatalf("status after the restart: %+v", st)
	}
	cancel := adminSession(t, ts2.addr, "correct horse", syncproto.Admin{Op: syncproto.OpCancel}, nil)
	if cancel.err != nil || cancel.statuses[0].State != syncproto.StateCancelled || cancel.statuses[0].ID != id {
		t.Fatalf("cancel: %+v", cancel)
	}
	if _, err := os.Stat(filepath.Join(ts.srv.self.StateDir, "selfupdate", scheduledFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the cancelled schedule is still kept: %v", err)
	}
	again := adminSession(t, ts2.addr, "correct horse", syncproto.Admin{Op: syncproto.OpCancel}, nil)
	wantCode(t, again.err, syncproto.CodeRefused, "no update is scheduled")
	past := adminSession(t, ts2.addr, "correct horse", syncproto.Admin{Op: syncproto.OpUpdate, Source: src, Countdown: 120, At: time.Now().Add(-time.Hour).Unix()}, nil)
	wantCode(t, past.err, syncproto.CodeRefused, "is past")
}

func TestNextNotice(t *testing.T) {
	for _, tc := range []struct{ left, want time.Duration }{
		{120 * time.Second, 60 * time.Second},
		{119 * time.Second, 60 * time.Second},
		{61 * time.Second, 60 * time.Second},
		{60 * time.Second, 30 * time.Second},
		{30 * time.Second, 10 * time.Second},
		{10 * time.Second, 5 * time.Second},
		{5 * time.Second, 4 * time.Second},
		{time.Second, 0},
		{600 * time.Second, 540 * time.Second},
	} {
		if got := nextNotice(tc.left); got != tc.want {
			t.Errorf("nextNotice(%v) = %v, want %v", tc.left, got, tc.want)
		}
	}
}

func TestScheduledUpdateRuns(t *testing.T) {
	t.Setenv(TestShortCountdownEnv, "1")
	ts, install := selfUpdateServer(t, "7.00.240501A")
	src := makeRelease(t, t.TempDir(), "7.01.250101A", map[string]string{serverProgram: "#!/bin/sh\n"}, vendorKey)
	// The time travels in whole seconds, and the login (bcrypt) takes a
	// second or more under the race detector on a loaded machine: a
	// margin of 5 s keeps the time in the future when the server reads it.
	at := time.Now().Add(5 * time.Second)
	res := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpUpdate, Source: src, Countdown: 1, At: at.Unix()}, nil)
	if res.err != nil || len(res.statuses) == 0 || res.statuses[0].State != syncproto.StateScheduled {
		t.Fatalf("scheduling: err %v, statuses %+v, events %q", res.err, res.statuses, res.events)
	}
	// At its time the update runs by itself: the server hands over (the
	// test's "program" is a script, so no helper does anything) and stops.
	select {
	case <-ts.served:
	case <-time.After(30 * time.Second):
		t.Fatalf("the scheduled update did not run:\n%s", ts.logs.String())
	}
	if !ts.srv.HandedOver() {
		t.Fatalf("the server stopped without handing over:\n%s", ts.logs.String())
	}
	jr, err := handover.ReadJournal(install)
	if err != nil || jr.NewBuild != "7.01.250101A" || jr.OldBuild != "7.00.240501A" || jr.Phase != handover.PhaseHandover {
		t.Fatalf("journal: %+v, %v", jr, err)
	}
	for _, carried := range []string{"AppServer.ini", "appserver-state", "backups", "BUILD"} {
		if _, err := os.Stat(filepath.Join(install+"_new", carried)); err != nil {
			t.Errorf("the new installation lacks %s: %v", carried, err)
		}
	}
	if _, err := os.Stat(filepath.Join(install, "appserver-state", "selfupdate", scheduledFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the schedule was kept after it ran: %v", err)
	}
}
