package appserver

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/certs"
	"github.com/erpupdate/smartsync/appserver/internal/handover"
	"github.com/erpupdate/smartsync/appserver/mail/mailtest"
	"github.com/erpupdate/smartsync/appserver/release"
	"github.com/erpupdate/smartsync/internal/pki"
)

// The end-to-end tests of the self-update run the real programs: an
// appserver built from this tree, installed in a folder with its BUILD,
// AppServer.ini and certificates; smartclient run sessions; the
// administrator's smartclient admin update-server; a real SMTP server.

const (
	e2eOld   = "7.00.240501A"
	e2eNew   = "7.01.250101A"
	e2eNewer = "7.02.250601A"
	e2ePass  = "correct horse"
)

var binaries = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "smartsync-e2e-bin")
	if err != nil {
		return "", err
	}
	for _, pkg := range []string{"appserver", "smartclient"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, pkg),
			"github.com/erpupdate/smartsync/"+pkg+"/cmd/"+pkg).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("building %s: %v\n%s", pkg, err, out)
		}
	}
	return dir, nil
})

// e2e is one installation of the server, and what the test runs against
// it.
type e2e struct {
	t       *testing.T
	root    string // holds the installation, releases, clients and logs
	install string
	addr    string
	bin     string
	smtp    *mailtest.Server
	ini     []byte // AppServer.ini as written, to compare after updates
	cert    []byte
	env     []string
	procs   []*exec.Cmd
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// newE2E installs the old build in root/appserver with mail going to a
// test SMTP server (or to a closed port when smtpDown).
func newE2E(t *testing.T, smtpDown bool) *e2e {
	t.Helper()
	if runtime.GOOS != "linux" {
		// The test builds the programs with the go command and drives
		// them with Linux process tools (signals, /proc); under Wine a
		// Windows test binary cannot run the Linux go command.
		t.Skip("the end-to-end tests (self-update, state lock, log file) build and drive the real programs with Linux process tools")
	}
	bin, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	e := &e2e{t: t, root: root, install: filepath.Join(root, "appserver"), bin: bin}
	port := freePort(t)
	e.addr = "127.0.0.1:" + strconv.Itoa(port)
	e.smtp = mailtest.Start(t, mailtest.Options{})
	mailHost, mailPort := e.smtp.Host(), e.smtp.Port()
	if smtpDown {
		mailPort = freePort(t)
	}
	hash, _ := testHashes()
	ini := fmt.Sprintf("; the administrator's own comments stay as they are\r\n[TCP]\r\nPort=%d\r\n[UPDATE]\r\nEnable=1\r\nPathLinux=remote_linux_upd\r\nBuild=%s\r\n"+
		"[ADMIN]\r\nUser=admin\r\nPasswordHash=%s\r\n[SELFUPDATE]\r\nPublicKey=%s\r\nHealthTimeout=5\r\nCarry=data/customers.db\r\n"+
		"[MAIL]\r\nHost=%s\r\nPort=%d\r\nFrom=appserver@example.com\r\nStartTLS=0\r\n",
		port, srvBuild, hash, release.FormatPublicKey(vendorKey.Public().(ed25519.PublicKey)), mailHost, mailPort)
	e.ini = []byte(ini)
	e.cert = []byte("-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n")
	e.installTree(e.install, e2eOld, "client v1\n")
	writeFile(t, filepath.Join(e.install, "AppServer.ini"), ini)
	writeFile(t, filepath.Join(e.install, "server.pem"), string(e.cert))
	mkdirWrite(t, filepath.Join(e.install, "data", "customers.db"), "the customers")
	e.env = append(os.Environ(), TestShortCountdownEnv+"=1", "SMARTCLIENT_ADMIN_PASSWORD="+e2ePass)
	t.Cleanup(e.killAll)
	return e
}

func mkdirWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, content)
}

// installTree writes the release files of build into dir: the server
// program, BUILD and an update folder with the client.
func (e *e2e) installTree(dir, build, client string) {
	// A hard link, not a copy: a program this process wrote could be
	// "text file busy" when run, while a parallel test's fork holds the
	// written descriptor (golang.org/issue/22315).
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Link(filepath.Join(e.bin, "appserver"), filepath.Join(dir, "appserver")); err != nil {
		e.t.Fatal(err)
	}
	writeFile(e.t, filepath.Join(dir, "BUILD"), build+"\n")
	mkdirWrite(e.t, filepath.Join(dir, "remote_linux_upd", "smartclient.bin"), client)
}

