package handover

// Tests of recovery after a helper that died during a switch under a
// service manager (review finding F4), and of the old server's wait for
// the helper's stop (F2).

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/erpupdate/smartsync/syncproto"
)

const svcOld, svcNew, svcOlder = "7.00.240501A", "7.01.250101A", "6.00.200101A"

// deadSwitch writes the journal of a switch at phase whose helper is dead,
// under manager ("" for none), and returns the installation's path.
func deadSwitch(t *testing.T, phase, manager string) (string, *Journal) {
	t.Helper()
	root := t.TempDir()
	install := filepath.Join(root, "appserver")
	pid := deadPID(t)
	jr := &Journal{Version: journalVersion, ID: "f4", Phase: phase, ServerPID: pid, HelperPID: pid,
		Install: install, Exe: "appserver", StateDir: filepath.Join(root, "state"),
		OldBuild: svcOld, NewBuild: svcNew, Manager: manager}
	if err := os.MkdirAll(HelperDir(install), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := jr.save(HelperDir(install)); err != nil {
		t.Fatal(err)
	}
	return install, jr
}

func lastOutcome(t *testing.T, jr *Journal) syncproto.UpdateStatus {
	t.Helper()
	var st syncproto.UpdateStatus
	if err := atomicfile.ReadJSON(filepath.Join(jr.StateDir, "selfupdate", LastFile), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// A helper killed (or a machine losing power) after the swap and before
// the new build answered leaves an unchecked build at the path. Under a
// service manager, which starts the service again when the server exits,
// recovery puts the old build back and tells the server (of the new
// build) to exit; without one it keeps the running new build.
func TestRecoverRevertsUncheckedBuildUnderServiceManager(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		phase, manager string
		exchangeCut    bool // the three-rename fallback cut after its second rename
		wantPath       string
		wantState      syncproto.UpdateState
	}{
		{PhaseSwapped, ManagerSystemd, false, svcOld, syncproto.StateReverted},
		{PhaseStarted, ManagerSystemd, false, svcOld, syncproto.StateReverted},
		{PhaseStarted, ManagerWindows, false, svcOld, syncproto.StateReverted},
		{PhaseStopped, ManagerSystemd, false, svcOld, syncproto.StateReverted}, // swapped, journal behind
		{PhaseStopped, ManagerSystemd, true, svcOld, syncproto.StateReverted},
		{PhaseReverting, ManagerSystemd, false, svcOld, syncproto.StateReverted}, // the failed build stopped, not yet swapped back
		{PhaseHealthy, ManagerSystemd, false, svcNew, syncproto.StateDone},
		{PhaseStarted, "", false, svcNew, syncproto.StateDone},
		{PhaseStopped, "", true, svcNew, syncproto.StateDone},
	} {
		name := tc.phase + "_" + tc.manager
		if tc.exchangeCut {
			name += "_exchange_cut"
		}
		t.Run(name, func(t *testing.T) {
			install, jr := deadSwitch(t, tc.phase, tc.manager)
			installWithBuild(t, install, svcNew)
			if tc.exchangeCut {
				installWithBuild(t, install+".exchange", svcOld)
			} else {
				installWithBuild(t, install+"_new", svcOld)
			}
			installWithBuild(t, install+"_old", svcOlder)
			err := Recover(log, Self{InstallDir: install}, noMail)
			if tc.wantState == syncproto.StateReverted && !errors.Is(err, ErrRestart) {
				t.Errorf("Recover after a revert returned %v, want ErrRestart (the new build's server must exit)", err)
			}
			if tc.wantState != syncproto.StateReverted && err != nil {
				t.Errorf("Recover: %v", err)
			}
			if buildAt(install) != tc.wantPath {
				t.Errorf("the path holds %s, want %s", buildAt(install), tc.wantPath)
			}
			if st := lastOutcome(t, jr); st.State != tc.wantState {
				t.Errorf("the outcome is %v (%q), want %v", st.State, st.Message, tc.wantState)
			}
			wantOld := svcOlder
			if tc.wantPath == svcNew {
				wantOld = svcOld
			} else if buildAt(install+"_failed") != svcNew {
				t.Errorf("_failed holds %s, want the unchecked build %s", buildAt(install+"_failed"), svcNew)
			}
			if buildAt(install+"_old") != wantOld {
				t.Errorf("_old holds %s, want %s", buildAt(install+"_old"), wantOld)
			}
			for _, left := range []string{"_new", ".exchange"} {
				if _, err := os.Lstat(install + left); err == nil {
					t.Errorf("%s is left (%s)", left, buildAt(install+left))
				}
			}
		})
	}
}

// A server that already serves (its status asks) never has its path
// reverted under it: that is left to the helper unit's ExecStopPost.
func TestRecoverRunningLeavesRevert(t *testing.T) {
	install, _ := deadSwitch(t, PhaseStarted, ManagerSystemd)
	installWithBuild(t, install, svcNew)
	installWithBuild(t, install+"_new", svcOld)
	if err := RecoverRunning(slog.New(slog.DiscardHandler), Self{InstallDir: install}, noMail); err != nil {
		t.Fatal(err)
	}
	if buildAt(install) != svcNew || buildAt(install+"_new") != svcOld {
		t.Errorf("a running server's recovery changed the folders: path %s, _new %s", buildAt(install), buildAt(install+"_new"))
	}
	if _, err := ReadJournal(install); err != nil {
		t.Errorf("the journal, which the ExecStopPost recovery needs, is gone: %v", err)
	}
}

// The helper unit's ExecStopPost runs the helper's own copy, outside the
// installation: it recovers an empty path (the three-rename fallback cut
// after its first rename) and reverts an unchecked build, and does
// nothing once the helper has finished.
func TestRecoverServiceFromHelperCopy(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	t.Run("empty path", func(t *testing.T) {
		install, jr := deadSwitch(t, PhaseStopped, ManagerSystemd)
		installWithBuild(t, install+".exchange", svcOld)
		installWithBuild(t, install+"_new", svcNew)
		if err := RecoverService(context.Background(), log, JournalPath(install), noMail); err != nil {
			t.Fatal(err)
		}
		if buildAt(install) != svcOld {
			t.Errorf("the path holds %s, want the old build %s", buildAt(install), svcOld)
		}
		if st := lastOutcome(t, jr); st.State != syncproto.StateFailed {
			t.Errorf("the outcome is %v, want failed (nothing changed)", st.State)
		}
	})
	t.Run("unchecked build", func(t *testing.T) {
		install, jr := deadSwitch(t, PhaseSwapped, ManagerSystemd)
		installWithBuild(t, install, svcNew)
		installWithBuild(t, install+"_new", svcOld)
		if err := RecoverService(context.Background(), log, JournalPath(install), noMail); err != nil {
			t.Fatal(err)
		}
		if buildAt(install) != svcOld || lastOutcome(t, jr).State != syncproto.StateReverted {
			t.Errorf("path %s, outcome %v; want %s reverted", buildAt(install), lastOutcome(t, jr).State, svcOld)
		}
	})
	t.Run("helper finished", func(t *testing.T) {
		install := filepath.Join(t.TempDir(), "appserver")
		installWithBuild(t, install, svcNew)
		if err := RecoverService(context.Background(), log, JournalPath(install), noMail); err != nil {
			t.Errorf("with no journal: %v", err)
		}
	})
}

// unitCommand's words reach the program as they are, through systemd's
// quoting, specifiers and variables.
func TestUnitCommand(t *testing.T) {
	got := unitCommand([]string{"/opt/erp 1/.appserver_selfupdate/appserver", "--journal", `/a"b\c%d$e`})
	want := `"/opt/erp 1/.appserver_selfupdate/appserver" "--journal" "/a\"b\\c%%d$$e"`
	if got != want {
		t.Errorf("unitCommand = %s, want %s", got, want)
	}
}
