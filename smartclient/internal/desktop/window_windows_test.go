//go:build windows

package desktop

import (
	"os"
	"testing"
	"time"
)

// TestNativeCancel: the close box (WM_CLOSE) and the Cancel button
// (WM_COMMAND IDCANCEL, as its click and Escape send) call onCancel, once
// however often the user insists; the window then says so, and Close
// ends its thread. It needs an interactive desktop; under Wine without a
// display it skips if the window cannot be made.
func TestNativeCancel(t *testing.T) {
	if !Interactive() {
		t.Skip("no interactive window station (a service?)")
	}
	calls := make(chan struct{}, 10)
	w, err := OpenNative(func() { calls <- struct{}{} })
	if err != nil {
		if os.Getenv("SMARTSYNC_WINE") == "1" && os.Getenv("DISPLAY") == "" {
			t.Skipf("Wine without a display: %v", err)
		}
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
	time.Sleep(300 * time.Millisecond) // the other two, handled
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