// release makes a signed release of build; program, when not "", replaces
// the server program (a broken release).
func (e *e2e) release(build, client, program string) string {
	prog, err := os.ReadFile(filepath.Join(e.bin, "appserver"))
	if err != nil {
		e.t.Fatal(err)
	}
	if program != "" {
		prog = []byte(program)
	}
	files := map[string]string{"appserver": string(prog), "remote_linux_upd/smartclient.bin": client,
		"AppServer.ini": "; the vendor's default, which must not win\n"}
	dir := filepath.Join(e.root, "releases", build+strconv.Itoa(len(program)))
	os.MkdirAll(dir, 0o755)
	return makeRelease(e.t, dir, build, files, vendorKey)
}

func (e *e2e) logFile(name string) *os.File {
	f, err := os.OpenFile(filepath.Join(e.root, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { f.Close() })
	return f
}

func (e *e2e) readLog(name string) string {
	b, _ := os.ReadFile(filepath.Join(e.root, name))
	return string(b)
}

// startServer starts the appserver at the installation's path, as a
// service manager would, with extra environment.
func (e *e2e) startServer(extra ...string) *exec.Cmd {
	e.t.Helper()
	cmd := exec.Command(filepath.Join(e.install, "appserver"), "--config", filepath.Join(e.install, "AppServer.ini"))
	cmd.Dir = e.install
	log := e.logFile("server.log")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(append([]string{}, e.env...), extra...)
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go cmd.Wait() // reaped at once, as a service manager does
	e.procs = append(e.procs, cmd)
	return cmd
}

// serve starts the server and waits until it answers.
func (e *e2e) serve(extra ...string) {
	e.t.Helper()
	e.startServer(extra...)
	if err := e.waitAnswer(20 * time.Second); err != nil {
		e.t.Fatal(err)
	}
}

// waitAnswer waits until a server answers at the address.
func (e *e2e) waitAnswer(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var err error
	for time.Now().Before(deadline) {
		if err = handover.Hello(context.Background(), e.addr); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no server answers at %s within %v: %v\nserver log:\n%s", e.addr, limit, err, e.readLog("server.log"))
}

// smartclient runs the client program to its end and returns its output
// and exit code.
func (e *e2e) smartclient(limit time.Duration, args ...string) (string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(e.bin, "smartclient"), args...)
	cmd.Env = e.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode()
	}
	e.t.Fatalf("smartclient %q: %v\n%s", args, err, out.String())
	return "", -1
}

func (e *e2e) admin(limit time.Duration, args ...string) (string, int) {
	return e.smartclient(limit, append([]string{"admin", "update-server", "--server", e.addr, "--dir", e.adminDir()}, args...)...)
}

