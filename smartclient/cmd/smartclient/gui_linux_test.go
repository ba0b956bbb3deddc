//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver"
	"github.com/erpupdate/smartsync/internal/testtree"
	"github.com/erpupdate/smartsync/smartclient/internal/desktop"
	"github.com/erpupdate/smartsync/smartclient/internal/desktop/desktoptest"
)

// TestWindowsProgressWindow is the Windows progress window as a user of a
// desktop shortcut meets it, under Wine on Xvfb: smartclientw.exe (the
// windowsgui build) syncs from a real appserver through a link throttled
// to 1 MiB/s, asks its first-install question in a Yes/No box, shows the
// download in its window (screenshot to $SMARTSYNC_GUI_SCREENSHOT, or
// into the test's folder), and its Cancel leaves the install as it was
// with exit 130; a sync left to its end closes its window and installs,
// and the next, up to date, shows none; a sync that cannot reach its
// server shows the failure in a message box and exits 1 once it is
// closed.
//
// It needs the Wine prefix scripts/ci-windows makes (WINEPREFIX, with its
// bcryptprimitives.dll), which runs it after the Wine tests with
// SMARTSYNC_GUI_TEST=1; elsewhere it skips without one.
func TestWindowsProgressWindow(t *testing.T) {
	desktoptest.Require(t, "wine64", "Xvfb", "xwininfo", "xdotool", "import")
	started := time.Now()
	d := desktoptest.Xvfb(t)
	wine := desktoptest.NewWine(t, d)
	exe := filepath.Join(t.TempDir(), "smartclientw.exe")
	desktoptest.BuildWindows(t, ".", exe, false, "-ldflags=-H=windowsgui")
	t.Logf("built smartclientw.exe at %s", time.Since(started).Round(100*time.Millisecond))

	srv := startServer(t)
	slow := throttle(t, srv, 1<<20)
	// 24 s for the release: the Cancel comes long before its end,
	// however slow the machine.
	slower := throttle(t, srv, 256<<10)

	t.Run("progress, question and Cancel", func(t *testing.T) {
		dir := t.TempDir()
		p := startClient(t, wine, exe, "sync", "--allow-unsigned", "--dir", winPath(dir), "--server", slower)
		q, err := d.WaitWindow(desktop.QuestionTitle, 30*time.Second, p.done)
		if err != nil {
			t.Fatalf("%v\n%s", err, p.output())
		}
		if err := d.Key(q, "Return"); err != nil { // Yes, the default button
			t.Fatal(err)
		}
		win, err := d.WaitWindow(desktop.Title, 15*time.Second, p.done)
		if err != nil {
			t.Fatalf("%v\n%s", err, p.output())
		}
		// Some of the download, for the screenshot: the log's first
		// progress line comes 2 s into it.
		if err := p.waitOutput("progress: ", 60*time.Second); err != nil {
			t.Fatal(err)
		}
		shot := os.Getenv("SMARTSYNC_GUI_SCREENSHOT")
		if shot == "" {
			shot = filepath.Join(t.TempDir(), "windows-progress.png")
		}
		if err := d.Screenshot(shot, &win); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(shot); err != nil || fi.Size() < 1000 {
			t.Fatalf("screenshot %s: %v, %v", shot, fi, err)
		}
		t.Logf("screenshot of %q in %s", win.Title, shot)
		if err := d.Key(win, "Escape"); err != nil { // Cancel
			t.Fatal(err)
		}
		code := p.wait(t, 20*time.Second)
		if code != 130 {
			t.Errorf("after Cancel: exit %d, want 130\n%s", code, p.output())
		}
		if !strings.Contains(p.output(), "Interrupted; the installation was left as it was.") {
			t.Errorf("after Cancel the log does not say so:\n%s", p.output())
		}
		if !strings.Contains(p.output(), "Downloading 2 files") {
			t.Errorf("the download had not started when Cancel was pressed:\n%s", p.output())
		}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if e.Name() != ".smartclient" {
				t.Errorf("a cancelled sync left %s in the install folder", e.Name())
			}
		}
	})

	t.Run("to the end, then up to date without a window", func(t *testing.T) {
		dir := t.TempDir()
		p := startClient(t, wine, exe, "sync", "--yes", "--allow-unsigned", "--dir", winPath(dir), "--server", slow)
		if _, err := d.WaitWindow(desktop.Title, 15*time.Second, p.done); err != nil {
			t.Fatalf("%v\n%s", err, p.output())
		}
		if code := p.wait(t, 30*time.Second); code != 0 {
			t.Fatalf("exit %d, want 0\n%s", code, p.output())
		}
		if fi, err := os.Stat(filepath.Join(dir, "bin", "erp.dll")); err != nil || fi.Size() != 6<<20 {
			t.Errorf("bin/erp.dll after the sync: %v, %v", fi, err)
		}
		if ws, err := d.Windows(); err != nil || len(ws) != 0 {
			t.Errorf("windows left after the sync ended: %v, %v", ws, err)
		}
		// Up to date. (That a check ending before showAfter shows no
		// window is TestNativeClosedAtOnce's: here, Wine's start-up
		// makes the time it takes unknown.)
		p = startClient(t, wine, exe, "sync", "--allow-unsigned", "--dir", winPath(dir), "--server", srv)
		if code := p.wait(t, 60*time.Second); code != 0 || !strings.Contains(p.output(), "Up to date") {
			t.Errorf("exit %d, want 0 and up to date\n%s", code, p.output())
		}
		if ws, err := d.Windows(); err != nil || len(ws) != 0 {
			t.Errorf("windows left after the check ended: %v, %v", ws, err)
		}
	})

	t.Run("failure message box", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := ln.Addr().String()
		ln.Close() // nobody listens there now
		// --connect-retry off: the failure at once, not after two
		// minutes of "retrying in N s" (TestCLIConnectRetry's).
		p := startClient(t, wine, exe, "sync", "--allow-unsigned", "--connect-retry", "off", "--dir", winPath(t.TempDir()), "--server", closed)
		box, err := d.WaitWindow(desktop.ErrorTitle, 30*time.Second, p.done)
		if err != nil {
			t.Fatalf("%v\n%s", err, p.output())
		}
		if err := d.Key(box, "Return"); err != nil { // OK
			t.Fatal(err)
		}
		if code := p.wait(t, 20*time.Second); code != 1 {
			t.Errorf("exit %d (%v), want 1\n%s", code, p.err, p.output())
		}
		if !strings.Contains(p.output(), "Could not update automatically") {
			t.Errorf("the log lacks the failure:\n%s", p.output())
		}
	})
	t.Run("run: the program starts after a failure, and a failure to start it is shown", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := ln.Addr().String()
		ln.Close() // nobody listens there now
		dir := t.TempDir()
		p := startClient(t, wine, exe, "run", "--allow-unsigned", "--connect-retry", "off", "--dir", winPath(dir), "--server", closed,
			"--", `C:\windows\system32\cmd.exe`, "/c", "exit 7")
		box, err := d.WaitWindow(desktop.ErrorTitle, 30*time.Second, p.done)
		if err != nil {
			t.Fatalf("%v\n%s", err, p.output())
		}
		if err := d.Key(box, "Return"); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t, 30*time.Second); code != 7 {
			t.Errorf("exit %d, want the program's 7\n%s", code, p.output())
		}
		// A program that is not there: after the sync's failure, the
		// program's, in a box of its own (stderr goes nowhere).
		p = startClient(t, wine, exe, "run", "--allow-unsigned", "--connect-retry", "off", "--dir", winPath(dir), "--server", closed, "--", "no-such-program.exe")
		box, err = d.WaitWindow(desktop.ErrorTitle, 30*time.Second, p.done)
		if err != nil {
			t.Fatalf("%v\n%s", err, p.output())
		}
		if err := d.Key(box, "Return"); err != nil {
			t.Fatal(err)
		}
		if err := p.waitOutput("smartclient: starting", 30*time.Second); err != nil {
			t.Fatal(err)
		}
		box, err = d.WaitWindow(desktop.ErrorTitle, 30*time.Second, p.done)
		if err != nil {
			t.Fatalf("the failure to start the program was not shown: %v\n%s", err, p.output())
		}
		if err := d.Key(box, "Return"); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t, 30*time.Second); code == 0 {
			t.Errorf("exit 0 for a program that could not start\n%s", p.output())
		}
	})

	t.Run("a usage error is shown", func(t *testing.T) {
		p := startClient(t, wine, exe, "sync", "--no-such-flag")
		box, err := d.WaitWindow(desktop.ErrorTitle, 30*time.Second, p.done)
		if err != nil {
			t.Fatalf("%v\n%s", err, p.output())
		}
		if err := d.Key(box, "Return"); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t, 30*time.Second); code != 2 || !strings.Contains(p.output(), "unknown flag: --no-such-flag") {
			t.Errorf("exit %d, want 2 and the flag named\n%s", code, p.output())
		}
	})
	t.Logf("whole test: %s", time.Since(started).Round(100*time.Millisecond))
}

