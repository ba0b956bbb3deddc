package desktop

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// zenity is a progress window drawn by zenity --progress, fed on its
// standard input.
type zenity struct {
	path     string
	onCancel func()

	stop     chan struct{} // Close was called
	loopDone chan struct{} // loop has returned: no zenity runs
	// in and exited are set by loop when it starts zenity (cmd too,
	// under mu: Close may kill it).
	in     io.WriteCloser
	exited chan struct{} // zenity has ended

	mu        sync.Mutex
	cmd       *exec.Cmd
	state     State
	drawn     State
	started   bool // a line was written
	cancelled bool
	closing   bool
	err       error              // zenity could not be started, or failed
	dialogs   map[*exec.Cmd]bool // questions and failures on screen
}

// OpenZenity returns a progress window that `zenity --progress` draws
// (zenityPath is the zenity program), with the title Title. zenity starts
// showAfter later, so that a sync that ends before shows nothing. onCancel
// is called once, from a goroutine of its own, if zenity ends before Close:
// its Cancel button, Escape, or its window closed.
func OpenZenity(zenityPath string, onCancel func()) (Window, error) {
	if zenityPath == "" {
		return nil, errors.New("desktop: no zenity program given")
	}
	z := &zenity{path: zenityPath, onCancel: onCancel, stop: make(chan struct{}), loopDone: make(chan struct{}), dialogs: map[*exec.Cmd]bool{}}
	go z.loop()
	return z, nil
}

// start starts zenity. --auto-close closes it at 100%, which only Close
// writes. Its standard error says why a zenity that could not show its
// window ended (GTK's warnings are there too).
func (z *zenity) start() error {
	cmd := exec.Command(z.path, "--progress", "--title="+Title, "--text=", "--auto-close", "--width=460")
	ownGroup(cmd)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = waitDelay
	in, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("desktop: zenity: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("desktop: starting zenity: %w", err)
	}
	z.mu.Lock()
	z.cmd = cmd
	z.mu.Unlock()
	z.in, z.exited = in, make(chan struct{})
	go func() {
		err := cmd.Wait()
		z.mu.Lock()
		cancel := false
		if !z.closing && !z.cancelled {
			// Before Close: the user's Cancel, unless zenity
			// could not show its window at all.
			if ferr := zenityFailed(err, stderr.String()); ferr != nil {
				z.err = ferr
			} else {
				cancel, z.cancelled = true, true
			}
		}
		z.mu.Unlock()
		close(z.exited)
		if cancel && z.onCancel != nil {
			go z.onCancel()
		}
	}()
	return nil
}

// zenityFailed tells a zenity that failed from one the user closed (its
// Cancel button, Escape, the close box: exit status 1), given how it ended
// and its standard error. GTK that cannot open the display ("cannot open
// display: :0") also exits 1, so that is told by its message: nil means
// the user's Cancel.
func zenityFailed(err error, stderr string) error {
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		if err == nil {
			err = errors.New("exit status 0")
		}
		return fmt.Errorf("desktop: zenity --progress ended by itself: %w: %s", err, lastLine(stderr))
	}
	if noDisplay(stderr) {
		return fmt.Errorf("desktop: zenity could not show its window: %s", lastLine(stderr))
	}
	return nil
}

// noDisplay says whether zenity's standard error says that it could not
// reach the display (GTK's "cannot open display", or a failed GDK
// backend).
func noDisplay(stderr string) bool {
	s := strings.ToLower(stderr)
	return strings.Contains(s, "cannot open display") || strings.Contains(s, "failed to initialize") ||
		strings.Contains(s, "failed to connect to")
}

// loop starts zenity after showAfter, then writes the latest state to it
// every redraw until Close, and then closes it.
func (z *zenity) loop() {
	defer close(z.loopDone)
	first := time.NewTimer(showAfter)
	defer first.Stop()
	select {
	case <-first.C:
	case <-z.stop:
		return
	}
	if err := z.start(); err != nil {
		z.mu.Lock()
		z.err = err
		z.mu.Unlock()
		return
	}
	t := time.NewTicker(redraw)
	defer t.Stop()
	for {
		z.draw()
		select {
		case <-t.C:
		case <-z.exited:
			_ = z.in.Close()
			return
		case <-z.stop:
			// 100% closes it (--auto-close); a zenity that does
			// not end is killed.
			_, _ = io.WriteString(z.in, "100\n")
			_ = z.in.Close()
			select {
			case <-z.exited:
			case <-time.After(2 * time.Second):
				killGroup(z.cmd)
				<-z.exited
			}
			return
		}
	}
}

