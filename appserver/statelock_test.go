package appserver

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/handover"
	"github.com/erpupdate/smartsync/internal/testtree"
)

// stateLockServeEnv, set to an AppServer.ini, makes the test binary, run
// as TestStateLockSecondProcess, a server on that configuration until it
// is killed.
const stateLockServeEnv = "APPSERVER_TEST_STATELOCK_SERVE"

// TestStateLock takes the state folder's lock twice in one process: the
// second is refused at once and names the first's pid, host and start;
// once the first is released, the lock can be taken again.
func TestStateLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "appserver-state")
	if _, inUse, err := StateHolderOf(dir); err != nil || inUse {
		t.Fatalf("StateHolderOf(%s) before any server = in use %v, %v; want not in use", dir, inUse, err)
	}
	before := time.Now().Add(-time.Second)
	first, err := lockState(dir)
	if err != nil {
		t.Fatalf("taking the lock of a new state folder: %v", err)
	}
	h := parseHolder(filepath.Join(dir, LockFile))
	host, _ := os.Hostname()
	if h.PID != os.Getpid() || h.Host != host || h.Started.Before(before) || h.Started.After(time.Now()) {
		t.Errorf("the lock file holds %+v; want pid %d, host %q, started now", h, os.Getpid(), host)
	}

	start := time.Now()
	second, err := lockState(dir)
	var inUse *StateInUseError
	if !errors.As(err, &inUse) {
		second.Close()
		t.Fatalf("a second lock of %s = %v; want a *StateInUseError", dir, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the refusal took %v; it must not wait for the lock", d)
	}
	if inUse.Holder.PID != os.Getpid() || inUse.Dir != dir {
		t.Errorf("the refusal names %+v in %s; want pid %d in %s", inUse.Holder, inUse.Dir, os.Getpid(), dir)
	}
	for _, want := range []string{"the state folder " + dir + " is in use by another appserver", "(pid " + strconv.Itoa(os.Getpid()) + " on host " + host + ", started " + time.Now().UTC().Format("2006-01-02 "), "--state"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not contain %q", err, want)
		}
	}
	if got, busy, err := StateHolderOf(dir); err != nil || !busy || got.PID != os.Getpid() {
		t.Errorf("StateHolderOf while held = %+v, in use %v, %v; want pid %d in use", got, busy, err, os.Getpid())
	}

	if err := first.Close(); err != nil {
		t.Fatalf("releasing the lock: %v", err)
	}
	if _, busy, err := StateHolderOf(dir); err != nil || busy {
		t.Errorf("StateHolderOf after release = in use %v, %v; want not in use", busy, err)
	}
	again, err := lockState(dir)
	if err != nil {
		t.Fatalf("taking the lock again after its release: %v", err)
	}
	again.Close()
}

// stateLockConfig writes an AppServer.ini with one update folder, and
// returns its path; its state folder is appserver-state beside it.
func stateLockConfig(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	writeTree(t, filepath.Join(base, "linux"), map[string]string{"smartclient": "client"}, oldTime)
	cfg := filepath.Join(base, "AppServer.ini")
	writeFile(t, cfg, "[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nPathLinux=linux\nBuild="+srvBuild+"\n")
	return cfg
}

// TestStateLockRunServer: a server whose state folder is held refuses to
// start, before it writes anything there (no TLS key, no hash cache, no
// self-update record), while --check runs and names the holder.
func TestStateLockRunServer(t *testing.T) {
	cfg := stateLockConfig(t)
	state := stateDir(cfg, "")
	held, err := lockState(state)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var out, errb testtree.Buffer
	err = RunServer(ctx, ServeOptions{Config: cfg, Listen: "127.0.0.1:0"}, &out, &errb)
	var inUse *StateInUseError
	if !errors.As(err, &inUse) || inUse.Holder.PID != os.Getpid() {
		t.Fatalf("RunServer on a held state folder = %v; want a refusal naming pid %d\nstderr:\n%s", err, os.Getpid(), errb.String())
	}
	entries, err := os.ReadDir(state)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != LockFile {
			t.Errorf("the refused server wrote %s in the state folder", e.Name())
		}
	}

	out, errb = testtree.Buffer{}, testtree.Buffer{}
	if err := RunServer(ctx, ServeOptions{Config: cfg, Check: true}, &out, &errb); err != nil {
		t.Fatalf("--check beside a server: %v\nstderr:\n%s", err, errb.String())
	}
	want := "State    " + state + "  in use by a server: pid " + strconv.Itoa(os.Getpid())
	if !strings.Contains(out.String(), want) {
		t.Errorf("--check's summary does not say %q:\n%s", want, out.String())
	}
}

