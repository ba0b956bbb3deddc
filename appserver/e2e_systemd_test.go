package appserver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/handover"
)

// The systemd tests install the server built from this tree as a real
// systemd unit, and run where systemd is the service manager: on a
// machine booted with systemd, as root, or on any Linux machine (a
// container, CI) inside scripts/systemd-sandbox, which boots a private
// systemd for them:
//
//	sudo bash scripts/systemd-sandbox go test -run 'TestSystemd' ./appserver/

// needSystemd skips the test unless systemd runs this machine and the
// test may install units.
func needSystemd(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("systemd is Linux's")
	}
	if os.Getuid() != 0 {
		t.Skip("the systemd tests install units: they need root (sudo bash scripts/systemd-sandbox go test -run TestSystemd ./appserver/)")
	}
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		comm, _ := os.ReadFile("/proc/1/comm")
		t.Skipf("systemd is not the service manager here (PID 1 is %s): run them in scripts/systemd-sandbox", strings.TrimSpace(string(comm)))
	}
	out, _ := exec.Command("systemctl", "is-system-running").Output()
	if st := strings.TrimSpace(string(out)); st != "running" && st != "degraded" {
		t.Skipf("systemd is %q, not running", st)
	}
}

// unit is the e2e installation installed as a systemd unit.
type unit struct {
	e    *e2e
	name string
}

// installUnit installs e's server as the unit appserver-test-N.service
// with its own program's "service install", checks that install wrote
// what --dry-run printed, and adds extra environment in a drop-in.
func installUnit(e *e2e, env ...string) *unit {
	t := e.t
	t.Helper()
	u := &unit{e: e, name: fmt.Sprintf("appserver-test-%d-%d", os.Getpid(), time.Now().UnixNano()%100000)}
	dry := u.appserver("service", "install", "--dry-run")
	u.appserver("service", "install")
	t.Cleanup(u.remove)
	written, err := os.ReadFile("/etc/systemd/system/" + u.name + ".service")
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.SplitN(dry, "\n", 2)[1]; string(written) != want {
		t.Errorf("install wrote\n%s\nwhile --dry-run printed\n%s", written, want)
	}
	if len(env) > 0 {
		dropin := "/etc/systemd/system/" + u.name + ".service.d/test.conf"
		mkdirWrite(t, dropin, "[Service]\nEnvironment="+strings.Join(env, " ")+"\n")
		if out, err := exec.Command("systemctl", "daemon-reload").CombinedOutput(); err != nil {
			t.Fatalf("daemon-reload: %v: %s", err, out)
		}
	}
	return u
}

// appserver runs the installation's program with the service flags and
// fails the test if it fails.
func (u *unit) appserver(args ...string) string {
	u.e.t.Helper()
	args = append(args, "--config", filepath.Join(u.e.install, "AppServer.ini"), "--name", u.name)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(u.e.install, "appserver"), args...).CombinedOutput()
	if err != nil {
		u.e.t.Fatalf("appserver %q: %v\n%s\n%s", args, err, out, u.journal(""))
	}
	return string(out)
}

func (u *unit) remove() {
	exec.Command("systemctl", "stop", u.name+".service").Run()
	exec.Command("systemctl", "disable", u.name+".service").Run()
	os.RemoveAll("/etc/systemd/system/" + u.name + ".service.d")
	os.Remove("/etc/systemd/system/" + u.name + ".service")
	exec.Command("systemctl", "daemon-reload").Run()
	exec.Command("systemctl", "reset-failed").Run()
}

// show returns the unit's properties, as "ActiveState=active".
func (u *unit) show(props ...string) map[string]string {
	out, _ := exec.Command("systemctl", "show", u.name+".service", "--property="+strings.Join(props, ",")).Output()
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		m[k] = v
	}
	return m
}

// journal is what the unit and its self-update helpers wrote to the
// journal, at priority (as journalctl -p takes it) or all when "".
func (u *unit) journal(priority string) string {
	exec.Command("journalctl", "--sync").Run()
	args := []string{"--no-pager", "-o", "cat", "-u", u.name + ".service", "-u", u.name + "-selfupdate-*"}
	if priority != "" {
		args = append(args, "-p", priority)
	}
	out, _ := exec.Command("journalctl", args...).CombinedOutput()
	return string(out)
}

