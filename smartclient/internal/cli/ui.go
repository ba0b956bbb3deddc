package cli

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/internal/cmdline"
	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/smartclient/internal/desktop"
)

// ui is how sync and run talk to the user while they work: the progress
// of the download, what is happening, the full update's question and the
// failure. The text UI is the terminal's (or a pipe's) as it has always
// been; the window UI shows a progress window (see package desktop) and
// writes everything the text UI writes as well, so that a log of a sync
// started from a shortcut reads the same. Both go through the same calls,
// made at the same places of the sync command.
type ui interface {
	smartclient.Progress
	// Status says what is happening ("Checking for updates on …"). The
	// text UI says nothing: the terminal's output is as it was.
	Status(text string)
	// CanAsk says whether Ask reaches someone.
	CanAsk() bool
	// Ask asks a yes/no question ("… Update now? [Y/n]").
	Ask(question string) (bool, error)
	// Failed tells the user why the command failed, where this UI shows
	// things. The text UI has nothing to add: say and the usage error
	// have written it on stderr.
	Failed(message string)
	// Close closes the window, if any. It may be called more than once.
	Close()
}

// The values of --ui.
const (
	uiAuto   = "auto"
	uiWindow = "window"
	uiText   = "text"
)

// uiKind is what chooseUI picks.
type uiKind int

const (
	kindText   uiKind = iota // the terminal's progress and prompt
	kindNative               // a Win32 progress window
	kindZenity               // zenity's progress window
)

func (k uiKind) String() string {
	return [...]string{"text", "native window", "zenity"}[k]
}

// situation is what the choice of a UI depends on.
type situation struct {
	goos string
	// terminal: the command's input or output is a terminal, or its
	// output is a writer of the caller's rather than a file of the
	// process (Main called by a program, as the tests do).
	terminal bool
	// console: on Windows, this is the console build, smartclient.exe,
	// not smartclientw.exe, the windowsgui one (told by its PE header,
	// not by whether it has a console: see desktop.ConsoleBuild).
	console bool
	// desktop: the process can show windows to a user: on Windows an
	// interactive window station, elsewhere a DISPLAY or WAYLAND_DISPLAY
	// that answers.
	desktop bool
	// job: elsewhere than on Windows, the process looks started by a
	// scheduler rather than from a desktop session: by systemd (a timer's
	// service: INVOCATION_ID), or without the session's XDG_SESSION_TYPE
	// and XDG_CURRENT_DESKTOP (cron). A display it may have is one nobody
	// may be watching: auto does not open a window there.
	job bool
	// zenity is zenity's path, "" when it is not on PATH.
	zenity string
}

// chooseUI picks the UI for --ui mode: text asks for the terminal's;
// window for a window, an error where there is none; auto for a window
// only where nobody reads a terminal and a desktop is there to show it on:
// on Windows the windowsgui build (no console) in a user's session, on
// Linux and the BSDs a desktop session with zenity installed. macOS has no
// window yet.
func chooseUI(mode string, s situation) (uiKind, error) {
	switch mode {
	case uiText:
		return kindText, nil
	case uiAuto:
		if s.terminal || !s.desktop || s.job {
			return kindText, nil
		}
		switch {
		case s.goos == "windows" && !s.console:
			return kindNative, nil
		case s.goos != "windows" && s.goos != "darwin" && s.zenity != "":
			return kindZenity, nil
		}
		return kindText, nil
	case uiWindow:
		switch {
		case s.goos == "windows":
			return kindNative, nil
		case s.goos == "darwin":
			return kindText, usagef("--ui window: there is no progress window on macOS yet; use --ui text or auto")
		case s.zenity == "":
			return kindText, usagef("--ui window: zenity is not installed (it draws the window here); install it, or use --ui text")
		case !s.desktop:
			return kindText, usagef("--ui window: no desktop to show it on (neither DISPLAY nor WAYLAND_DISPLAY names a display that answers)")
		}
		return kindZenity, nil
	}
	return kindText, usagef("--ui %q: must be auto, window or text", mode)
}

// situation looks at the process: its standard streams, console, desktop
// and PATH.
func (e *env) situation() situation {
	_, file := e.stdout.(*os.File)
	s := situation{
		goos:     runtime.GOOS,
		terminal: !file || isTerminal(e.stdin) || isTerminal(e.stdout) || isTerminal(e.stderr),
		console:  desktop.ConsoleBuild(),
		desktop:  desktop.Interactive(),
	}
	if s.goos != "windows" {
		s.zenity, _ = exec.LookPath("zenity")
		s.job = os.Getenv("INVOCATION_ID") != "" ||
			(os.Getenv("XDG_SESSION_TYPE") == "" && os.Getenv("XDG_CURRENT_DESKTOP") == "")
	}
	return s
}

