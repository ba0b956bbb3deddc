package desktop

import (
	"errors"
	"fmt"
	"time"
)

// State is what a progress window shows.
type State struct {
	// Text says what is happening: "Checking for updates on …",
	// "Downloading 3 files (4.0 MiB)", "Installing the update".
	Text string
	// Detail counts files and bytes, the rate and the time left.
	Detail string
	// Percent fills the bar, 0 to 100; the bar stays empty while it is
	// not known (connecting, checking).
	Percent int
}

// Window is a progress window on the desktop. Its methods are safe for
// concurrent use; Show is cheap (it stores the state, which the window
// draws a few times a second), so it may be called at every block received.
type Window interface {
	// Show sets what the window shows. After the user's Cancel the window
	// says CancellingText instead of the State's Text.
	Show(State)
	// Ask asks a yes/no question in a dialog and returns the answer.
	Ask(question string) (bool, error)
	// Error shows a failure in a dialog and returns when the user has
	// closed it.
	Error(message string) error
	// Close closes the window and waits until it is gone. It may be
	// called more than once.
	Close() error
}

// Titles of the windows, as the user (and the tests) see them.
const (
	Title         = "SmartClient update"
	QuestionTitle = "Update SmartClient?"
	ErrorTitle    = "SmartClient update failed"
)

// CancellingText is what the progress window says between the user's
// Cancel and its closing.
const CancellingText = "Cancelling… the installation is left as it was."

// showAfter is how long a progress window waits before it appears: a check
// that finds the install up to date ends before, and shows nothing.
const showAfter = 400 * time.Millisecond

// redraw is how often a window takes the latest State.
const redraw = 100 * time.Millisecond

// askTimeout is how long a question waits for an answer before it is
// taken as No: a sync started on a desktop nobody sits at (a scheduled
// job) must not wait for ever. A variable for the tests.
var askTimeout = 10 * time.Minute

// timeoutNote is what a question says about askTimeout.
func timeoutNote() string {
	return fmt.Sprintf("Without an answer within %s, the answer is No.", minutes(askTimeout))
}

// minutes says d in words: "10 minutes", "1 minute", "5 seconds".
func minutes(d time.Duration) string {
	switch {
	case d == time.Minute:
		return "1 minute"
	case d >= time.Minute:
		return fmt.Sprintf("%d minutes", int(d/time.Minute))
	}
	return fmt.Sprintf("%d seconds", int(d/time.Second))
}

// waitDelay bounds how long a zenity's Wait waits, once it has ended, for
// a process it started that holds its output (a zenity that is a
// wrapper); closeWait how long Close waits for zenity before it kills it.
const (
	waitDelay = time.Second
	closeWait = 5 * time.Second
)

// Errors.
var (
	// ErrUnsupported: this system has no window of that kind.
	ErrUnsupported = errors.New("desktop: no progress window of this kind on this system")
	// ErrClosed: the window was closed before the dialog could be shown.
	ErrClosed = errors.New("desktop: the window is closed")
)

// clampPercent keeps p within the bar.
func clampPercent(p int) int {
	return min(max(p, 0), 100)
}