// adminDir is the administrator's install folder: its smartclient.ini
// pins the key the server made in its state folder at its first start,
// as an administrator pins it from what "appserver cert" prints. The
// key is the same after every update: the state folder is carried.
func (e *e2e) adminDir() string {
	dir := filepath.Join(e.root, "admin")
	ini := filepath.Join(dir, "smartclient.ini")
	if _, err := os.Stat(ini); err == nil {
		return dir
	}
	data, err := os.ReadFile(filepath.Join(e.install, "appserver-state", certs.Dir, certs.CertName))
	if err != nil {
		e.t.Fatalf("the server's certificate: %v", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		e.t.Fatal("the server's certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		e.t.Fatal(err)
	}
	mkdirWrite(e.t, ini, "[SSL]\nFingerprint="+pki.Fingerprint(cert)+"\n")
	return dir
}

// killAll kills every process still running from the test's folder: the
// servers the helper started are not the test's children.
func (e *e2e) killAll() {
	for _, pid := range processes(func(cmdline []byte) bool { return bytes.Contains(cmdline, []byte(e.root)) }) {
		if p, err := os.FindProcess(pid); err == nil {
			p.Kill()
		}
	}
	// Let the killed go before the folder is removed.
	time.Sleep(100 * time.Millisecond)
}

// processes lists the running processes (this one aside) whose command
// line, as /proc has it (NUL-separated), matches.
func processes(match func(cmdline []byte) bool) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, d := range entries {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err == nil && match(cmdline) && handover.ProcessAlive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (e *e2e) build(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "BUILD"))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return strings.TrimSpace(string(b))
}

// checkConfig checks that AppServer.ini and the certificate at the
// installation's path are the administrator's, byte for byte.
func (e *e2e) checkConfig() {
	e.t.Helper()
	for name, want := range map[string][]byte{"AppServer.ini": e.ini, "server.pem": e.cert, "data/customers.db": []byte("the customers")} {
		got, err := os.ReadFile(filepath.Join(e.install, name))
		if err != nil || !bytes.Equal(got, want) {
			e.t.Errorf("%s after the update: %q, %v; want the administrator's, byte for byte", name, got, err)
		}
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

func TestSelfUpdateEndToEnd(t *testing.T) {
	t.Parallel()
	e := newE2E(t, false)
	e.serve()
	src := e.release(e2eNew, "client v2\n", "")

	// Three workstations run the application through smartclient run.
	type ws struct {
		dir, mark string
		cmd       *exec.Cmd
		out       *bytes.Buffer
		done      chan error
	}
	var stations []*ws
	for i := range 3 {
		w := &ws{dir: filepath.Join(e.root, fmt.Sprintf("client%d", i)), out: &bytes.Buffer{}, done: make(chan error, 1)}
		w.mark = filepath.Join(w.dir, "app.log")
		os.MkdirAll(w.dir, 0o755)
		// The mark file is an argument, so that the test's clean-up finds
		// the application by its command line if the test fails.
		app := `echo started >> "$1"; trap 'echo TERM >> "$1"; exit 0' TERM; while :; do sleep 0.1; done`
		w.cmd = exec.Command(filepath.Join(e.bin, "smartclient"), "run", "--allow-unsigned", "--server", e.addr, "--dir", w.dir, "--yes", "--", "sh", "-c", app, "app", w.mark)
		w.cmd.Env = e.env
		w.cmd.Stdout, w.cmd.Stderr = w.out, w.out
		if err := w.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { w.done <- w.cmd.Wait() }()
		stations = append(stations, w)
	}
	for i, w := range stations {
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(readString(w.mark), "started") {
			if time.Now().After(deadline) {
				t.Fatalf("workstation %d: the application never started:\n%s", i, w.out)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if got := readString(filepath.Join(w.dir, "smartclient.bin")); got != "client v1\n" {
			t.Fatalf("workstation %d synced %q", i, got)
		}
	}

	out, code := e.admin(2*time.Minute, "--from", src, "--countdown", "3s", "--notify", "admin@example.com")
	if code != 0 || !strings.Contains(out, e2eNew) {
		t.Fatalf("admin update-server exited %d:\n%s\nserver log:\n%s", code, out, e.readLog("server.log"))
	}
	t.Logf("administrator saw:\n%s", out)
	// One login per command: the password once (op 1), and the restarted
	// server asked with the session token only.
	serverLog := e.readLog("server.log")
	logins := regexp.MustCompile(`msg="administrator logged in" .* op=(\d) session=(\S*)`).FindAllStringSubmatch(serverLog, -1)
	var withPassword, withToken int
	for _, l := range logins {
		switch {
		case l[1] == "1" && l[2] == `""`:
			withPassword++
		case l[1] == "2" && strings.HasPrefix(l[2], "s-"):
			withToken++
		default:
			t.Errorf("unexpected administrator login %q", l[0])
		}
	}
	if withPassword != 1 || withToken < 1 || strings.Contains(serverLog, "administrator login refused") {
		t.Errorf("logins with the password %d, with the token %d; want 1 and some:\n%s", withPassword, withToken, serverLog)
	}
	if !strings.Contains(out, "3 connected sessions warned") {
		t.Errorf("the administrator was not told of 3 warned sessions:\n%s", out)
	}

	// The sessions heard the countdown and their applications were asked
	// to stop at the deadline.
	for i, w := range stations {
		select {
		case <-w.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("workstation %d: smartclient run did not end after the deadline:\n%s", i, w.out)
		}
		if !strings.Contains(w.out.String(), "The server will restart for an update in 0:0") {
			t.Errorf("workstation %d did not show the countdown:\n%s", i, w.out)
		}
		if !strings.Contains(readString(w.mark), "TERM") {
			t.Errorf("workstation %d: the application was not asked to stop (log %q):\n%s", i, readString(w.mark), w.out)
		}
	}

	// The new build runs from the same path; the old one is kept as _old.
	if err := e.waitAnswer(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := e.build(e.install); got != e2eNew {
		t.Errorf("installation holds build %s, want %s", got, e2eNew)
	}
	if got := e.build(e.install + "_old"); got != e2eOld {
		t.Errorf("%s_old holds build %s, want %s", e.install, got, e2eOld)
	}
	e.checkConfig()
	backups, _ := filepath.Glob(filepath.Join(e.install, "backups", "appserver-data-*", "selfupdate", "running.json"))
	if len(backups) != 1 {
		t.Errorf("data backups holding the update's record: %q", backups)
	}
	for _, leftover := range []string{e.install + "_new", handover.HelperDir(e.install)} {
		if exists(leftover) {
			t.Errorf("%s is left over", leftover)
		}
	}
	status, code := e.admin(30*time.Second, "--status")
	if code != 0 || !strings.Contains(status, e2eNew) || !strings.Contains(status, "done") {
		t.Errorf("status after the update (exit %d):\n%s", code, status)
	}

	// The administrator got the outcome by mail.
	msgs := e.mails(1)
	if len(msgs) != 1 || msgs[0].To[0] != "admin@example.com" || !strings.Contains(msgs[0].Subject, "updated to build "+e2eNew) {
		t.Fatalf("mail: %+v", msgs)
	}

	// The workstations catch up with the new client build.
	for i, w := range stations {
		out, code := e.smartclient(time.Minute, "sync", "--allow-unsigned", "--server", e.addr, "--dir", w.dir, "--yes")
		if code != 0 || readString(filepath.Join(w.dir, "smartclient.bin")) != "client v2\n" {
			t.Errorf("workstation %d after the update: exit %d, client %q:\n%s", i, code, readString(filepath.Join(w.dir, "smartclient.bin")), out)
		}
	}
}

// mails waits for n mails at the test's SMTP server.
func (e *e2e) mails(n int) []mailtest.Message {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := e.smtp.Wait(ctx, n)
	if err != nil {
		e.t.Errorf("waiting for %d mails: %v", n, err)
	}
	return msgs
}

func readString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// TestSelfUpdateReverts updates the old build to the new one, which
// answers, and then tries a broken newer release. The revert puts the new
// build back at the path, keeps the broken one as _failed, and leaves
// _old, the way back from the good update, as it was. A new server that
// exits, whatever its exit code, fails the check at once: with a
// HealthTimeout of 60 s the old build serves again within seconds of the
// exit.
func TestSelfUpdateReverts(t *testing.T) {
	for _, tc := range []struct {
		name, program, reason string
		timeout               int // [SELFUPDATE] HealthTimeout, s
	}{
		{"exits at start", "#!/bin/sh\necho broken >&2\necho exited > '%s'\nexit 3\n", "exited at start", 60},
		{"exits 0 at start", "#!/bin/sh\necho broken >&2\necho exited > '%s'\nexit 0\n", "exited at start", 60},
		{"never answers", "#!/bin/sh\necho '%s' >/dev/null\nexec sleep 600\n", "did not answer within 5s", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newE2E(t, false)
			e.setHealthTimeout(tc.timeout)
			e.serve()
			out, code := e.admin(2*time.Minute, "--from", e.release(e2eNew, "client v2\n", ""), "--countdown", "1s")
			if code != 0 || e.build(e.install) != e2eNew || e.build(e.install+"_old") != e2eOld {
				t.Fatalf("the good update: exit %d, path %s, _old %s:\n%s\nserver log:\n%s", code, e.build(e.install), e.build(e.install+"_old"), out, e.readLog("server.log"))
			}

			// The broken release's program marks its exit; the watcher
			// measures from the mark to the good build answering again.
			mark := filepath.Join(e.root, "broken-exited")
			src := e.release(e2eNewer, "client v3\n", fmt.Sprintf(tc.program, mark))
			back := make(chan time.Duration, 1)
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				for !exists(mark) {
					select {
					case <-stop:
						return
					case <-time.After(10 * time.Millisecond):
					}
				}
				// The program writes the mark just before it exits: its
				// modification time is the exit's, to the file system's
				// precision, whenever this loop saw it.
				exit := time.Now()
				if fi, err := os.Stat(mark); err == nil {
					exit = fi.ModTime()
				}
				for handover.Hello(context.Background(), e.addr) != nil {
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
				back <- time.Since(exit)
			}()
			out, code = e.admin(2*time.Minute, "--from", src, "--countdown", "1s", "--notify", "admin@example.com")
			if code != 1 || !strings.Contains(out, "reverted to "+e2eNew) || !strings.Contains(out, tc.reason) {
				t.Fatalf("admin update-server exited %d, want 1 and \"reverted to %s: ...%s\":\n%s\nserver log:\n%s", code, e2eNew, tc.reason, out, e.readLog("server.log"))
			}
			if err := e.waitAnswer(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			if tc.timeout == 60 {
				select {
				case d := <-back:
					t.Logf("the broken server exited; the good build answered again %v later (HealthTimeout 60 s)", d.Round(time.Millisecond))
					// The goal: back within 5 s of the exit. It is far
					// below the 60 s a check that missed the exit would
					// take, and below the 10 s a check that saw the exit
					// but then waited for it again took; an idle machine
					// takes some tens of milliseconds.
					if d > 5*time.Second {
						t.Errorf("the good build answered again %v after the broken server exited; want within 5 s (HealthTimeout 60 s)", d)
					}
				case <-time.After(10 * time.Second):
					t.Errorf("the broken server's exit or the good build's return was not seen (mark %s exists: %v)", mark, exists(mark))
				}
			}
			if got := e.build(e.install); got != e2eNew {
				t.Errorf("after the revert the installation holds %s, want %s", got, e2eNew)
			}
			if got := e.build(e.install + "_failed"); got != e2eNewer {
				t.Errorf("the failed release is not kept as _failed: %s", got)
			}
			if got := e.build(e.install + "_old"); got != e2eOld {
				t.Errorf("after the reverted update %s_old holds %s, want %s, the way back from the good update", filepath.Base(e.install), got, e2eOld)
			}
			if exists(e.install + "_new") {
				t.Errorf("%s_new is left over", e.install)
			}
			e.checkConfig()
			msgs := e.mails(1)
			if len(msgs) != 1 || !strings.Contains(msgs[0].Subject, "reverted to "+e2eNew) || !strings.Contains(msgs[0].Body, tc.reason) {
				t.Fatalf("mail: %+v", msgs)
			}
		})
	}
}

// setHealthTimeout sets [SELFUPDATE] HealthTimeout, in seconds, in the
// installation's AppServer.ini.
func (e *e2e) setHealthTimeout(s int) {
	e.t.Helper()
	ini := strings.Replace(string(e.ini), "HealthTimeout=5\r\n", fmt.Sprintf("HealthTimeout=%d\r\n", s), 1)
	e.ini = []byte(ini)
	writeFile(e.t, filepath.Join(e.install, "AppServer.ini"), ini)
}

func TestSelfUpdateMailDown(t *testing.T) {
	t.Parallel()
	e := newE2E(t, true)
	e.serve()
	out, code := e.admin(2*time.Minute, "--from", e.release(e2eNew, "client v2\n", ""), "--countdown", "1s", "--notify", "admin@example.com")
	if code != 0 {
		t.Fatalf("with the SMTP server down, the update failed (exit %d):\n%s", code, out)
	}
	if got := e.build(e.install); got != e2eNew {
		t.Errorf("installation holds %s", got)
	}
	if log := e.readLog("server.log"); !strings.Contains(log, "mailing the outcome failed") {
		t.Errorf("the mail failure was not logged:\n%s", log)
	}
}

func TestSelfUpdateAdminCommands(t *testing.T) {
	t.Parallel()
	e := newE2E(t, false)
	e.serve()
	src := e.release(e2eNew, "client v2\n", "")
	e.env = append(e.env, "SMARTCLIENT_ADMIN_PASSWORD=wrong horse")
	out, code := e.admin(time.Minute, "--from", src, "--countdown", "1s")
	if code != 1 || !strings.Contains(strings.ToLower(out), "denied") {
		t.Errorf("wrong password: exit %d:\n%s", code, out)
	}
	e.env = append(e.env, "SMARTCLIENT_ADMIN_PASSWORD="+e2ePass)
	old := e.release("6.00.200101A", "client v0\n", "")
	out, code = e.admin(time.Minute, "--from", old, "--countdown", "1s")
	if code != 1 || !strings.Contains(out, "older than the running build") {
		t.Errorf("downgrade: exit %d:\n%s", code, out)
	}
	forged := makeRelease(t, t.TempDir(), e2eNew, map[string]string{"appserver": "#!/bin/sh\n"}, otherKey)
	out, code = e.admin(time.Minute, "--from", forged, "--countdown", "1s")
	if code != 1 || !strings.Contains(out, "release refused") {
		t.Errorf("bad signature: exit %d:\n%s", code, out)
	}
	if e.build(e.install) != e2eOld || exists(e.install+"_new") {
		t.Errorf("a refused update changed the installation")
	}

	// --at schedules, --status shows it, also after a restart, and
	// --cancel withdraws it.
	at := time.Now().Add(3 * time.Hour).Truncate(time.Minute)
	out, code = e.admin(time.Minute, "--from", src, "--at", at.Format(time.RFC3339), "--notify", "admin@example.com")
	if code != 0 || !strings.Contains(out, "scheduled for "+at.Format("2006-01-02 15:04")) {
		t.Fatalf("--at: exit %d:\n%s", code, out)
	}
	e.procs[0].Process.Signal(syscall.SIGTERM)
	for deadline := time.Now().Add(20 * time.Second); handover.Hello(context.Background(), e.addr) == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server did not stop on SIGTERM")
		}
	}
	// As a service manager does, start the next one when the process has
	// exited, not as soon as it stops listening: until then it holds the
	// state folder (appserver.lock).
	for deadline := time.Now().Add(20 * time.Second); e.serverRunning(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server did not exit on SIGTERM")
		}
	}
	e.serve()
	out, code = e.admin(time.Minute, "--status")
	if code != 0 || !strings.Contains(out, "scheduled") || !strings.Contains(out, src) {
		t.Errorf("--status after a restart: exit %d:\n%s", code, out)
	}
	out, code = e.admin(time.Minute, "--cancel")
	if code != 0 || !strings.Contains(out, "Cancelled") {
		t.Errorf("--cancel: exit %d:\n%s", code, out)
	}
	out, code = e.admin(time.Minute, "--status")
	if code != 0 || !strings.Contains(out, "cancelled") {
		t.Errorf("--status after --cancel: exit %d:\n%s", code, out)
	}
	if out, code = e.admin(time.Minute, "--cancel"); code != 1 {
		t.Errorf("--cancel with nothing to cancel: exit %d:\n%s", code, out)
	}
	if msgs := e.mails(1); len(msgs) != 1 || !strings.Contains(msgs[0].Subject, "cancelled") {
		t.Errorf("mail of the cancelled update: %+v", msgs)
	}
}

// TestSelfUpdateCrashPoints kills the server or the helper at each step of
// an update. Whatever the step, a server then answers at the original
// path (started again as a service manager would, when nothing runs),
// with the administrator's configuration, and a retry updates it.
func TestSelfUpdateCrashPoints(t *testing.T) {
	steps := []string{
		"server:prepared", "server:countdown", "server:closed", "server:backup", "server:carried", "server:spawned",
		"helper:handover", "helper:stopped", "helper:swapped", "helper:started", "helper:healthy", "helper:kept",
	}
	for _, step := range steps {
		t.Run(strings.ReplaceAll(step, ":", "_"), func(t *testing.T) {
			t.Parallel() // each has its own folder and port
			e := newE2E(t, false)
			e.serve(handover.CrashPointEnv + "=" + step)
			out, _ := e.admin(time.Minute, "--from", e.release(e2eNew, "client v2\n", ""), "--countdown", "1s", "--wait", "5s")
			e.supervise(30 * time.Second)
			got := e.build(e.install)
			if got != e2eOld && got != e2eNew {
				t.Fatalf("after a crash at %s the installation holds %q\nadmin:\n%s", step, got, out)
			}
			e.checkConfig()
			status, _ := e.admin(30*time.Second, "--status")
			t.Logf("crash at %s: build %s; status:\n%s", step, got, status)
			// The outcome on record says what the path holds.
			if want := map[string]string{e2eOld: "failed", e2eNew: "done"}[got]; !strings.Contains(status, want) {
				t.Errorf("after a crash at %s the path holds %s but the status does not say %s:\n%s\nserver log:\n%s", step, got, want, status, e.readLog("server.log"))
			}
			if exists(e.install + "_new") {
				t.Errorf("%s_new is left over", e.install)
			}
			// The way back is kept: a path holding the new build has the
			// old one as _old.
			if got == e2eNew && e.build(e.install+"_old") != e2eOld {
				t.Errorf("after a crash at %s the path holds %s and %s_old holds %s, want %s", step, got, filepath.Base(e.install), e.build(e.install+"_old"), e2eOld)
			}
			// A retry works.
			out, code := e.admin(2*time.Minute, "--from", e.release(e2eNewer, "client v3\n", ""), "--countdown", "1s")
			if code != 0 || e.build(e.install) != e2eNewer {
				t.Fatalf("retry after a crash at %s: exit %d, build %s:\n%s\nserver log:\n%s", step, code, e.build(e.install), out, e.readLog("server.log"))
			}
			e.checkConfig()
		})
	}
}

// supervise does what a service manager does: if no server answers and
// no update helper is at work, it starts the server at its path.
func (e *e2e) supervise(limit time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(limit)
	started := false
	for time.Now().Before(deadline) {
		if handover.Hello(context.Background(), e.addr) == nil {
			if jr, err := handover.ReadJournal(e.install); err != nil || !jr.HelperAlive() {
				return
			}
		}
		jr, err := handover.ReadJournal(e.install)
		if (err != nil || !jr.HelperAlive()) && !started && !e.serverRunning() {
			e.startServer()
			started = true
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.t.Fatalf("no server answers at %s after %v\nserver log:\n%s", e.addr, limit, e.readLog("server.log"))
}

// serverRunning reports whether a server process runs from the
// installation's path.
func (e *e2e) serverRunning() bool {
	prog := []byte(filepath.Join(e.install, "appserver") + "\x00")
	return len(processes(func(cmdline []byte) bool { return bytes.HasPrefix(cmdline, prog) })) > 0
}

// TestSelfUpdateFromFeedEndToEnd: the vendor's feed lists a newer
// release; the server mails [SELFUPDATE] Notify of it, "smartclient admin
// check" shows it, and "admin update-server" without --from installs it.
func TestSelfUpdateFromFeedEndToEnd(t *testing.T) {
	t.Parallel()
	e := newE2E(t, false)
	src := e.release(e2eNew, "client v2\n", "")
	entry, err := release.MakeFeedRelease(context.Background(), src, []ed25519.PublicKey{vendorKey.Public().(ed25519.PublicKey)}, "", release.Platform())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	feed, err := release.SignFeed(release.Feed{Format: release.FeedFormat, Number: uint64(now.Unix()), Published: now,
		Expires: now.Add(24 * time.Hour), Releases: []release.FeedRelease{entry}}, vendorKey)
	if err != nil {
		t.Fatal(err)
	}
	feedPath := filepath.Join(filepath.Dir(src), "feed.json")
	writeFile(t, feedPath, string(feed))
	e.ini = bytes.Replace(e.ini, []byte("Carry=data/customers.db\r\n"), []byte("Carry=data/customers.db\r\nFeed="+feedPath+"\r\nNotify=admin@example.com\r\n"), 1)
	writeFile(t, filepath.Join(e.install, "AppServer.ini"), string(e.ini))
	e.serve()

	if msgs := e.mails(1); len(msgs) != 1 || !strings.Contains(msgs[0].Subject, "release "+e2eNew+" is available") {
		t.Fatalf("mail of the newer release: %+v\nserver log:\n%s", msgs, e.readLog("server.log"))
	}
	out, code := e.smartclient(time.Minute, "admin", "check", "--server", e.addr, "--dir", e.adminDir())
	if code != 0 || !strings.Contains(out, "Newer release:  "+e2eNew) {
		t.Fatalf("admin check: exit %d:\n%s", code, out)
	}
	out, code = e.admin(2*time.Minute, "--countdown", "1s")
	if code != 0 || !strings.Contains(out, "from the release feed") || !strings.Contains(out, e2eNew) {
		t.Fatalf("update-server without --from: exit %d:\n%s\nserver log:\n%s", code, out, e.readLog("server.log"))
	}
	if err := e.waitAnswer(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := e.build(e.install); got != e2eNew {
		t.Errorf("installation holds build %s, want %s", got, e2eNew)
	}
	e.checkConfig()
	// Notify is told the outcome of an update asked for without --notify.
	if msgs := e.mails(2); len(msgs) != 2 || !strings.Contains(msgs[1].Subject, "updated to build "+e2eNew) {
		t.Errorf("outcome mail: %+v", msgs)
	}
	// The new server reads the feed at its start, in the background.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, code = e.smartclient(time.Minute, "admin", "check", "--server", e.addr, "--dir", e.adminDir())
		if code == 0 && strings.Contains(out, "newest release of its feed") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin check after the update: exit %d:\n%s", code, out)
		}
	}
}