// TestSystemdInstallStartStop installs the server as a real unit, starts
// it (start returns once the server answers: Type=notify), sees the
// server say it runs as that unit, stops and uninstalls it.
func TestSystemdInstallStartStop(t *testing.T) {
	needSystemd(t)
	e := newE2E(t, false)
	u := installUnit(e)
	if st := u.appserver("service", "status"); !strings.Contains(st, "installed, stopped") {
		t.Errorf("status after install: %q", st)
	}
	u.appserver("service", "start")
	// No wait: "start" returned after READY=1, which comes once a hello
	// is answered.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	err := handover.Hello(ctx, e.addr)
	cancel()
	if err != nil {
		t.Fatalf("service start returned, but the server does not answer at once: %v\n%s", err, u.journal(""))
	}
	p := u.show("ActiveState", "SubState", "Type", "Restart", "KillMode", "LimitNOFILE", "MainPID")
	for k, want := range map[string]string{"ActiveState": "active", "SubState": "running", "Type": "notify", "Restart": "on-failure", "KillMode": "mixed", "LimitNOFILE": "65536"} {
		if p[k] != want {
			t.Errorf("%s=%s, want %s", k, p[k], want)
		}
	}
	t.Logf("unit %s: %v", u.name, p)
	if st := u.appserver("service", "status"); !strings.Contains(st, ": running") {
		t.Errorf("status of the started unit: %q", st)
	}
	j := u.journal("")
	for _, want := range []string{"systemd unit " + u.name + ".service", "telling systemd the server is ready"} {
		if !strings.Contains(j, want) {
			t.Errorf("the server's journal does not say %q:\n%s", want, j)
		}
	}
	u.appserver("service", "stop")
	if handover.Hello(context.Background(), e.addr) == nil {
		t.Error("the server still answers after service stop")
	}
	if p := u.show("ActiveState", "Result"); p["ActiveState"] != "inactive" || p["Result"] != "success" {
		t.Errorf("after stop: %v, want inactive after a clean stop", p)
	}
	u.appserver("service", "uninstall")
	if _, err := os.Stat("/etc/systemd/system/" + u.name + ".service"); err == nil {
		t.Error("uninstall left the unit file")
	}
}

