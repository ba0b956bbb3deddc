//go:build linux

package cli

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/desktop"
	"github.com/erpupdate/smartsync/smartclient/internal/desktop/desktoptest"
)

// mainResult is what Main returned, run aside.
type mainResult struct {
	code           int
	stdout, stderr string
}

// runAside runs Main in a goroutine, as a user's smartclient would run
// beside the windows the test looks at.
func runAside(t *testing.T, args ...string) (<-chan mainResult, <-chan struct{}) {
	res := make(chan mainResult, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var out, errb bytes.Buffer
		code := Main(t.Context(), args, strings.NewReader(""), &out, &errb)
		res <- mainResult{code, out.String(), errb.String()}
	}()
	return res, done
}

// TestWindowCancelInterrupts: the progress window's Cancel (Escape in
// the real zenity, on Xvfb) cancels the sync's context: the sync, held up
// by a server that never answers, ends at once with the exit code and
// the words of an interrupt.
func TestWindowCancelInterrupts(t *testing.T) {
	desktoptest.Require(t, "zenity", "xdotool", "xwininfo")
	d := desktoptest.Xvfb(t)
	t.Setenv("DISPLAY", d.Name)
	t.Setenv("WAYLAND_DISPLAY", "")
	// A server that takes the connection and says nothing: the sync
	// waits for it (its per-message timeout is 30 s).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	dir := t.TempDir()
	res, done := runAside(t, "sync", "--ui", "window", "--dir", dir, "--server", ln.Addr().String())
	win, err := d.WaitWindow(desktop.Title, 15*time.Second, done)
	if err != nil {
		t.Fatal(err)
	}
	cancelled := time.Now()
	if err := d.Key(win, "Escape"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-res:
		if r.code != ExitInterrupted || !strings.Contains(r.stderr, "Interrupted; the installation was left as it was.") {
			t.Errorf("after Cancel: exit %d, stdout %q, stderr %q; want %d and the interrupt's words", r.code, r.stdout, r.stderr, ExitInterrupted)
		}
		if took := time.Since(cancelled); took > 10*time.Second {
			t.Errorf("the sync took %s to end after Cancel", took)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the sync did not end within 20 s of Cancel")
	}
	if ws, _ := d.Windows(); len(ws) != 0 {
		t.Errorf("windows left after the sync ended: %v", ws)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != ".smartclient" {
			t.Errorf("a cancelled sync left %s in the install folder", e.Name())
		}
	}
}

// TestWindowShowsTheFailure: a failed sync shows its message in the
// failure dialog (as well as on stderr), and exits 1 once it is closed.
func TestWindowShowsTheFailure(t *testing.T) {
	desktoptest.Require(t, "zenity", "xdotool", "xwininfo")
	d := desktoptest.Xvfb(t)
	t.Setenv("DISPLAY", d.Name)
	t.Setenv("WAYLAND_DISPLAY", "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens there now: the connection is refused
	res, done := runAside(t, "sync", "--ui", "window", "--connect-retry", "off", "--dir", t.TempDir(), "--server", addr)
	win, err := d.WaitWindow(desktop.ErrorTitle, 15*time.Second, done)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-res:
		t.Fatalf("the sync ended while its failure was shown: exit %d", r.code)
	case <-time.After(300 * time.Millisecond):
	}
	if err := d.Key(win, "Return"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-res:
		if r.code != ExitFailed || !strings.Contains(r.stderr, "Could not update automatically") {
			t.Errorf("exit %d, stderr %q; want %d and the failure message", r.code, r.stderr, ExitFailed)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the sync did not end within 20 s of the failure dialog's closing")
	}
}

// TestWindowCancelAfterTheSyncRuns: run through the window UI: the sync
// fails (nobody listens at the server's address) and shows its failure;
// the progress window, still on screen, is cancelled meanwhile. That
// Cancel comes after the sync: the program is started all the same, as
// after any failed sync, and run exits with its status.
func TestWindowCancelAfterTheSyncRuns(t *testing.T) {
	desktoptest.Require(t, "zenity", "xdotool", "xwininfo")
	d := desktoptest.Xvfb(t)
	t.Setenv("DISPLAY", d.Name)
	t.Setenv("WAYLAND_DISPLAY", "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens there now: the connection is refused
	res, done := runAside(t, "run", "--ui", "window", "--connect-retry", "off", "--dir", t.TempDir(), "--server", addr,
		"--", "/bin/sh", "-c", "echo the program started; exit 7")
	box, err := d.WaitWindow(desktop.ErrorTitle, 15*time.Second, done)
	if err != nil {
		t.Fatal(err)
	}
	progress, err := d.WaitWindow(desktop.Title, 15*time.Second, done)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Key(progress, "Escape"); err != nil { // Cancel
		t.Fatal(err)
	}
	if err := d.WaitGone(desktop.Title, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := d.Key(box, "Return"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-res:
		if r.code != 7 || !strings.Contains(r.stdout, "the program started") {
			t.Errorf("exit %d, stdout %q, stderr %q; want the program started, and its exit status 7", r.code, r.stdout, r.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not end within 30 s of the failure dialog's closing")
	}
}

// TestWindowDeadDisplay: --ui window on a DISPLAY with no server behind
// it is refused as a usage error before anything is done; zenity, which
// exits 1 there as at its Cancel, is never taken for the user's Cancel.
func TestWindowDeadDisplay(t *testing.T) {
	desktoptest.Require(t, "zenity")
	t.Setenv("DISPLAY", ":987")
	t.Setenv("WAYLAND_DISPLAY", "")
	if desktop.Interactive() {
		t.Skip("display :987 has a server here")
	}
	code, _, errOut := runMain(t, "sync", "--ui", "window", "--dir", t.TempDir(), "--server", "127.0.0.1:1")
	if code != ExitUsage || !strings.Contains(errOut, "no desktop to show it on") {
		t.Errorf("--ui window on a dead display: exit %d, %q; want %d and why", code, errOut, ExitUsage)
	}
}

// TestUsageErrorShownWithoutTerminal: started as a desktop launcher starts
// it (its standard streams files, no terminal, a desktop session), a
// command line that makes no sense is shown in a failure dialog, as well
// as on stderr: nobody may read that. This is the path of situation()
// that looks at the process's own files.
func TestUsageErrorShownWithoutTerminal(t *testing.T) {
	desktoptest.Require(t, "zenity", "xdotool", "xwininfo")
	d := desktoptest.Xvfb(t)
	t.Setenv("DISPLAY", d.Name)
	t.Setenv("WAYLAND_DISPLAY", "")
	t.Setenv("XDG_SESSION_TYPE", "x11")
	t.Setenv("INVOCATION_ID", "")
	dir := t.TempDir()
	open := func(name string) *os.File {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, stderr := open("stdout"), open("stderr")
	codes := make(chan int, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		codes <- Main(t.Context(), []string{"run", "--ui", "text", "--no-such-flag", "--", "erp"}, stdin, stdout, stderr)
	}()
	box, err := d.WaitWindow(desktop.ErrorTitle, 15*time.Second, done)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-codes:
		t.Fatalf("Main returned %d while its failure was shown", code)
	default:
	}
	if err := d.Key(box, "Return"); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-codes:
		errOut, _ := os.ReadFile(stderr.Name())
		if code != ExitUsage || !strings.Contains(string(errOut), "unknown flag: --no-such-flag") {
			t.Errorf("exit %d, stderr %q; want %d and the flag named", code, errOut, ExitUsage)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Main did not return within 20 s of the dialog's closing")
	}
}
