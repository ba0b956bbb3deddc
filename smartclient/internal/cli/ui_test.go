package cli

import (
	"runtime"
	"strings"
	"testing"
)

// TestChooseUI: a window only where nobody reads a terminal and a desktop
// is there, of the kind the system has; --ui text and window decide, and
// window where there is none is a usage error.
func TestChooseUI(t *testing.T) {
	const z = "/usr/bin/zenity"
	desktopWin := situation{goos: "windows", desktop: true}
	for _, tc := range []struct {
		name    string
		mode    string
		s       situation
		want    uiKind
		wantErr string
	}{
		{"windowsgui build from a shortcut", uiAuto, desktopWin, kindNative, ""},
		{"console build from a shortcut: its console is the terminal", uiAuto, situation{goos: "windows", desktop: true, console: true}, kindText, ""},
		{"windowsgui build with a terminal", uiAuto, situation{goos: "windows", desktop: true, terminal: true}, kindText, ""},
		{"windows service: no interactive desktop", uiAuto, situation{goos: "windows"}, kindText, ""},
		{"linux desktop launcher with zenity", uiAuto, situation{goos: "linux", desktop: true, zenity: z}, kindZenity, ""},
		{"linux desktop launcher without zenity", uiAuto, situation{goos: "linux", desktop: true}, kindText, ""},
		{"linux terminal in a desktop", uiAuto, situation{goos: "linux", desktop: true, terminal: true, zenity: z}, kindText, ""},
		{"linux cron: no display", uiAuto, situation{goos: "linux", zenity: z}, kindText, ""},
		{"linux cron or systemd timer with a display", uiAuto, situation{goos: "linux", desktop: true, job: true, zenity: z}, kindText, ""},
		{"window asked for by a job", uiWindow, situation{goos: "linux", desktop: true, job: true, zenity: z}, kindZenity, ""},
		{"freebsd desktop with zenity", uiAuto, situation{goos: "freebsd", desktop: true, zenity: z}, kindZenity, ""},
		{"macOS has no window yet", uiAuto, situation{goos: "darwin", desktop: true, zenity: z}, kindText, ""},
		{"text on a desktop", uiText, desktopWin, kindText, ""},
		{"window on a terminal", uiWindow, situation{goos: "windows", terminal: true, console: true}, kindNative, ""},
		{"window with zenity", uiWindow, situation{goos: "linux", terminal: true, desktop: true, zenity: z}, kindZenity, ""},
		{"window without zenity", uiWindow, situation{goos: "linux", desktop: true}, kindText, "zenity is not installed"},
		{"window without a display", uiWindow, situation{goos: "linux", zenity: z}, kindText, "neither DISPLAY nor WAYLAND_DISPLAY names a display that answers"},
		{"window on macOS", uiWindow, situation{goos: "darwin", desktop: true}, kindText, "no progress window on macOS"},
		{"unknown mode", "gui", desktopWin, kindText, `--ui "gui": must be auto, window or text`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := chooseUI(tc.mode, tc.s)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("chooseUI(%q, %+v): %v", tc.mode, tc.s, err)
			case tc.wantErr != "" && (err == nil || !contains(err.Error(), tc.wantErr)):
				t.Fatalf("chooseUI(%q, %+v): error %v, want one with %q", tc.mode, tc.s, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("chooseUI(%q, %+v) = %v, want %v", tc.mode, tc.s, got, tc.want)
			}
		})
	}
}

// TestTextUIWithoutATerminal: the command's own writers (as here) keep
// the text UI whatever the desktop, and a bad --ui is a usage error that
// changes nothing.
func TestTextUIWithoutATerminal(t *testing.T) {
	t.Setenv("DISPLAY", ":99")
	e := &env{ctx: t.Context(), stdin: nilReader{}, stdout: &discard{}, stderr: &discard{}}
	u, err := e.openUI(uiAuto, func() {})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := u.(*textUI); !ok {
		t.Errorf("auto with the caller's writers: %T, want the text UI", u)
	}
	dir := t.TempDir()
	code, _, errOut := runMain(t, "sync", "--dir", dir, "--server", "127.0.0.1:1", "--ui", "gui")
	if code != ExitUsage || !contains(errOut, `--ui "gui"`) {
		t.Errorf("--ui gui: exit %d, %q; want %d and the flag named", code, errOut, ExitUsage)
	}
	// WINDOW is window: where there is no desktop to show it on (no
	// server at :987 here), an error, not a quiet text UI. (On Windows
	// it would open a window.)
	if runtime.GOOS == "windows" {
		return
	}
	t.Setenv("DISPLAY", ":987")
	t.Setenv("WAYLAND_DISPLAY", "")
	code, _, errOut = runMain(t, "sync", "--dir", dir, "--server", "127.0.0.1:1", "--ui", "WINDOW")
	if code != ExitUsage || !contains(errOut, "--ui window") {
		t.Errorf("--ui WINDOW without a desktop: exit %d, %q; want %d and why", code, errOut, ExitUsage)
	}
}

type nilReader struct{}

func (nilReader) Read([]byte) (int, error) { return 0, nil }

type discard struct{}

func (*discard) Write(p []byte) (int, error) { return len(p), nil }

func contains(s, sub string) bool { return strings.Contains(s, sub) }