// TestStateLockSecondProcess runs a server in a process of its own (this
// test binary again): a server here on the same state folder refuses and
// names that process's pid; once it is killed (SIGKILL on Unix), leaving
// no chance to clean up, a server here starts.
func TestStateLockSecondProcess(t *testing.T) {
	if cfg := os.Getenv(stateLockServeEnv); cfg != "" {
		err := RunServer(context.Background(), ServeOptions{Config: cfg, Listen: "127.0.0.1:0"}, os.Stdout, os.Stderr)
		t.Fatalf("the server in the second process returned: %v", err)
	}
	cfg := stateLockConfig(t)
	state := stateDir(cfg, "")
	cmd := exec.Command(os.Args[0], "-test.run=^TestStateLockSecondProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), stateLockServeEnv+"="+cfg)
	var childOut testtree.Buffer
	cmd.Stdout, cmd.Stderr = &childOut, &childOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	pid := cmd.Process.Pid
	deadline := time.Now().Add(30 * time.Second)
	for parseHolder(filepath.Join(state, LockFile)).PID != pid {
		select {
		case <-exited:
			t.Fatalf("the second process exited before it locked %s: %v\n%s", state, waitErr, childOut.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second process (pid %d) did not lock %s within 30s\n%s", pid, state, childOut.String())
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out, errb testtree.Buffer
	err := RunServer(ctx, ServeOptions{Config: cfg, Listen: "127.0.0.1:0"}, &out, &errb)
	var inUse *StateInUseError
	if !errors.As(err, &inUse) || inUse.Holder.PID != pid || !strings.Contains(err.Error(), "(pid "+strconv.Itoa(pid)+" on host ") {
		t.Fatalf("RunServer beside the server of pid %d = %v; want a refusal naming it\nstderr:\n%s", pid, err, errb.String())
	}
	t.Logf("refused: %v", err)

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("the second process (pid %d) did not die when killed", pid)
	}
	ctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	out, errb = testtree.Buffer{}, testtree.Buffer{}
	go func() { done <- RunServer(ctx, ServeOptions{Config: cfg, Listen: "127.0.0.1:0"}, &out, &errb) }()
	for parseHolder(filepath.Join(state, LockFile)).PID != os.Getpid() {
		select {
		case err := <-done:
			stop()
			t.Fatalf("RunServer after the holder was killed = %v; want it to serve\nstderr:\n%s", err, errb.String())
		case <-ctx.Done():
			t.Fatalf("RunServer after the holder was killed did not lock %s within 30s\nstderr:\n%s", state, errb.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("RunServer after the holder was killed, then stopped = %v; want nil\nstderr:\n%s", err, errb.String())
	}
	if h := parseHolder(filepath.Join(state, LockFile)); h.PID != 0 {
		t.Errorf("the lock file still names pid %d after the server stopped", h.PID)
	}
}

// TestStateLockDeadHolder: when the lock file names a process that has
// exited but the lock is not free yet (Windows may release a dead
// process's locks a little late), a starting server waits for it rather
// than refusing.
func TestStateLockDeadHolder(t *testing.T) {
	dir := t.TempDir()
	dead := exec.Command(os.Args[0], "-test.run=^$", "-test.count=1")
	if err := dead.Run(); err != nil {
		t.Fatalf("running a process to get a dead pid: %v", err)
	}
	held, err := lockState(dir)
	if err != nil {
		t.Fatal(err)
	}
	record := "pid=" + strconv.Itoa(dead.Process.Pid) + "\nhost=elsewhere\nstarted=2026-01-02T03:04:05Z\n"
	if err := os.WriteFile(filepath.Join(dir, LockFile), []byte(record), 0o644); err != nil {
		t.Fatal(err)
	}
	released := make(chan struct{})
	go func() {
		time.Sleep(300 * time.Millisecond)
		held.Close()
		close(released)
	}()
	l, err := lockState(dir)
	<-released
	if err != nil {
		t.Fatalf("lockState with a dead holder whose lock goes after 300ms = %v; want it taken", err)
	}
	if h := parseHolder(filepath.Join(dir, LockFile)); h.PID != os.Getpid() {
		t.Errorf("the lock file names %+v; want this process, %d", h, os.Getpid())
	}
	l.Close()
}

// TestStateLockEndToEnd runs the appserver program: a second server on a
// running one's state folder exits 1 naming the first one's pid, and
// listens nowhere; --check and cert run beside it; once the first is
// killed with SIGKILL, a server starts again on the folder.
func TestStateLockEndToEnd(t *testing.T) {
	e := newE2E(t, false)
	e.serve()
	pid := e.procs[0].Process.Pid
	run := func(args ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(e.install, "appserver"), append([]string{"--config", filepath.Join(e.install, "AppServer.ini")}, args...)...)
		cmd.Dir, cmd.Env = e.install, e.env
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("running appserver %q: %v", args, err)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	state := filepath.Join(e.install, "appserver-state")
	out, code := run("--listen", "127.0.0.1:0")
	want := "appserver: the state folder " + state + " is in use by another appserver (pid " + strconv.Itoa(pid) + " on host "
	if code != 1 || !strings.Contains(out, want) || strings.Contains(out, "listening") {
		t.Errorf("a second server: exit %d, want 1 and %q, not listening:\n%s", code, want, out)
	}
	out, code = run("--check")
	if want := "State    " + state + "  in use by a server: pid " + strconv.Itoa(pid); code != 0 || !strings.Contains(out, want) {
		t.Errorf("--check beside the server: exit %d, want 0 and %q:\n%s", code, want, out)
	}
	out, code = run("cert")
	if code != 0 || !strings.Contains(out, "Fingerprint: SHA256:") {
		t.Errorf("cert beside the server: exit %d, want 0 and the fingerprint:\n%s", code, out)
	}
	if err := handover.Hello(t.Context(), e.addr); err != nil {
		t.Errorf("the first server no longer answers: %v", err)
	}

	if err := e.procs[0].Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Gone means reaped (startServer's goroutine waits for it), not just
	// without a command line: a process being killed loses its memory,
	// and /proc its cmdline, before its files, the lock's included, are
	// closed; a server started in between was refused.
	gone := func() bool {
		p, err := os.FindProcess(pid)
		return err != nil || errors.Is(p.Signal(syscall.Signal(0)), os.ErrProcessDone)
	}
	for deadline := time.Now().Add(10 * time.Second); !gone(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the server (pid %d) did not die on SIGKILL", pid)
		}
	}
	e.serve() // fails the test unless the new server answers
	if h := parseHolder(filepath.Join(state, LockFile)); h.PID != e.procs[1].Process.Pid {
		t.Errorf("after the restart the lock file names %+v; want pid %d", h, e.procs[1].Process.Pid)
	}
}
