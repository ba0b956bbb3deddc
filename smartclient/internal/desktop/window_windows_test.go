//go:build windows

package desktop

import (
	"os"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/testtree"
)

// needDesktop skips a test that makes a window where none can be made:
// without an interactive window station (a service), and under Wine
// without a display, where the mere attempt starts Wine's desktop process,
// which inherits the test's output and keeps go test waiting for it ("Test
// I/O incomplete"). TestNativeUnderWine runs these tests under Wine on
// Xvfb.
func needDesktop(t *testing.T) {
	t.Helper()
	if testtree.UnderWine() && os.Getenv("DISPLAY") == "" {
		t.Skip("Wine without a display: making a window would start Wine's desktop process; TestNativeUnderWine runs this on Xvfb")
	}
	if !Interactive() {
		t.Skip("no interactive window station (a service?)")
	}
}

// TestNativeCancel: the close box (WM_CLOSE) and the Cancel button
// (WM_COMMAND IDCANCEL, as its click and Escape send) call onCancel, once
// however often the user insists; the window then says so, and Close
// ends its thread.
func TestNativeCancel(t *testing.T) {
	needDesktop(t)
	calls := make(chan struct{}, 10)
	w, err := OpenNative(func() { calls <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	n := w.(*native)
	w.Show(State{Text: "Downloading the update: 3 files (8.0 MiB)", Detail: "1 of 3 files", Percent: 25})
	for _, m := range []struct {
		msg    uint32
		wParam uintptr
	}{{wmClose, 0}, {wmCommand, idCancel}, {wmClose, 0}} {
		if r, _, err := procPostMessageW.Call(uintptr(n.hwnd), uintptr(m.msg), m.wParam, 0); r == 0 {
			t.Fatalf("PostMessage: %v", err)
		}
	}
	select {
	case <-calls:
	case <-time.After(10 * time.Second):
		t.Fatal("the close box did not cancel within 10 s")
	}
	// Posted messages are handled in order: once a call posted after
	// them has run, the other two have been handled.
	if err := n.call(func() {}); err != nil {
		t.Fatal(err)
	}
	// onCancel runs in a goroutine of its own; a second one would have
	// been started by now.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && len(calls) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	if len(calls) != 0 {
		t.Errorf("onCancel called %d more times; want once", len(calls))
	}
	n.mu.Lock()
	cancelled := n.cancelled
	n.mu.Unlock()
	if !cancelled {
		t.Error("the window does not know it was cancelled")
	}
	done := make(chan struct{})
	go func() { w.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10 s")
	}
	select {
	case <-n.done:
	default:
		t.Error("the window's thread still runs after Close")
	}
	if _, err := w.Ask("still there?"); err != ErrClosed {
		t.Errorf("Ask after Close: %v, want ErrClosed", err)
	}
}

// TestNativeAskTimeout: a question nobody answers is a No once
// askTimeout has passed.
func TestNativeAskTimeout(t *testing.T) {
	needDesktop(t)
	old := askTimeout
	askTimeout = 2 * time.Second
	defer func() { askTimeout = old }()
	w, err := OpenNative(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	type answer struct {
		ok  bool
		err error
	}
	got := make(chan answer, 1)
	asked := time.Now()
	go func() {
		ok, err := w.Ask("Update now?")
		got <- answer{ok, err}
	}()
	select {
	case a := <-got:
		if a.ok || a.err != nil {
			t.Errorf("an unanswered question: %v, %v; want No", a.ok, a.err)
		}
		if took := time.Since(asked); took < askTimeout {
			t.Errorf("answered after %s, before the timeout of %s", took, askTimeout)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("an unanswered question still waits after 60 s")
	}
}

// TestConsoleBuild: the test program is linked as a console program:
// ConsoleBuild says so whether or not it has a console (under Wine it
// may have none).
func TestConsoleBuild(t *testing.T) {
	if got := subsystem(); got != 3 { // IMAGE_SUBSYSTEM_WINDOWS_CUI
		t.Errorf("subsystem of the test program: %d, want 3 (console)", got)
	}
	if !ConsoleBuild() {
		t.Error("ConsoleBuild() = false for a console program")
	}
}

// TestNativeClosedAtOnce: a window closed before showAfter (a check that
// finds the install up to date) is never shown. That is asserted only
// when Close did come before showAfter, which a loaded machine may not
// guarantee.
func TestNativeClosedAtOnce(t *testing.T) {
	needDesktop(t)
	opened := time.Now()
	w, err := OpenNative(nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Show(State{Text: "Checking for updates"})
	early := time.Since(opened) < showAfter
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !early {
		t.Skipf("Close came %s after the window was opened, past showAfter (%s)", time.Since(opened), showAfter)
	}
	if n := w.(*native); n.shown {
		t.Error("a window closed before showAfter was shown")
	}
}
