package handover

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The old server of a Windows service or launchd job, handed over, waits
// for the helper's stop through the manager, but not for a helper that is
// gone or never came.
func TestAwaitStop(t *testing.T) {
	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Skipf("no process to keep alive: %v", err)
	}
	t.Cleanup(func() { live.Process.Kill(); live.Wait() })
	for _, tc := range []struct {
		name      string
		helperPID int  // 0: the helper has not recorded itself
		journal   bool // written
		stop      bool // the manager's stop comes (ctx cancelled)
		want      string
	}{
		{"helper dead", deadPID(t), true, false, "is gone and has not stopped this server"},
		{"journal gone", 0, false, false, "journal"},
		{"helper never came", 0, true, false, "did not start within"},
		{"helper stuck", live.Process.Pid, true, false, "has not stopped this server within"},
		{"stopped", live.Process.Pid, true, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			install := filepath.Join(t.TempDir(), "appserver")
			installWithBuild(t, install, svcOld)
			if tc.journal {
				jr := &Journal{Version: journalVersion, ID: "f2", Phase: PhaseHandover, ServerPID: os.Getpid(),
					HelperPID: tc.helperPID, Install: install, Exe: "appserver", HealthTimeout: 100 * time.Millisecond}
				os.MkdirAll(HelperDir(install), 0o700)
				if err := jr.save(HelperDir(install)); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.stop {
				cancel()
			}
			done := make(chan error, 1)
			go func() { done <- awaitStop(ctx, install, 10*time.Millisecond, 300*time.Millisecond) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(time.Minute):
				t.Fatal("still waiting after a minute")
			}
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("awaitStop = %v, want %q", err, tc.want)
			}
		})
	}
}
