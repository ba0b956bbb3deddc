package smartclient

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Application is the program 'smartclient run' starts after its sync,
// with the session to the server it keeps open meanwhile: the server's
// notices on it (a restart for an update, its countdown, its deadline)
// are shown to the user, and at the deadline the program is asked to stop.
type Application struct {
	sess *conn
}

// Keep sets o so that Sync hands its last session, when the server
// acknowledged its report, to the application instead of closing it.
func (a *Application) Keep(o *Options) {
	o.keep = func(c *conn) { a.sess = keepSession(a.sess, c) }
}

// Close closes a kept session, when no program is run after all.
func (a *Application) Close() {
	if a.sess != nil {
		a.sess.Close()
		a.sess = nil
	}
}

// SharedWriter returns w made safe to write from several goroutines: the
// program 'run' starts, the server's notices and the log all write to the
// user's stderr. An *os.File is already.
func SharedWriter(w io.Writer) io.Writer {
	switch w.(type) {
	case *os.File, *lockedWriter:
		return w
	}
	return &lockedWriter{w: w}
}

// Run starts argv in the install folder o.Dir and returns its exit
// status, or an error when it could not be started or waited for. The
// kept session is closed when the program ends.
func (a *Application) Run(ctx context.Context, o Options, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	stderr = SharedWriter(stderr)
	sess := a.sess
	a.sess = nil
	return runProgram(ctx, o, sess, argv, stdin, stdout, stderr)
}

// keepSession returns c as the session run keeps, closing the one it kept
// before: a sync tried again (see Sync) may keep one for each attempt,
// and only the last is read.
func keepSession(kept, c *conn) *conn {
	if kept != nil && kept != c {
		kept.Close()
	}
	return c
}

// runProgram starts the application and returns its exit code. A bare
// program name is looked for in the install folder first. While it runs,
// the server's notices on sess (nil for none) are shown on stderr. At the
// server's deadline, as when ctx ends, the program is asked to stop
// (SIGTERM; CTRL_BREAK_EVENT on Windows) and killed if it has not after
// o.StopGrace. The session is closed when the program ends.
func runProgram(ctx context.Context, o Options, sess *conn, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	prog := argv[0]
	if !strings.ContainsAny(prog, `/\`) {
		if fi, err := os.Stat(filepath.Join(o.Dir, prog)); err == nil && !fi.IsDir() {
			prog = filepath.Join(o.Dir, prog)
		}
	}
	grace := o.StopGrace
	if grace <= 0 {
		grace = 10 * time.Second
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	cmd := exec.CommandContext(runCtx, prog, argv[1:]...)
	cmd.Dir = o.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	prepareStop(cmd)
	cmd.Cancel = func() error { return askToStop(cmd.Process) }
	cmd.WaitDelay = grace
	if err := cmd.Start(); err != nil {
		if sess != nil {
			sess.Close()
		}
		return 1, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	watched := make(chan struct{})
	if sess != nil {
		go func() {
			defer close(watched)
			watchNotices(sess, filepath.Base(argv[0]), stderr, o.Log, stop)
		}()
	} else {
		close(watched)
	}
	err := cmd.Wait()
	if sess != nil {
		sess.Close()
	}
	<-watched
	if cmd.ProcessState == nil {
		return 1, fmt.Errorf("running %s: %w", argv[0], err)
	}
	return exitStatus(cmd.ProcessState), nil
}

// exitStatus is a program's exit code; one ended by a signal gets 128
// plus the signal's number, as from a shell.
func exitStatus(ps *os.ProcessState) int {
	if code := ps.ExitCode(); code >= 0 {
		return code
	}
	if sig, ok := signalOf(ps); ok {
		return 128 + sig
	}
	return 1
}