// draw writes what changed since the last draw.
func (z *zenity) draw() {
	z.mu.Lock()
	s, drawn, first := z.state, z.drawn, !z.started
	if z.cancelled {
		s.Text = CancellingText
	}
	z.drawn, z.started = s, true
	z.mu.Unlock()
	var b strings.Builder
	// 100 would close it (--auto-close): that is for Close alone.
	if p := min(clampPercent(s.Percent), 99); first || p != drawn.Percent {
		fmt.Fprintf(&b, "%d\n", p)
	}
	if first || s.Text != drawn.Text || s.Detail != drawn.Detail {
		text := s.Text
		if s.Detail != "" {
			text += "\n" + s.Detail
		}
		fmt.Fprintf(&b, "# %s\n", zenityLine(text))
	}
	if b.Len() > 0 {
		_, _ = io.WriteString(z.in, b.String()) // zenity gone: the waiter has seen it
	}
}

// zenityLine makes text one "# " line: zenity unescapes it as a C string
// (g_strcompress), so a backslash is doubled and a new line is written \n;
// other control characters are dropped.
func zenityLine(text string) string {
	var b strings.Builder
	for _, r := range text {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r < 0x20 || r == 0x7f:
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func (z *zenity) Show(s State) {
	z.mu.Lock()
	z.state = s
	z.mu.Unlock()
}

// Ask asks in zenity --question, which answers No by itself after
// askTimeout (nobody may be there: a job started on a desktop's display);
// the question says so.
func (z *zenity) Ask(question string) (bool, error) {
	code, err := z.dialog("--question", "--title="+QuestionTitle, "--text="+question+"\n\n"+timeoutNote(),
		fmt.Sprintf("--timeout=%d", int(askTimeout/time.Second)))
	if err != nil {
		return false, err
	}
	// 0 is Yes, 1 is No or the dialog closed, 5 the timeout; anything
	// else is zenity's own failure (-1 an error).
	switch code {
	case 0:
		return true, nil
	case 1, 5:
		return false, nil
	}
	return false, fmt.Errorf("desktop: zenity --question exited with status %d", code)
}

func (z *zenity) Error(message string) error {
	_, err := z.dialog("--error", "--title="+ErrorTitle, "--text="+message)
	return err
}

// dialog runs a zenity dialog and returns its exit status: an error if
// zenity could not be run or could not show it.
func (z *zenity) dialog(args ...string) (int, error) {
	return runDialog(z.path, &z.mu, func() bool { return z.closing }, z.dialogs, args...)
}

// runDialog runs the zenity dialog zenityPath args, registered in dialogs
// (under mu) for Close to end, unless closed() already says so.
func runDialog(zenityPath string, mu *sync.Mutex, closed func() bool, dialogs map[*exec.Cmd]bool, args ...string) (int, error) {
	args = append(args, "--no-markup", "--width=460")
	cmd := exec.Command(zenityPath, args...)
	ownGroup(cmd)
	cmd.WaitDelay = waitDelay
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	mu.Lock()
	if closed() {
		mu.Unlock()
		return -1, ErrClosed
	}
	err := cmd.Start()
	if err == nil {
		dialogs[cmd] = true
	}
	mu.Unlock()
	if err == nil {
		err = cmd.Wait()
		mu.Lock()
		delete(dialogs, cmd)
		mu.Unlock()
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee) && ee.ExitCode() == 1 && noDisplay(stderr.String()):
		return -1, fmt.Errorf("desktop: zenity %s could not show its dialog: %s", args[0], lastLine(stderr.String()))
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return ee.ExitCode(), nil
	}
	return -1, fmt.Errorf("desktop: zenity %s: %w: %s", args[0], err, lastLine(stderr.String()))
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	var last string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			last = l
		}
	}
	return last
}

// Close closes zenity and waits until it has ended; a question or failure
// still shown (the sync interrupted meanwhile) is closed too. A zenity
// that does not end (it stopped reading, and the loop is stuck writing to
// it) is killed after closeWait. It returns the error of a zenity that
// could not be started or could not show its window.
func (z *zenity) Close() error {
	z.mu.Lock()
	already := z.closing
	z.closing = true
	for d := range z.dialogs {
		killGroup(d)
	}
	z.mu.Unlock()
	if !already {
		close(z.stop)
	}
	select {
	case <-z.loopDone:
	case <-time.After(closeWait):
		z.mu.Lock()
		cmd := z.cmd
		z.mu.Unlock()
		if cmd != nil {
			killGroup(cmd)
		}
		<-z.loopDone
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.err
}
