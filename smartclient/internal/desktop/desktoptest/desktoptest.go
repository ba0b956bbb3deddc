// Package desktoptest is for tests only: a real X server (Xvfb) to show
// windows on, and the X tools that find them by title, press keys in them
// and take screenshots (xwininfo, xdotool, ImageMagick's import).
//
// A test that needs them and does not find them skips, naming the Debian
// packages, unless SMARTSYNC_GUI_TEST=1 says they must be there (as
// scripts/ci-windows does after installing them): then it fails.
package desktoptest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Must is the environment variable that makes a missing tool a failure.
const Must = "SMARTSYNC_GUI_TEST"

// packages names the Debian package of each tool.
var packages = map[string]string{
	"Xvfb": "xvfb", "xwininfo": "x11-utils", "xdotool": "xdotool", "import": "imagemagick",
	"zenity": "zenity", "wine64": "wine64",
}

// Require returns the path of each program, or ends the test: a skip, or a
// failure when SMARTSYNC_GUI_TEST=1.
func Require(t testing.TB, programs ...string) map[string]string {
	t.Helper()
	paths := map[string]string{}
	var missing []string
	for _, p := range programs {
		path, err := exec.LookPath(p)
		if err != nil && p == "wine64" {
			// Debian's wine64 package keeps it out of PATH.
			path, err = exec.LookPath("/usr/lib/wine/wine64")
		}
		if err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", p, packages[p]))
			continue
		}
		paths[p] = path
	}
	if len(missing) > 0 {
		msg := "not installed: " + strings.Join(missing, ", ")
		if os.Getenv(Must) == "1" {
			t.Fatalf("%s; %s=1 says this test must run", msg, Must)
		}
		t.Skip(msg)
	}
	return paths
}

// Display is an X server for one test.
type Display struct {
	t    testing.TB
	Name string // ":N"
}

// Xvfb starts an X server on a free display (Xvfb picks it: -displayfd),
// listening on no TCP port, and stops it when the test ends.
func Xvfb(t testing.TB) *Display {
	t.Helper()
	Require(t, "Xvfb", "xwininfo")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// -noreset: by default Xvfb resets when its last client leaves, and
	// a client connecting meanwhile (an xwininfo between two dialogs) is
	// refused with "unable to open display".
	cmd := exec.Command("Xvfb", "-displayfd", "3", "-nolisten", "tcp", "-noreset", "-screen", "0", "1024x768x24")
	cmd.ExtraFiles = []*os.File{w}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting Xvfb: %v", err)
	}
	w.Close()
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		// SIGTERM: Xvfb removes its socket and lock file, which a
		// killed one leaves to the next.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		got <- strings.TrimSpace(line)
	}()
	select {
	case n := <-got:
		if n == "" {
			t.Fatalf("Xvfb named no display: %s", stderr.String())
		}
		d := &Display{t: t, Name: ":" + n}
		// It answers before the test uses it: a client that cannot
		// connect says why, with Xvfb's own messages.
		deadline := time.Now().Add(20 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := d.run(ctx, "xwininfo", "-root")
			cancel()
			if err == nil {
				return d
			}
			if time.Now().After(deadline) {
				t.Fatalf("Xvfb on %s does not answer: %v\n%s", d.Name, err, stderr.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("Xvfb did not start in 20 s: %s", stderr.String())
	}
	return nil
}

// Env is environ with DISPLAY set to d.
func (d *Display) Env(environ []string) []string {
	out := make([]string, 0, len(environ)+1)
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "DISPLAY=") && !strings.HasPrefix(kv, "WAYLAND_DISPLAY=") {
			out = append(out, kv)
		}
	}
	return append(out, "DISPLAY="+d.Name)
}

// run runs an X tool on the display.
func (d *Display) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = d.Env(os.Environ())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Window is a top-level window found on a display.
type Window struct {
	ID, Title string
}

// windowLine is a line of xwininfo -tree: `0x200003 "Title": ("class" ...`.
var windowLine = regexp.MustCompile(`^\s*(0x[0-9a-f]+) "(.*)": \(`)

// Windows lists the named windows on the display that are mapped.
func (d *Display) Windows() ([]Window, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := d.run(ctx, "xwininfo", "-root", "-tree")
	if err != nil {
		return nil, err
	}
	var ws []Window
	for _, line := range strings.Split(out, "\n") {
		m := windowLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		info, err := d.run(ctx, "xwininfo", "-id", m[1])
		if err != nil || !strings.Contains(info, "Map State: IsViewable") {
			continue // gone since, or not shown
		}
		ws = append(ws, Window{ID: m[1], Title: m[2]})
	}
	return ws, nil
}

