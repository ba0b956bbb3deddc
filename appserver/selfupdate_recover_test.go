package appserver

// Tests of the self-update's defences, each from a defect a review found.
// Those of recovery after a helper that died are in internal/handover.

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/handover"
	"github.com/erpupdate/smartsync/appserver/internal/throttle"
	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/erpupdate/smartsync/syncproto"
)

// installWithBuild makes a minimal installation folder holding BUILD.
func installWithBuild(t *testing.T, dir, build string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "BUILD"), build+"\n")
	writeStandIn(t, filepath.Join(dir, serverProgram))
}

// The delay is applied only to a failed login, after the password has been
// checked, per connection, with no limit on parallel attempts. A right
// guess is answered at once, so an attacker needs to wait only for the
// bcrypt time on each of as many parallel connections as he likes.
func TestLoginThrottleRefusesUnchecked(t *testing.T) {
	ts, _ := selfUpdateServer(t, "7.00.240501A")
	ts.srv.logins.Fail("127.0.0.1", 7)

	attempt := func(password string) {
		c := mustDial(t, ts.addr)
		priv, key, _ := syncproto.NewAdminKey()
		if err := c.send(key); err != nil {
			t.Error(err)
			return
		}
		m, err := c.r.Expect(syncproto.MsgAdminKey)
		if err != nil {
			t.Error(err)
			return
		}
		a := syncproto.Admin{User: "admin", Op: syncproto.OpStatus}
		syncproto.SealRequest(priv, m.(syncproto.AdminKey), &a, []byte(password))
		c.send(a)
	}
	// Ten wrong guesses in parallel. With a 30 s delay, at most one should
	// be checked in the next 10 s.
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); attempt("guess " + strconv.Itoa(i)) }()
	}
	wg.Wait()
	var n int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && n < 17; time.Sleep(50 * time.Millisecond) {
		n = ts.srv.logins.Failures("127.0.0.1")
	}
	if n > 8 {
		t.Errorf("after 7 failures (a %v delay) the server checked %d more guesses within 10 s", throttle.Delay(7), n-7)
	}
	// And the right one is refused unchecked too, so that its speed tells
	// nothing.
	res := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpStatus}, nil)
	wantCode(t, res.err, syncproto.CodeDenied, "too many failed logins")
}

// A scheduled update whose time passed while the server was down runs as
// soon as the server starts again, in the middle of the working day,
// although a request for a past time is refused.
func TestMissedScheduleIsDropped(t *testing.T) {
	t.Setenv(TestShortCountdownEnv, "1")
	ts, install := selfUpdateServer(t, "7.00.240501A")
	src := makeRelease(t, t.TempDir(), "7.01.250101A", map[string]string{serverProgram: "#!/bin/sh\n"}, vendorKey)
	if err := ts.stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	self := ts.srv.self
	req := updateRequest{ID: "review-missed", Source: src, Countdown: 600 * time.Second,
		At: time.Now().Add(-7 * time.Hour), User: "admin", From: "127.0.0.1", Requested: time.Now().Add(-20 * time.Hour)}
	if err := atomicfile.WriteJSON(filepath.Join(self.StateDir, "selfupdate", scheduledFile), req, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(filepath.Join(install, "AppServer.ini"))
	if err != nil {
		t.Fatal(err)
	}
	ts2 := startServer(t, cfg, func(s *Server) { s.SetSelf(self) }, nil)
	time.Sleep(time.Second)
	st := adminSession(t, ts2.addr, "correct horse", syncproto.Admin{Op: syncproto.OpStatus}, nil)
	if st.err != nil {
		t.Fatal(st.err)
	}
	if s := st.statuses[0]; s.State != syncproto.StateFailed || !strings.Contains(s.Message, "missed") || s.ID != "review-missed" {
		t.Errorf("an update scheduled 7 hours ago, after the restart: %+v", s)
	}
	adminSession(t, ts2.addr, "correct horse", syncproto.Admin{Op: syncproto.OpCancel}, nil)
}

// The journal, written beside the installation and kept after a crash (or
// renamed .bad), holds [MAIL] Password in clear.
func TestJournalHoldsNoMailPassword(t *testing.T) {
	root := t.TempDir()
	install := filepath.Join(root, "appserver")
	installWithBuild(t, install, "7.00.240501A")
	cfg := &Config{Mail: MailConfig{Host: "smtp.example.com", Port: 587, From: "erp@example.com", User: "erp", Password: "smtp-s3cret"}}
	self := Self{InstallDir: install, Exe: filepath.Join(install, serverProgram), StateDir: filepath.Join(root, "state")}
	j := &job{req: updateRequest{ID: "review", Source: "/x/appserver-7.01.250101A.tar.gz"}}
	if err := handOver(slog.New(slog.DiscardHandler), cfg, self, j, &handover.Release{Dir: install + "_new", Build: "7.01.250101A"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let the stand-in helper exit before the folder goes
	data, err := os.ReadFile(handover.JournalPath(install))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("smtp-s3cret")) {
		t.Errorf("%s holds the SMTP password in clear", handover.JournalPath(install))
	}
}

// release.Fetch refuses a URL with credentials "as it would be logged",
// but the server has logged it (and recorded it in running.json and
// last.json) before Fetch is called.
func TestSourceCredentialsRefusedUnlogged(t *testing.T) {
	t.Setenv(TestShortCountdownEnv, "1")
	ts, _ := selfUpdateServer(t, "7.00.240501A")
	src := "https://admin:hunter2@127.0.0.1:1/appserver-7.01.250101A.tar.gz"
	res := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpUpdate, Source: src, Countdown: 5}, nil)
	var pe *syncproto.Error
	if !errors.As(res.err, &pe) {
		t.Fatalf("update: %+v", res)
	}
	if strings.Contains(ts.logs.String(), "hunter2") {
		t.Errorf("the server log holds the password of the source URL")
	}
	last, _ := os.ReadFile(filepath.Join(ts.srv.self.StateDir, "selfupdate", handover.LastFile))
	if bytes.Contains(last, []byte("hunter2")) {
		t.Errorf("last.json holds the password of the source URL")
	}
}
