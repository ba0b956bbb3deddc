package appserver

// Tests of the self-update's recovery and of its defences, each from a
// defect a review found.

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/syncproto"
)

// deadPID returns the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("no true(1):", err)
	}
	return cmd.Process.Pid
}

// installWithBuild makes a minimal installation folder holding BUILD.
func installWithBuild(t *testing.T, dir, build string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "BUILD"), build+"\n")
	writeFile(t, filepath.Join(dir, "appserver"), "#!/bin/sh\n")
}

func buildAt(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "BUILD"))
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return strings.TrimSpace(string(b))
}

// The helper records a phase only after the rename it describes. A helper
// killed (or a machine losing power) between exchange() and the journal
// write leaves a journal one phase behind what the folders hold, and
// recoverSelfUpdate trusts the phase, not the folders.
func TestRecoverDecidesByTheFolders(t *testing.T) {
	const oldB, newB = "7.00.240501A", "7.01.250101A"
	setup := func(t *testing.T, phase string) (string, *journal) {
		root := t.TempDir()
		install := filepath.Join(root, "appserver")
		pid := deadPID(t)
		jr := &journal{Version: journalVersion, ID: "review", Phase: phase, ServerPID: pid, HelperPID: pid,
			Install: install, Exe: "appserver", StateDir: filepath.Join(root, "state"),
			OldBuild: oldB, NewBuild: newB, Reason: "the new server did not answer"}
		if err := os.MkdirAll(helperDir(install), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := jr.save(helperDir(install)); err != nil {
			t.Fatal(err)
		}
		return install, jr
	}
	last := func(t *testing.T, jr *journal) syncproto.UpdateStatus {
		var st syncproto.UpdateStatus
		if err := readJSON(filepath.Join(jr.StateDir, "selfupdate", lastFile), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	log := slog.New(slog.DiscardHandler)

	t.Run("swap done, journal still says stopped", func(t *testing.T) {
		install, jr := setup(t, phaseStopped)
		installWithBuild(t, install, newB)        // exchange() done: the path is the new build
		installWithBuild(t, install+"_new", oldB) // and the old one is at _new
		if err := recoverSelfUpdate(log, Self{InstallDir: install}); err != nil {
			t.Fatal(err)
		}
		if buildAt(install+"_old") != oldB && buildAt(install) != oldB {
			t.Errorf("the old build is gone: path %s, _old %s, _new %s", buildAt(install), buildAt(install+"_old"), buildAt(install+"_new"))
		}
		if st := last(t, jr); buildAt(install) == newB && st.State == syncproto.StateFailed {
			t.Errorf("the path runs %s but the record says %v: %q", newB, st.State, st.Message)
		}
	})

	t.Run("revert swap done, journal still says reverting", func(t *testing.T) {
		install, jr := setup(t, phaseReverting)
		installWithBuild(t, install, oldB)        // exchange(install, _old) done: the old build is back
		installWithBuild(t, install+"_old", newB) // and the failed build is at _old
		if err := recoverSelfUpdate(log, Self{InstallDir: install}); err != nil {
			t.Fatal(err)
		}
		if st := last(t, jr); st.State != syncproto.StateReverted {
			t.Errorf("the path holds the old build again but the record says %v: %q", st.State, st.Message)
		}
		if buildAt(install+"_old") == newB {
			t.Errorf("%s_old holds the failed build %s; the README tells the administrator to move _old back", filepath.Base(install), newB)
		}
	})

	t.Run("three-rename fallback killed after its first rename", func(t *testing.T) {
		// exchange_other.go (Windows, macOS) and exchange_linux.go on a file
		// system without RENAME_EXCHANGE: a -> a.exchange, b -> a, a.exchange -> b.
		install, _ := setup(t, phaseStopped)
		installWithBuild(t, install+".exchange", oldB)
		installWithBuild(t, install+"_new", newB)
		if err := recoverSelfUpdate(log, Self{InstallDir: install}); err != nil {
			t.Fatal(err)
		}
		if b := buildAt(install); b != oldB && b != newB {
			t.Errorf("after recovery the installation's path holds no build (%s); the old one is left at %s.exchange", b, filepath.Base(install))
		}
	})
}

// The delay is applied only to a failed login, after the password has been
// checked, per connection, with no limit on parallel attempts. A right
// guess is answered at once, so an attacker needs to wait only for the
// bcrypt time on each of as many parallel connections as he likes.
func TestLoginThrottleRefusesUnchecked(t *testing.T) {
	ts, _ := selfUpdateServer(t, "7.00.240501A")
	ts.srv.logins.mu.Lock()
	ts.srv.logins.fails = map[string]loginFails{"127.0.0.1": {n: 7, last: time.Now(), notBefore: time.Now().Add(loginDelay(7))}}
	ts.srv.logins.mu.Unlock()

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
		sealed, _ := syncproto.SealPassword(priv, m.(syncproto.AdminKey), password)
		c.send(syncproto.Admin{User: "admin", Sealed: sealed, Op: syncproto.OpStatus})
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
		ts.srv.logins.mu.Lock()
		n = ts.srv.logins.fails["127.0.0.1"].n
		ts.srv.logins.mu.Unlock()
	}
	if n > 8 {
		t.Errorf("after 7 failures (a %v delay) the server checked %d more guesses within 10 s", loginDelay(7), n-7)
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
	src := makeRelease(t, t.TempDir(), "7.01.250101A", map[string]string{"appserver": "#!/bin/sh\n"}, vendorKey)
	if err := ts.stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	self := ts.srv.self
	req := updateRequest{ID: "review-missed", Source: src, Countdown: 600 * time.Second,
		At: time.Now().Add(-7 * time.Hour), User: "admin", From: "127.0.0.1", Requested: time.Now().Add(-20 * time.Hour)}
	if err := writeJSON(filepath.Join(self.StateDir, "selfupdate", scheduledFile), req); err != nil {
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

// recoverSelfUpdate runs before the server listens and mails the outcome
// synchronously: an SMTP server that does not answer keeps the server from
// listening for [MAIL]'s whole 30 s timeout.
func TestRecoveryDoesNotWaitForMail(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accepts and says nothing, as a stuck mail relay does
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	root := t.TempDir()
	install := filepath.Join(root, "appserver")
	installWithBuild(t, install, "7.00.240501A")
	pid := deadPID(t)
	jr := &journal{Version: journalVersion, ID: "review", Phase: phaseHandover, ServerPID: pid, HelperPID: pid,
		Install: install, Exe: "appserver", StateDir: filepath.Join(root, "state"), OldBuild: "7.00.240501A",
		NewBuild: "7.01.250101A", Notify: "admin@example.com", ConfigFile: filepath.Join(install, "AppServer.ini")}
	writeFile(t, jr.ConfigFile, "[TCP]\nPort=1234\n[UPDATE]\nEnable=0\n[MAIL]\nHost=127.0.0.1\nPort="+strconv.Itoa(port)+"\nFrom=erp@example.com\nStartTLS=0\n")
	os.MkdirAll(helperDir(install), 0o700)
	if err := jr.save(helperDir(install)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- recoverSelfUpdate(slog.New(slog.DiscardHandler), Self{InstallDir: install}) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Errorf("recovery (which runs before the server listens) still waits for the mail server after 3 s")
		<-done
	}
}

// The journal, written beside the installation and kept after a crash (or
// renamed .bad), holds [MAIL] Password in clear.
func TestJournalHoldsNoMailPassword(t *testing.T) {
	root := t.TempDir()
	install := filepath.Join(root, "appserver")
	installWithBuild(t, install, "7.00.240501A")
	os.Chmod(filepath.Join(install, "appserver"), 0o755)
	cfg := &Config{Mail: MailConfig{Host: "smtp.example.com", Port: 587, From: "erp@example.com", User: "erp", Password: "smtp-s3cret"}}
	self := Self{InstallDir: install, Exe: filepath.Join(install, "appserver"), StateDir: filepath.Join(root, "state")}
	j := &job{req: updateRequest{ID: "review", Source: "/x/appserver-7.01.250101A.tar.gz"}}
	if err := handOver(slog.New(slog.DiscardHandler), cfg, self, j, &prepared{dir: install + "_new", build: "7.01.250101A"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let the stand-in helper exit before the folder goes
	data, err := os.ReadFile(filepath.Join(helperDir(install), journalName))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("smtp-s3cret")) {
		t.Errorf("%s holds the SMTP password in clear", filepath.Join(helperDir(install), journalName))
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
	last, _ := os.ReadFile(filepath.Join(ts.srv.self.StateDir, "selfupdate", lastFile))
	if bytes.Contains(last, []byte("hunter2")) {
		t.Errorf("last.json holds the password of the source URL")
	}
}
