//go:build linux

package desktop_test

import (
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/desktop"
	"github.com/erpupdate/smartsync/smartclient/internal/desktop/desktoptest"
)

// TestZenity drives the real zenity on a real X server (Xvfb): the
// progress window comes up with its title, Escape in it is the user's
// Cancel, and the question and the failure are dialogs the keyboard
// answers.
func TestZenity(t *testing.T) {
	paths := desktoptest.Require(t, "zenity", "xdotool", "xwininfo")
	d := desktoptest.Xvfb(t)
	t.Setenv("DISPLAY", d.Name)
	t.Setenv("WAYLAND_DISPLAY", "")

	t.Run("closed at once shows nothing", func(t *testing.T) {
		w, err := desktop.OpenZenity(paths["zenity"], func() { t.Error("cancelled without a Cancel") })
		if err != nil {
			t.Fatal(err)
		}
		w.Show(desktop.State{Text: "Checking for updates"})
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(600 * time.Millisecond) // past showAfter
		if ws, err := d.Windows(); err != nil || len(ws) != 0 {
			t.Errorf("windows after an early Close: %v, %v; want none", ws, err)
		}
	})

	t.Run("Escape cancels", func(t *testing.T) {
		cancelled := make(chan struct{})
		w, err := desktop.OpenZenity(paths["zenity"], func() { close(cancelled) })
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		w.Show(desktop.State{Text: "Downloading the update: 3 files (8.0 MiB)", Detail: "1 of 3 files, 2.0 MiB of 8.0 MiB", Percent: 25})
		win, err := d.WaitWindow(desktop.Title, 15*time.Second, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Key(win, "Escape"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-cancelled:
		case <-time.After(10 * time.Second):
			t.Fatal("Escape in the progress window did not cancel within 10 s")
		}
		if err := w.Close(); err != nil {
			t.Errorf("Close after Cancel: %v", err)
		}
	})

	t.Run("Close takes an open question away", func(t *testing.T) {
		w, err := desktop.OpenZenity(paths["zenity"], nil)
		if err != nil {
			t.Fatal(err)
		}
		answered := make(chan bool, 1)
		go func() {
			ok, _ := w.Ask("SmartClient and AppServer builds are incompatible. Update now?")
			answered <- ok
		}()
		if _, err := d.WaitWindow(desktop.QuestionTitle, 15*time.Second, nil); err != nil {
			t.Fatal(err)
		}
		// The sync was interrupted while it asked.
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case ok := <-answered:
			if ok {
				t.Error("a question closed unanswered said yes")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Ask did not return within 10 s of Close")
		}
		if ws, err := d.Windows(); err != nil || len(ws) != 0 {
			t.Errorf("windows after Close: %v, %v; want none", ws, err)
		}
	})

	t.Run("question and failure", func(t *testing.T) {
		w, err := desktop.OpenZenity(paths["zenity"], nil)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		for _, tc := range []struct {
			key  string
			want bool
		}{{"Return", true}, {"Escape", false}} {
			type reply struct {
				ok  bool
				err error
			}
			answer := make(chan reply, 1)
			go func() {
				ok, err := w.Ask("No build installed yet. Install build 7.00.240501A now?")
				answer <- reply{ok, err}
			}()
			// A failure takes the question away and waits for Ask
			// before it ends the test: no t call from the goroutine
			// after the test is over.
			fatal := func(err error) {
				w.Close()
				<-answer
				t.Fatal(err)
			}
			win, err := d.WaitWindow(desktop.QuestionTitle, 15*time.Second, nil)
			if err != nil {
				fatal(err)
			}
			if err := d.Key(win, tc.key); err != nil {
				fatal(err)
			}
			if got := <-answer; got.err != nil || got.ok != tc.want {
				t.Errorf("%s in the question: %v, %v; want %v", tc.key, got.ok, got.err, tc.want)
			}
			// The next WaitWindow must not find this one, closing.
			if err := d.WaitGone(desktop.QuestionTitle, 15*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		shown := make(chan error, 1)
		go func() {
			shown <- w.Error("Could not update automatically: <the reason> & more. Please contact your system administrator.")
		}()
		win, err := d.WaitWindow(desktop.ErrorTitle, 15*time.Second, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Key(win, "Return"); err != nil {
			t.Fatal(err)
		}
		if err := <-shown; err != nil {
			t.Errorf("Error: %v", err)
		}
	})
}