// winPath is a Linux path as the Windows program sees it: Wine maps / to
// Z:.
func winPath(p string) string {
	return `Z:` + strings.ReplaceAll(p, "/", `\`)
}

// client is a smartclientw.exe running under Wine.
type client struct {
	cmd  *exec.Cmd
	out  *testtree.Buffer
	done chan struct{}
	err  error
}

func startClient(t *testing.T, wine *desktoptest.Wine, exe string, args ...string) *client {
	t.Helper()
	c := &client{out: &testtree.Buffer{}, done: make(chan struct{})}
	c.cmd = wine.Command(context.Background(), append([]string{exe}, args...)...)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.done
	})
	return c
}

// wait waits for the client to end and returns its exit code.
func (c *client) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(within):
		t.Fatalf("smartclientw.exe did not end within %s\n%s", within, c.output())
	}
	var ee *exec.ExitError
	switch {
	case c.err == nil:
		return 0
	case errors.As(c.err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("smartclientw.exe: %v", c.err)
	return -1
}

func (c *client) output() string { return c.out.String() }

// waitOutput waits until the client's output holds s.
func (c *client) waitOutput(s string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for !strings.Contains(c.output(), s) {
		if time.Now().After(deadline) {
			return fmt.Errorf("no %q in smartclientw.exe's output within %s\n%s", s, within, c.output())
		}
		select {
		case <-c.done:
			if !strings.Contains(c.output(), s) {
				return fmt.Errorf("smartclientw.exe ended without %q in its output\n%s", s, c.output())
			}
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// startServer starts a real appserver on 127.0.0.1:0 whose Windows update
// folder holds a release of 6 MiB that does not compress: six seconds at
// 1 MiB/s.
func startServer(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	upd := filepath.Join(base, "upd_windows")
	if err := os.MkdirAll(filepath.Join(upd, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 6<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{"bin/erp.dll": big, "erp.exe": []byte("the ERP client\r\n")} {
		if err := os.WriteFile(filepath.Join(upd, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ini := filepath.Join(base, "AppServer.ini")
	conf := fmt.Sprintf("[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nPathWindows=%s\nBuild=7.00.240501A\nMinClientBuild=7.00.231101A\n", upd)
	if err := os.WriteFile(ini, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := appserver.LoadConfig(ini)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := appserver.New(ctx, slog.New(slog.DiscardHandler), cfg, filepath.Join(base, "state"))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
		srv.Close()
	})
	return ln.Addr().String()
}

// throttle is a TCP proxy to addr that passes what the server sends at
// rate bytes a second, and what the client sends as it comes.
func throttle(t *testing.T, addr string, rate int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			go func() {
				_, _ = io.Copy(s, c)
				s.Close()
			}()
			go func() {
				defer c.Close()
				const piece = 16 << 10
				buf := make([]byte, piece)
				for {
					n, err := s.Read(buf)
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
						time.Sleep(time.Duration(n) * time.Second / time.Duration(rate))
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}