// openUI opens the UI --ui asks for; cancel is what the window's Cancel
// does. A window that auto chose but that does not open leaves the text
// UI, with a warning; one that --ui window asked for is an error.
func (e *env) openUI(mode string, cancel func()) (ui, error) {
	text := &textUI{Progress: newProgress(e.stdout), stdin: e.stdin, stdout: e.stdout}
	s := e.situation()
	mode = strings.ToLower(mode)
	kind, err := chooseUI(mode, s)
	if err != nil || kind == kindText {
		return text, err
	}
	var win desktop.Window
	if kind == kindNative {
		win, err = desktop.OpenNative(cancel)
	} else {
		win, err = desktop.OpenZenity(s.zenity, cancel)
	}
	if err != nil {
		if mode == uiWindow {
			return nil, cmdline.UsageError{Err: fmt.Errorf("--ui window: %w", err)}
		}
		fmt.Fprintf(e.stderr, "smartclient: no progress window (%v); going on without\n", err)
		return text, nil
	}
	return &windowUI{text: text, win: win, stderr: e.stderr}, nil
}

// textUI is the terminal's UI: the progress lines of textProgress, and the
// question asked on the terminal when there is one.
type textUI struct {
	smartclient.Progress
	stdin  io.Reader
	stdout io.Writer
}

func (*textUI) Status(string)  {}
func (u *textUI) CanAsk() bool { return isTerminal(u.stdin) }
func (u *textUI) Ask(q string) (bool, error) {
	return askYesNo(u.stdin, u.stdout, q)
}
func (*textUI) Failed(string) {}
func (*textUI) Close()        {}

// windowUI shows the sync in a window, and writes what the text UI writes.
type windowUI struct {
	text   *textUI
	win    desktop.Window
	stderr io.Writer // where a window that failed is told of

	mu               sync.Mutex
	status           string
	files, doneFiles int
	bytes, doneBytes int64
	start            time.Time
	closeOnce        sync.Once
}

func (u *windowUI) Start(files int, bytes int64) {
	u.text.Start(files, bytes)
	if files == 0 {
		return
	}
	u.mu.Lock()
	u.files, u.bytes, u.start = files, bytes, time.Now()
	u.status = fmt.Sprintf("Downloading the update: %s (%s)", plural(files, "file"), smartclient.HumanBytes(bytes))
	u.mu.Unlock()
	u.show()
}

func (u *windowUI) Add(n int64) {
	u.text.Add(n)
	u.mu.Lock()
	u.doneBytes += n
	u.mu.Unlock()
	u.show()
}

func (u *windowUI) FileDone() {
	u.text.FileDone()
	u.mu.Lock()
	u.doneFiles++
	u.mu.Unlock()
	u.show()
}

func (u *windowUI) Finish() {
	u.text.Finish()
	u.mu.Lock()
	if u.files > 0 {
		u.status = "Installing the update"
	}
	u.mu.Unlock()
	u.show()
}

func (u *windowUI) Status(text string) {
	u.text.Status(text)
	u.mu.Lock()
	u.status = text
	u.mu.Unlock()
	u.show()
}

// show hands the window the state: the status, and once the download has
// started, files, bytes, rate and time left.
func (u *windowUI) show() {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := desktop.State{Text: u.status}
	if u.files > 0 {
		s.Percent = 100
		if u.bytes > 0 {
			s.Percent = int(min(u.doneBytes, u.bytes) * 100 / u.bytes)
		}
		hb := smartclient.HumanBytes
		s.Detail = fmt.Sprintf("%d of %d files, %s of %s", min(u.doneFiles, u.files), u.files, hb(min(u.doneBytes, u.bytes)), hb(u.bytes))
		if secs := time.Since(u.start).Seconds(); secs >= 1 && u.doneBytes > 0 && u.doneBytes < u.bytes {
			rate := float64(u.doneBytes) / secs
			left := time.Duration(float64(u.bytes-u.doneBytes) / rate * float64(time.Second)).Round(time.Second)
			s.Detail += fmt.Sprintf(", %s/s, %s left", hb(int64(rate)), left)
		}
	}
	u.win.Show(s)
}

func (u *windowUI) CanAsk() bool { return true }

// Ask asks in a dialog, with Yes and No buttons rather than "[Y/n]"; on
// the terminal if the dialog cannot be shown and there is one.
func (u *windowUI) Ask(q string) (bool, error) {
	ok, err := u.win.Ask(strings.TrimSuffix(q, " [Y/n]"))
	if err != nil && u.text.CanAsk() {
		fmt.Fprintf(u.stderr, "smartclient: %v; asking here\n", err)
		return u.text.Ask(q)
	}
	return ok, err
}

// Failed shows the failure in a dialog; it names no package (the usage
// error's "smartclient: " is for a terminal).
func (u *windowUI) Failed(message string) {
	_ = u.win.Error(strings.TrimPrefix(message, "smartclient: "))
}

// Close closes the window; a window that could not be shown (zenity
// could not open its display) is said on stderr, once.
func (u *windowUI) Close() {
	u.closeOnce.Do(func() {
		if err := u.win.Close(); err != nil {
			fmt.Fprintf(u.stderr, "smartclient: no progress window (%v); went on without\n", err)
		}
	})
}

// statusWriter makes each line written to it the UI's status: the
// library's messages for the user (the server is busy, trying again).
type statusWriter struct{ u ui }

func (w statusWriter) Write(p []byte) (int, error) {
	lines := strings.Split(strings.TrimSpace(string(p)), "\n")
	if last := strings.TrimSpace(lines[len(lines)-1]); last != "" {
		w.u.Status(last)
	}
	return len(p), nil
}
