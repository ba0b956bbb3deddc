package handover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Service managers a server may run under, as Self.Manager and the
// journal record them (the values of appserver/internal/service).
const (
	ManagerSystemd = "systemd"
	ManagerWindows = "windows"
	ManagerLaunchd = "launchd"
)

// Manager is the service manager of a server run as a service: the helper
// stops the old server and starts the new one through it, so that the
// service is active with the new build afterwards, rather than running a
// server of its own outside the service. A server run without one is
// started and watched by the helper itself, as a child.
type Manager interface {
	// Stop stops the service and returns once it is stopped.
	Stop(ctx context.Context) error
	// Start starts the service; it returns once the manager has it
	// started (on systemd, with Type=notify, once the server sent
	// READY=1), or why it failed.
	Start(ctx context.Context) error
	// Running reports whether the service's server runs (or starts); when
	// not, it says in what state the service is.
	Running(ctx context.Context) (bool, string)
	// String names the service, for the log.
	String() string
}

// managerFor is the manager of the journal's service, nil when the server
// was not run as a service. Tests replace it.
var managerFor = func(jr *Journal) Manager {
	switch jr.Manager {
	case ManagerSystemd:
		if jr.Service == "" {
			return nil
		}
		return systemdUnit(jr.Service + ".service")
	case ManagerWindows, ManagerLaunchd:
		return kserviceManager(jr.Service)
	}
	return nil
}

// systemdUnit controls a systemd unit with systemctl.
type systemdUnit string

func (u systemdUnit) String() string { return "systemd unit " + string(u) }

func (u systemdUnit) Stop(ctx context.Context) error {
	return systemctl(ctx, "stop", string(u))
}

func (u systemdUnit) Start(ctx context.Context) error {
	// A failed start leaves the unit failed: reset it, so that the
	// start limit counts this start afresh.
	systemctl(ctx, "reset-failed", string(u))
	before := u.show(ctx)["ExecMainStartTimestampMonotonic"]
	err := systemctl(ctx, "start", string(u))
	if err == nil {
		return nil
	}
	return u.startError(ctx, before, err)
}

// ExitedError is a service's failed start in which its program ran and
// exited (or was killed) before the manager had it started: the server
// itself failed, not the manager.
type ExitedError struct {
	Service string // the service, as Manager.String names it
	How     string // "status 3", "signal KILL"
}

func (e *ExitedError) Error() string { return e.Service + " exited (" + e.How + ")" }

// show returns the unit's properties that tell how its program last ran.
func (u systemdUnit) show(ctx context.Context) map[string]string {
	out, _ := exec.CommandContext(ctx, "systemctl", "show", "--property=Result,ExecMainCode,ExecMainStatus,ExecMainStartTimestampMonotonic", string(u)).Output()
	m := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			m[k] = v
		}
	}
	return m
}

// startError says why "systemctl start" failed (err): an *ExitedError when
// the server's program ran for this start (its start time moved from
// before) and exited, or was killed; otherwise systemd refused to start it
// (a bad unit, a start limit hit, a program it could not run), and the
// error says what systemctl said.
func (u systemdUnit) startError(ctx context.Context, before string, err error) error {
	p := u.show(ctx)
	st, _ := strconv.Atoi(p["ExecMainStatus"])
	ran := p["ExecMainStartTimestampMonotonic"] != before && p["ExecMainStartTimestampMonotonic"] != "0" && p["ExecMainStartTimestampMonotonic"] != ""
	switch {
	// systemd's own exit statuses, 200-243 (203/EXEC...): the program
	// never ran.
	case ran && p["ExecMainCode"] == "1" && !(st >= 200 && st <= 243):
		return &ExitedError{Service: u.String(), How: fmt.Sprintf("status %d", st)}
	case ran && (p["ExecMainCode"] == "2" || p["ExecMainCode"] == "3"):
		return &ExitedError{Service: u.String(), How: "killed by signal " + strconv.Itoa(st)}
	}
	how := "result " + p["Result"]
	if ran && p["ExecMainCode"] == "1" {
		how += fmt.Sprintf(", status %d: systemd could not run the program", st)
	}
	return fmt.Errorf("systemd refused to start %s (%s): %w", string(u), how, err)
}