// WaitWindow waits until a window titled title is shown, or until the
// time is up or stop is closed (the program that would show it has
// ended: its output says why). It returns the window.
func (d *Display) WaitWindow(title string, within time.Duration, stop <-chan struct{}) (Window, error) {
	deadline := time.Now().Add(within)
	var last []Window
	for {
		ws, err := d.Windows()
		if err != nil {
			return Window{}, err
		}
		for _, w := range ws {
			if w.Title == title {
				return w, nil
			}
		}
		last = ws
		if time.Now().After(deadline) {
			return Window{}, fmt.Errorf("no window titled %q within %s; windows shown: %v", title, within, last)
		}
		select {
		case <-stop:
			return Window{}, fmt.Errorf("the program ended without a window titled %q; windows shown: %v", title, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// WaitGone waits until no window titled title is shown, or until the
// time is up.
func (d *Display) WaitGone(title string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		ws, err := d.Windows()
		if err != nil {
			return err
		}
		shown := false
		for _, w := range ws {
			shown = shown || w.Title == title
		}
		if !shown {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("a window titled %q is still shown after %s", title, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Key gives the window the keyboard focus and presses key in it (xdotool
// key names: Escape, Return, space).
func (d *Display) Key(w Window, key string) error {
	Require(d.t, "xdotool")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := d.run(ctx, "xdotool", "windowfocus", w.ID, "key", key)
	return err
}

// Screenshot writes a PNG of the window w to path, or of the whole screen
// when w is nil.
func (d *Display) Screenshot(path string, w *Window) error {
	Require(d.t, "import")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	which := "root"
	if w != nil {
		which = w.ID
	}
	_, err := d.run(ctx, "import", "-window", which, path)
	return err
}

// Wine runs Windows programs on a display, in the Wine prefix that
// scripts/ci-windows makes (WINEPREFIX: Go programs need its
// bcryptprimitives.dll to start under Wine 8).
type Wine struct {
	Path string   // wine64
	Env  []string // the environment of a program under it
}

// NewWine readies the prefix of $WINEPREFIX for windows on d, or skips the
// test when there is no prefix. It stops the prefix's wineserver, now and
// when the test ends: one left by the Wine tests has a desktop process
// that knows no display. It runs its programs after the Wine tests, never
// beside them.
func NewWine(t testing.TB, d *Display) *Wine {
	t.Helper()
	tools := Require(t, "wine64")
	prefix := os.Getenv("WINEPREFIX")
	if prefix == "" {
		// A skip even with SMARTSYNC_GUI_TEST=1, which is about the
		// tools: scripts/ci-windows, which runs these tests, always
		// gives them its prefix.
		t.Skip("no WINEPREFIX: run it through scripts/ci-windows, which makes a prefix Go programs start in")
	}
	env := append(d.Env(os.Environ()), "WINEPREFIX="+prefix, "WINEDEBUG=-all", "WINEDLLOVERRIDES=mscoree,mshtml=")
	w := &Wine{Path: tools["wine64"], Env: env}
	// Debian's Wine 8 does not find the fonts of its fonts-wine package
	// (in /usr/share/wine/fonts) by itself: without Marlett the title
	// bar's buttons are drawn as letters. The prefix's Fonts folder is
	// where it does look.
	for _, f := range []string{"marlett.ttf", "tahoma.ttf", "tahomabd.ttf"} {
		dst := filepath.Join(prefix, "drive_c", "windows", "Fonts", f)
		if b, err := os.ReadFile(filepath.Join("/usr/share/wine/fonts", f)); err == nil {
			if _, err := os.Stat(dst); err != nil {
				_ = os.WriteFile(dst, b, 0o644) // only the look depends on it
			}
		}
	}
	wineserver := filepath.Join(filepath.Dir(w.Path), "wineserver")
	stop := func() {
		for _, arg := range []string{"-k", "-w"} {
			cmd := exec.Command(wineserver, arg)
			cmd.Env = env
			_ = cmd.Run()
		}
	}
	stop()
	t.Cleanup(stop) // before the display goes (cleanups run last first)
	// Wine's own window frames, since Xvfb has no window manager to draw
	// them: the title bar shows in a screenshot.
	if out, err := w.Command(context.Background(), "reg", "add", `HKCU\Software\Wine\X11 Driver`, "/v", "Managed", "/d", "N", "/f").CombinedOutput(); err != nil {
		t.Fatalf("wine64 reg add: %v\n%s", err, out)
	}
	return w
}

// Command is a command under Wine: wine64 with args.
func (w *Wine) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, w.Path, args...)
	cmd.Env = w.Env
	return cmd
}

// BuildWindows builds the Go package pkg (a path or pattern go build takes,
// relative to the test's folder) for windows/amd64 into out, with the go
// command that runs the tests ($GO as the Makefile takes it, else go).
// test builds the package's test binary instead (go test -c).
func BuildWindows(t testing.TB, pkg, out string, test bool, flags ...string) {
	t.Helper()
	goCmd := os.Getenv("GO")
	if goCmd == "" {
		goCmd = "go"
	}
	args := []string{"build"}
	if test {
		args = []string{"test", "-c"}
	}
	args = append(append(args, flags...), "-o", out, pkg)
	cmd := exec.Command(goCmd, args...)
	cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s (GOOS=windows): %v\n%s", strings.Join(args, " "), err, b)
	}
}