// TestSystemdSelfUpdate updates a server run as a unit: the helper runs
// in a unit of its own, stops and starts the server's unit through
// systemctl, and the unit is active with the new build afterwards; a
// broken release is reverted, the unit active again with the good build.
// The self-update's warnings are filed at priority warning.
func TestSystemdSelfUpdate(t *testing.T) {
	needSystemd(t)
	e := newE2E(t, false)
	u := installUnit(e, TestShortCountdownEnv+"=1")
	u.appserver("service", "start")
	oldPID := u.show("MainPID")["MainPID"]

	out, code := e.admin(2*time.Minute, "--from", e.release(e2eNew, "client v2\n", ""), "--countdown", "1s")
	if code != 0 || !strings.Contains(out, e2eNew) {
		t.Fatalf("admin update-server exited %d:\n%s\njournal:\n%s", code, out, u.journal(""))
	}
	p := u.show("ActiveState", "SubState", "MainPID")
	if p["ActiveState"] != "active" || p["MainPID"] == oldPID || p["MainPID"] == "0" {
		t.Errorf("after the update the unit is %v (old main PID %s); want active with a new server", p, oldPID)
	}
	if got := e.build(e.install); got != e2eNew {
		t.Errorf("installation holds %s, want %s", got, e2eNew)
	}
	if got := e.build(e.install + "_old"); got != e2eOld {
		t.Errorf("_old holds %s, want %s", got, e2eOld)
	}
	e.checkConfig()
	j := u.journal("")
	for _, want := range []string{"helper started in a systemd unit of its own", "stopping the old server through the service manager", "starting the server through the service manager"} {
		if !strings.Contains(j, want) {
			t.Errorf("the journal does not say %q:\n%s", want, j)
		}
	}
	// The outcome and the helper's start are warnings: journalctl -p
	// warning shows them, and not the info records.
	if w := u.journal("warning"); !strings.Contains(w, "helper started") || strings.Contains(w, "msg=listening") {
		t.Errorf("journalctl -p warning shows:\n%s", w)
	}

	// A release whose server exits at once is reverted through systemd.
	// Its program marks its exit; the watcher measures from the mark to
	// the good build answering again (the goal: within 5 s).
	mark := filepath.Join(e.root, "broken-exited")
	src := e.release(e2eNewer, "client v3\n", fmt.Sprintf("#!/bin/sh\necho broken >&2\necho exited > '%s'\nexit 3\n", mark))
	back := make(chan time.Duration, 1)
	go func() {
		deadline := time.Now().Add(2 * time.Minute)
		for !exists(mark) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		exit := time.Now()
		if fi, err := os.Stat(mark); err == nil {
			exit = fi.ModTime()
		}
		for handover.Hello(context.Background(), e.addr) != nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		back <- time.Since(exit)
	}()
	out, code = e.admin(2*time.Minute, "--from", src, "--countdown", "1s")
	if code != 1 || !strings.Contains(out, "reverted to "+e2eNew) || !strings.Contains(out, "exited at start") {
		t.Fatalf("the broken update: exit %d, want 1 and a revert:\n%s\njournal:\n%s", code, out, u.journal(""))
	}
	if p := u.show("ActiveState"); p["ActiveState"] != "active" {
		t.Errorf("after the revert the unit is %v, want active", p)
	}
	select {
	case d := <-back:
		t.Logf("the broken server exited; the unit served the good build again %v later", d.Round(time.Millisecond))
		if d > 5*time.Second {
			t.Errorf("the good build answered again %v after the broken server exited; want within 5 s", d)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the broken server's exit or the good build's return was not seen (mark exists: %v)", exists(mark))
	}
	if err := e.waitAnswer(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := e.build(e.install); got != e2eNew {
		t.Errorf("after the revert the installation holds %s, want %s", got, e2eNew)
	}
	if got := e.build(e.install + "_old"); got != e2eOld {
		t.Errorf("after the revert _old holds %s, want %s", got, e2eOld)
	}
	t.Logf("admin saw:\n%s", out)
	t.Logf("journalctl -p warning of the unit and its helpers:\n%s", u.journal("warning"))
	if testing.Verbose() {
		out, _ := exec.Command("journalctl", "--no-pager", "-o", "short-precise", "-u", u.name+".service", "-u", u.name+"-selfupdate-*").CombinedOutput()
		t.Logf("the journal, with times:\n%s", out)
	}
}

// TestSystemdHelperKilled kills the helper, in its own unit, at each step
// of the switch. systemd then runs the helper unit's ExecStopPost: the
// helper's own program, outside the installation, recovers what the
// helper left (and reverts a new build not yet found healthy), and the
// server's unit is started again: the unit is active, the path holds one
// whole build, and the status says which. A new build that fails at start
// is reverted too, where before the unit restarted it until systemd gave
// up.
func TestSystemdHelperKilled(t *testing.T) {
	needSystemd(t)
	broken := "#!/bin/sh\necho broken >&2\nexit 3\n"
	for _, tc := range []struct {
		step      string
		program   string // the new build's program; "" for a good one
		wantBuild string
		want      string // in the status
	}{
		{"helper:handover", "", e2eOld, "failed"},
		{"helper:stopped", "", e2eOld, "failed"},
		{"helper:swapped", "", e2eOld, "reverted"},
		{"helper:started", "", e2eOld, "reverted"},
		{"helper:healthy", "", e2eNew, "done"},
		{"helper:swapped", broken, e2eOld, "reverted"},
		{"helper:started", broken, e2eOld, "reverted"},
		// A power loss: the helper unit's recovery does not run either;
		// the unit's next start (at boot) runs the new build, whose
		// recovery puts the old build back and exits, and systemd
		// restarts the unit 5 s later (Restart=on-failure) on the old one.
		{"helper:swapped,recover:start", "", e2eOld, "reverted"},
	} {
		name := strings.NewReplacer(":", "_", ",", "_").Replace(tc.step)
		if tc.program != "" {
			name += "_broken"
		}
		t.Run(name, func(t *testing.T) {
			step := tc.step
			e := newE2E(t, false)
			u := installUnit(e, TestShortCountdownEnv+"=1", handover.CrashPointEnv+"="+step)
			u.appserver("service", "start")
			out, _ := e.admin(time.Minute, "--from", e.release(e2eNew, "client v2\n", tc.program), "--countdown", "1s", "--wait", "5s")
			// Recovered: the journal is gone, and a server answers.
			deadline := time.Now().Add(60 * time.Second)
			for {
				_, jerr := handover.ReadJournal(e.install)
				if jerr != nil && handover.Hello(context.Background(), e.addr) == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after the helper was killed at %s no server answers, or the journal is left (%v):\n%s\njournal:\n%s", step, jerr, out, u.journal(""))
				}
				time.Sleep(200 * time.Millisecond)
			}
			if p := u.show("ActiveState"); p["ActiveState"] != "active" {
				t.Errorf("after a crash at %s the unit is %v, want active", step, p)
			}
			got := e.build(e.install)
			if got != tc.wantBuild {
				t.Fatalf("after a crash at %s the installation holds %q, want %s\njournal:\n%s", step, got, tc.wantBuild, u.journal(""))
			}
			e.checkConfig()
			status, _ := e.admin(30*time.Second, "--status")
			if !strings.Contains(status, tc.want) {
				t.Errorf("after a crash at %s the path holds %s but the status does not say %s:\n%s", step, got, tc.want, status)
			}
			if got == e2eNew && e.build(e.install+"_old") != e2eOld {
				t.Errorf("after a crash at %s _old holds %s, want %s", step, e.build(e.install+"_old"), e2eOld)
			}
			powerLoss := strings.Contains(step, "recover:start")
			if j := u.journal(""); tc.want == "reverted" && !powerLoss && !strings.Contains(j, "before recovering") {
				t.Errorf("after a crash at %s the helper unit's journal does not show its recovery (ExecStopPost) stopping the unit:\n%s", step, j)
			}
			if j := u.journal(""); powerLoss && !strings.Contains(j, "exits so that the service manager starts the old one") {
				t.Errorf("after a crash at %s the new build's server did not put the old one back and exit:\n%s", step, j)
			}
			if tc.want == "reverted" && e.build(e.install+"_failed") != e2eNew {
				t.Errorf("after a crash at %s _failed holds %s, want the unchecked build %s", step, e.build(e.install+"_failed"), e2eNew)
			}
			if exists(e.install + "_new") {
				t.Errorf("%s_new is left over", e.install)
			}
			t.Logf("crash at %s: build %s, status:\n%s", step, got, status)
		})
	}
}
