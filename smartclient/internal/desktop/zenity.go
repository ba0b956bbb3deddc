package desktop

import (
	"bufio"
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
	// cmd, in and exited are set by loop when it starts zenity.
	cmd    *exec.Cmd
	in     io.WriteCloser
	exited chan struct{} // zenity has ended

	mu        sync.Mutex
	state     State
	drawn     State
	started   bool // a line was written
	cancelled bool
	closing   bool
	err       error              // zenity could not be started
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
	z := &zenity{path: zenityPath, onCancel: onCancel, stop: make(chan struct{}), loopDone: make(chan struct{})}
	go z.loop()
	return z, nil
}

// start starts zenity. --auto-close closes it at 100%, which only Close
// writes. Its output is of no use: zenity warns on stderr about GTK
// matters.
func (z *zenity) start() error {
	cmd := exec.Command(z.path, "--progress", "--title="+Title, "--text=", "--auto-close", "--width=460")
	in, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("desktop: zenity: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("desktop: starting zenity: %w", err)
	}
	z.cmd, z.in, z.exited = cmd, in, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(z.exited)
		z.mu.Lock()
		cancel := !z.closing && !z.cancelled
		z.cancelled = true
		z.mu.Unlock()
		if cancel && z.onCancel != nil {
			go z.onCancel()
		}
	}()
	return nil
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
			return
		case <-z.stop:
			// 100% closes it (--auto-close); a zenity that does
			// not end is killed.
			_, _ = io.WriteString(z.in, "100\n")
			_ = z.in.Close()
			select {
			case <-z.exited:
			case <-time.After(2 * time.Second):
				_ = z.cmd.Process.Kill()
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

func (z *zenity) Ask(question string) (bool, error) {
	code, err := z.dialog("--question", "--title="+QuestionTitle, "--text="+question)
	if err != nil {
		return false, err
	}
	// 0 is Yes, 1 is No or the dialog closed; anything else is zenity's
	// own failure (5 is its timeout, -1 an error).
	switch code {
	case 0:
		return true, nil
	case 1:
		return false, nil
	}
	return false, fmt.Errorf("desktop: zenity --question exited with status %d", code)
}

func (z *zenity) Error(message string) error {
	_, err := z.dialog("--error", "--title="+ErrorTitle, "--text="+message)
	return err
}

// dialog runs a zenity dialog and returns its exit status.
func (z *zenity) dialog(args ...string) (int, error) {
	args = append(args, "--no-markup", "--width=460")
	cmd := exec.Command(z.path, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	z.mu.Lock()
	if z.closing {
		z.mu.Unlock()
		return -1, ErrClosed
	}
	err := cmd.Start()
	if err == nil {
		if z.dialogs == nil {
			z.dialogs = map[*exec.Cmd]bool{}
		}
		z.dialogs[cmd] = true
	}
	z.mu.Unlock()
	if err == nil {
		err = cmd.Wait()
		z.mu.Lock()
		delete(z.dialogs, cmd)
		z.mu.Unlock()
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
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
// still shown (the sync interrupted meanwhile) is closed too. It returns
// the error of a zenity that could not be started.
func (z *zenity) Close() error {
	z.mu.Lock()
	already := z.closing
	z.closing = true
	for d := range z.dialogs {
		_ = d.Process.Kill()
	}
	z.mu.Unlock()
	if !already {
		close(z.stop)
	}
	<-z.loopDone
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.err
}
