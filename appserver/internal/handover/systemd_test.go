package handover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

// needSystemd skips the test unless systemd runs this machine and the
// test may install units (sudo bash scripts/systemd-sandbox go test -run
// TestSystemd ./appserver/internal/handover/).
func needSystemd(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" || os.Getuid() != 0 {
		t.Skip("installs systemd units: needs Linux and root (scripts/systemd-sandbox)")
	}
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		t.Skip("systemd is not the service manager here: run it in scripts/systemd-sandbox")
	}
}

// A failed "systemctl start" of the server's unit says the server exited,
// and how, only when its program ran for that start; otherwise it says
// what systemd said (review finding F7).
func TestSystemdStartError(t *testing.T) {
	needSystemd(t)
	base := fmt.Sprintf("smartsync-f7-%d", os.Getpid())
	for _, tc := range []struct {
		name, execStart string // "" installs no unit
		exited          bool
		want            string
	}{
		{"exits", `/bin/sh -c "exit 3"`, true, "exited (status 3)"},
		{"killed", `/bin/sh -c "kill -9 $$$$"`, true, "exited (killed by signal 9)"},
		{"no program", "/nonexistent/appserver", false, "status 203: systemd could not run the program"},
		{"no unit", "", false, "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unit := base + "-" + strings.ReplaceAll(tc.name, " ", "-") + ".service"
			if tc.execStart != "" {
				path := "/etc/systemd/system/" + unit
				if err := os.WriteFile(path, []byte("[Service]\nType=notify\nExecStart="+tc.execStart+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					os.Remove(path)
					exec.Command("systemctl", "daemon-reload").Run()
					exec.Command("systemctl", "reset-failed", unit).Run()
				})
				if out, err := exec.Command("systemctl", "daemon-reload").CombinedOutput(); err != nil {
					t.Fatalf("daemon-reload: %v: %s", err, out)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err := systemdUnit(unit).Start(ctx)
			var ex *ExitedError
			switch {
			case err == nil:
				t.Fatal("the start succeeded")
			case errors.As(err, &ex) != tc.exited:
				t.Errorf("Start: %v; want exited %v", err, tc.exited)
			case !tc.exited && !strings.Contains(err.Error(), "systemd refused to start "+unit):
				t.Errorf("Start: %v; want it to say systemd refused", err)
			}
			if err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start: %v; want %q", err, tc.want)
			}
			t.Logf("%s: %v", tc.name, err)
		})
	}
}