func (u systemdUnit) Running(ctx context.Context) (bool, string) {
	out, err := exec.CommandContext(ctx, "systemctl", "show", "--property=ActiveState,SubState,Result", "--value", string(u)).Output()
	if err != nil {
		return false, fmt.Sprintf("systemctl show %s: %v", u, err)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		return false, fmt.Sprintf("systemctl show %s: %q", u, out)
	}
	// active/running, or reloading: running. activating/auto-restart
	// after a crash, failed, inactive: not.
	if f[0] == "active" || f[0] == "reloading" {
		return true, ""
	}
	return false, fmt.Sprintf("the unit %s is %s (%s)", u, strings.Join(f, "/"), "systemctl status "+string(u))
}

// systemctl runs systemctl with args; its error names the command and
// says what systemctl said.
func systemctl(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "systemctl", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		// systemctl's first line says what failed; the rest points to
		// systemctl status and journalctl.
		said, _, _ := strings.Cut(strings.TrimSpace(out.String()), "\n")
		return fmt.Errorf("systemctl %s: %v: %s", strings.Join(args, " "), err, said)
	}
	return nil
}

// startUnderSystemd starts the helper cmd in a transient systemd unit of
// its own, <service>-selfupdate-<id>.service, outside the server's unit:
// the helper stops the server's unit, which would stop a helper inside it
// (whatever the unit's KillMode, a stop of the unit kills what is left in
// its cgroup). When the helper's unit stops, however it ended (a crash, a
// kill), systemd runs its ExecStopPost: first the helper's own program,
// in HelperDir outside the installation, as "selfupdate-helper --recover"
// (RecoverService), which completes or reverts what a dead helper left
// whatever the installation's path holds (it may be empty, or an
// unchecked new build); then it starts the server's unit again, which
// does nothing when the helper has already started it. cmd.Args is the
// helper's command line: PROGRAM selfupdate-helper --journal FILE.
func startUnderSystemd(ctx context.Context, service, id string, cmd *exec.Cmd) error {
	unit := service + "-selfupdate-" + id
	recoverCmd := append([]string{cmd.Args[0], "selfupdate-helper", "--recover"}, cmd.Args[2:]...)
	args := []string{"--unit=" + unit, "--collect", "--quiet",
		"--description=Self-update " + id + " of " + service + ".service",
		"--working-directory=" + cmd.Dir,
		// The recovery may stop the server's unit, which drains for up
		// to its TimeoutStopSec (90 s).
		"--property=TimeoutStopSec=5min",
		// "-": the unit's start comes after it, whatever it says.
		"--property=ExecStopPost=-" + unitCommand(recoverCmd),
		"--property=ExecStopPost=" + systemctlPath() + " start --no-block " + service + ".service",
	}
	// The helper reads nothing else from its environment but the tests'
	// crash points.
	for _, v := range cmd.Env {
		if strings.HasPrefix(v, "SMARTSYNC_") {
			args = append(args, "--setenv="+v)
		}
	}
	args = append(args, "--")
	args = append(args, cmd.Args...)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	run := exec.CommandContext(ctx, "systemd-run", args...)
	var out bytes.Buffer
	run.Stdout, run.Stderr = &out, &out
	if err := run.Run(); err != nil {
		return fmt.Errorf("starting the helper in the unit %s (systemd-run): %v: %s", unit, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// unitCommand quotes a command line for a unit's Exec setting: each word
// in double quotes, with systemd's specifiers (%) and variables ($)
// escaped.
func unitCommand(words []string) string {
	q := make([]string, len(words))
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "%", "%%", "$", "$$")
	for i, w := range words {
		q[i] = `"` + r.Replace(w) + `"`
	}
	return strings.Join(q, " ")
}

// RecoverService is "PROGRAM selfupdate-helper --recover --journal FILE",
// which the helper's systemd unit runs as it stops (ExecStopPost), from
// the helper's own copy of the program beside the installation: when the
// helper died before it finished, it completes the switch as Recover
// does, reverting a new build not yet found healthy, after stopping the
// server's unit where the installation's path may change under it. The
// unit's next ExecStopPost then starts the server's unit. A helper that
// finished left no journal: nothing is done.
func RecoverService(ctx context.Context, log *slog.Logger, journalPath string, notify Notify) error {
	dir := filepath.Dir(journalPath)
	jr, err := readJournal(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the journal: %w", err)
	}
	if jr.HelperAlive() {
		if jr.HelperPID == 0 {
			return fmt.Errorf("the server handing over (pid %d) still runs, and the update helper has not recorded itself (journal %s)", jr.ServerPID, journalPath)
		}
		return fmt.Errorf("the update helper (pid %d, journal %s) still runs", jr.HelperPID, journalPath)
	}
	// A test's stand-in for a power loss: no recovery here, the server's
	// own at its next start.
	CrashPoint("recover:start")
	switch jr.Phase {
	case PhaseHandover, PhaseStopped, PhaseSwapped, PhaseStarted, PhaseReverting:
		// The path may be empty, or hold a new build the manager runs or
		// restarts: stop it before the path changes.
		if mgr := managerFor(jr); mgr != nil {
			log.Info("stopping the server through the service manager before recovering", "service", mgr.String())
			sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			if err := mgr.Stop(sctx); err != nil {
				log.Error("stopping the server through the service manager", "err", err)
			}
			cancel()
		}
	}
	self := Self{InstallDir: jr.Install, Exe: filepath.Join(jr.Install, jr.Exe), StateDir: jr.StateDir,
		ConfigFile: jr.ConfigFile, Manager: jr.Manager, Service: jr.Service}
	if err := Recover(log, self, notify); err != nil && !errors.Is(err, ErrRestart) {
		return err
	}
	return nil
}

// systemctlPath is where ExecStopPost finds systemctl: the unit's
// command needs an absolute path.
func systemctlPath() string {
	if p, err := exec.LookPath("systemctl"); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return "/bin/systemctl"
}

// startAndCheckService starts the service through its manager and waits
// for the server to answer, as startAndCheck does for a server it starts
// itself: the manager's failed start (on systemd with Type=notify, an exit
// before READY=1), or the service leaving the running state, fails the
// check at once. A server that fails is stopped through the manager.
func (h *helper) startAndCheckService(ctx context.Context, which string) string {
	jr := h.jr
	h.log.Info("starting the server through the service manager", "which", which, "service", h.mgr.String())
	sctx, cancel := context.WithTimeout(ctx, jr.HealthTimeout)
	err := h.mgr.Start(sctx)
	timedOut := sctx.Err() != nil
	cancel()
	if which == "new" {
		if err := h.step(PhaseStarted); err != nil {
			h.log.Error("recording the start", "err", err)
		}
	}
	if err != nil {
		h.stopService()
		var exited *ExitedError
		switch {
		case timedOut && ctx.Err() == nil:
			return fmt.Sprintf("the %s server did not answer within %v (the service manager did not see it ready: %v)", which, jr.HealthTimeout, err)
		case errors.As(err, &exited):
			return fmt.Sprintf("the %s server exited at start, before it answered: %v", which, err)
		}
		return fmt.Sprintf("the %s server was not started: %v", which, err)
	}
	// exited is closed when the manager no longer has the service
	// running; why then says in what state it is.
	exited := make(chan struct{})
	done := make(chan struct{})
	defer close(done)
	var why string
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			if ok, w := h.mgr.Running(ctx); !ok && ctx.Err() == nil {
				why = w
				close(exited)
				return
			}
		}
	}()
	reason := checkHealth(ctx, healthAddr(jr.Listen), jr.HealthTimeout, exited, func() error { return errors.New(why) })
	if reason != "" {
		h.stopService()
		return fmt.Sprintf("the %s server %s", which, reason)
	}
	h.log.Info("server answers", "which", which, "service", h.mgr.String(), "addr", healthAddr(jr.Listen))
	return ""
}

// stopService stops a failed server through the manager, so that the
// manager does not restart it from a path about to be swapped.
func (h *helper) stopService() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := h.mgr.Stop(ctx); err != nil {
		h.log.Error("stopping the failed server through the service manager", "err", err)
	}
}
