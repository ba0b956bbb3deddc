package handover

// Tests of recovery after a helper that died, each from a defect a review
// found.

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/mail"
	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/erpupdate/smartsync/syncproto"
)

// deadPID returns the pid of a process that has exited and been reaped:
// true(1), or on Windows, which has no true, the test binary running no
// test.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if runtime.GOOS == "windows" {
		self, err := os.Executable()
		if err != nil {
			t.Fatalf("finding the test binary to run as a short-lived process: %v", err)
		}
		cmd = exec.Command(self, "-test.run=^$")
	}
	if err := cmd.Run(); err != nil {
		t.Skipf("no short-lived process to take the pid of: %s: %v", cmd, err)
	}
	if ProcessAlive(cmd.Process.Pid) {
		t.Fatalf("process %d still alive after it exited", cmd.Process.Pid)
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

func writeFile(t testing.TB, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func buildAt(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "BUILD"))
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return strings.TrimSpace(string(b))
}

// noMail is the Notify of tests whose journals name no address.
func noMail(*slog.Logger, string, string, syncproto.UpdateStatus) {}

// The helper records a phase only after the rename it describes. A helper
// killed (or a machine losing power) between exchange() and the journal
// write leaves a journal one phase behind what the folders hold, and
// Recover trusts the phase, not the folders.
func TestRecoverDecidesByTheFolders(t *testing.T) {
	const oldB, newB = "7.00.240501A", "7.01.250101A"
	setup := func(t *testing.T, phase string) (string, *Journal) {
		root := t.TempDir()
		install := filepath.Join(root, "appserver")
		pid := deadPID(t)
		jr := &Journal{Version: journalVersion, ID: "review", Phase: phase, ServerPID: pid, HelperPID: pid,
			Install: install, Exe: "appserver", StateDir: filepath.Join(root, "state"),
			OldBuild: oldB, NewBuild: newB, Reason: "the new server did not answer"}
		if err := os.MkdirAll(HelperDir(install), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := jr.save(HelperDir(install)); err != nil {
			t.Fatal(err)
		}
		return install, jr
	}
	last := func(t *testing.T, jr *Journal) syncproto.UpdateStatus {
		var st syncproto.UpdateStatus
		if err := atomicfile.ReadJSON(filepath.Join(jr.StateDir, "selfupdate", LastFile), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	log := slog.New(slog.DiscardHandler)

	t.Run("swap done, journal still says stopped", func(t *testing.T) {
		install, jr := setup(t, PhaseStopped)
		installWithBuild(t, install, newB)        // exchange() done: the path is the new build
		installWithBuild(t, install+"_new", oldB) // and the old one is at _new
		if err := Recover(log, Self{InstallDir: install}, noMail); err != nil {
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
		install, jr := setup(t, PhaseReverting)
		installWithBuild(t, install, oldB)        // exchange(install, _old) done: the old build is back
		installWithBuild(t, install+"_old", newB) // and the failed build is at _old
		if err := Recover(log, Self{InstallDir: install}, noMail); err != nil {
			t.Fatal(err)
		}
		if st := last(t, jr); st.State != syncproto.StateReverted {
			t.Errorf("the path holds the old build again but the record says %v: %q", st.State, st.Message)
		}
		if buildAt(install+"_old") == newB {
			t.Errorf("%s_old holds the failed build %s; the README tells the administrator to move _old back", filepath.Base(install), newB)
		}
	})

	// The old build waits at _new during the check, and _old, the build
	// before it, is replaced only once the new build answered: whatever
	// the phase a helper dies in, neither is lost.
	const olderB = "6.00.200101A"
	for _, tc := range []struct {
		phase             string
		path, new         string // what the path and _new hold
		wantPath, wantOld string // and after recovery, with _old
	}{
		{PhaseSwapped, newB, oldB, newB, oldB},
		{PhaseStarted, newB, oldB, newB, oldB},
		{PhaseHealthy, newB, oldB, newB, oldB},
		{PhaseReverting, newB, oldB, newB, oldB},       // the failed build runs; the old one is the way back
		{PhaseReverting, oldB, newB, oldB, olderB},     // swapped back, journal behind
		{PhaseRevertSwapped, oldB, newB, oldB, olderB}, // swapped back, _failed not yet made
	} {
		t.Run("_old kept, phase "+tc.phase+", path "+tc.path, func(t *testing.T) {
			install, _ := setup(t, tc.phase)
			installWithBuild(t, install, tc.path)
			installWithBuild(t, install+"_new", tc.new)
			installWithBuild(t, install+"_old", olderB)
			if err := Recover(log, Self{InstallDir: install}, noMail); err != nil {
				t.Fatal(err)
			}
			if buildAt(install) != tc.wantPath || buildAt(install+"_old") != tc.wantOld {
				t.Errorf("after recovery: path %s, _old %s; want %s and %s", buildAt(install), buildAt(install+"_old"), tc.wantPath, tc.wantOld)
			}
			if _, err := os.Lstat(install + "_new"); err == nil {
				t.Errorf("_new (%s) is left, which the next update removes", buildAt(install+"_new"))
			}
			if tc.wantPath == oldB && buildAt(install+"_failed") != newB {
				t.Errorf("_failed holds %s, want the failed build %s", buildAt(install+"_failed"), newB)
			}
		})
	}

	t.Run("three-rename fallback killed after its first rename", func(t *testing.T) {
		// exchange_other.go (Windows, macOS) and exchange_linux.go on a file
		// system without RENAME_EXCHANGE: a -> a.exchange, b -> a, a.exchange -> b.
		install, _ := setup(t, PhaseStopped)
		installWithBuild(t, install+".exchange", oldB)
		installWithBuild(t, install+"_new", newB)
		if err := Recover(log, Self{InstallDir: install}, noMail); err != nil {
			t.Fatal(err)
		}
		if b := buildAt(install); b != oldB && b != newB {
			t.Errorf("after recovery the installation's path holds no build (%s); the old one is left at %s.exchange", b, filepath.Base(install))
		}
	})
}

// Recover runs before the server listens and mails the outcome
// synchronously: an SMTP server that does not answer keeps the server from
// listening for [MAIL]'s whole 30 s timeout. (The server's Notify reads
// [MAIL] from the journal's ConfigFile; this one is set for the relay.)
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
	jr := &Journal{Version: journalVersion, ID: "review", Phase: PhaseHandover, ServerPID: pid, HelperPID: pid,
		Install: install, Exe: "appserver", StateDir: filepath.Join(root, "state"), OldBuild: "7.00.240501A",
		NewBuild: "7.01.250101A", Notify: "admin@example.com", ConfigFile: filepath.Join(install, "AppServer.ini")}
	notify := func(log *slog.Logger, configFile, to string, st syncproto.UpdateStatus) {
		cfg := mail.Config{Host: "127.0.0.1", Port: port, From: "erp@example.com", StartTLS: false, Timeout: 30 * time.Second}
		if err := mail.Send(context.Background(), cfg, to, "outcome", st.Message); err != nil {
			log.Error("mailing the outcome", "err", err)
		}
	}
	os.MkdirAll(HelperDir(install), 0o700)
	if err := jr.save(HelperDir(install)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Recover(slog.New(slog.DiscardHandler), Self{InstallDir: install}, notify) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Errorf("recovery (which runs before the server listens) still waits for the mail server after 3 s")
		<-done
	}
}
