//go:build unix

package appserver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/testtree"
)

// reloadChildEnv names the AppServer.ini of the server TestReloadSighup
// runs in a process of its own.
const reloadChildEnv = "APPSERVER_TEST_RELOAD_CONFIG"

// TestReloadSighup runs a server as the appserver command does
// (RunServer), in a process of its own (this test binary again), and
// sends it SIGHUP: with a good new file, the next sync installs the new
// build; with a bad one, the server logs every mistake and serves on as
// it was. SIGHUP never ends the server, which stops on SIGTERM as before.
func TestReloadSighup(t *testing.T) {
	if cfg := os.Getenv(reloadChildEnv); cfg != "" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		if err := RunServer(ctx, ServeOptions{Config: cfg, Listen: "127.0.0.1:0"}, os.Stdout, os.Stderr); err != nil {
			t.Fatalf("the server returned: %v", err)
		}
		return
	}
	st := newReloadSite(t)
	st.write(srvBuild, "")
	cmd := exec.Command(os.Args[0], "-test.run=^TestReloadSighup$", "-test.count=1")
	cmd.Env = append(os.Environ(), reloadChildEnv+"="+st.ini)
	var out testtree.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
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
	listening := regexp.MustCompile(`msg=listening addr=(\S+)`)
	var addr string
	for deadline := time.Now().Add(30 * time.Second); addr == ""; time.Sleep(20 * time.Millisecond) {
		if m := listening.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
		}
		select {
		case <-exited:
			t.Fatalf("the server exited before it listened: %v\n%s", waitErr, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server did not listen within 30 s:\n%s", out.String())
		}
	}
	hup := func() {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	install := filepath.Join(t.TempDir(), "ws1")
	clientSync(t, addr, install)

	// A good new file: SIGHUP applies it (the watch of the file would,
	// half a second later: the signal comes first).
	st.write(reloadBuild, "")
	hup()
	change := fmt.Sprintf(`change="[UPDATE] Build: %s -> %s"`, srvBuild, reloadBuild)
	waitLog(t, &out, change)
	logs := out.String()
	if i, j := strings.Index(logs, "trigger=SIGHUP"), strings.Index(logs, change); i < 0 || i > j || strings.Contains(logs[i:j], `trigger="file changed"`) {
		t.Errorf("the change was not made by SIGHUP's re-read:\n%s", logs)
	}
	if res := clientSync(t, addr, install); res.Build != reloadBuild || res.Installed != srvBuild {
		t.Errorf("sync after SIGHUP: build %q over %q, want %s over %s", res.Build, res.Installed, reloadBuild, srvBuild)
	}

	// A bad file: every mistake logged, nothing changed.
	st.write("not-a-build", "[LIMITS]\nHeartbeat=1\n")
	hup()
	waitLog(t, &out, fmt.Sprintf("file=%s section=UPDATE key=Build", st.ini))
	waitLog(t, &out, fmt.Sprintf("file=%s section=LIMITS key=Heartbeat", st.ini))
	waitLog(t, &out, "keeping the running configuration")
	if res := clientSync(t, addr, filepath.Join(t.TempDir(), "ws2")); res.Build != reloadBuild {
		t.Errorf("sync after a bad file: build %q, want %s", res.Build, reloadBuild)
	}
	select {
	case <-exited:
		t.Fatalf("SIGHUP ended the server: %v\n%s", waitErr, out.String())
	default:
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("the server ended with %v after SIGTERM:\n%s", waitErr, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the server did not stop within 20 s of SIGTERM:\n%s", out.String())
	}
}
