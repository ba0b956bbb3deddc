package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// PostInstallStep is the program a release runs after its files are in
// place (the new version upgrading its data), as the journal records it.
type PostInstallStep struct {
	Path    string        `json:"path"`
	Timeout time.Duration `json:"timeout"`
}

// ErrPostInstall marks a post-install step that failed or ran out of time;
// the switch is then rolled back.
var ErrPostInstall = errors.New("smartclient: the post-install step failed")

// runPostInstall runs the step in the install folder. A non-zero exit or
// a timeout is an error that carries the step's last lines of output.
//
// The step runs in a process tree of its own (a process group on Unix, a
// job object on Windows): at its time limit, and whenever it fails, the
// whole tree is ended before the error returns, so that no child it left
// behind writes into the installation the rollback puts back. Its output
// goes to a temporary file rather than a pipe, so that the end of the step
// is known as soon as the step exits, not when its last child lets go of
// the pipe.
func runPostInstall(dir string, step *PostInstallStep) error {
	out, err := os.CreateTemp("", "smartclient-postinstall-*.log")
	if err != nil {
		return fmt.Errorf("%w: %s: keeping its output: %v", ErrPostInstall, step.Path, err)
	}
	defer os.Remove(out.Name())
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), step.Timeout)
	defer cancel()
	cmd, err := stepCommand(ctx, filepath.Join(dir, filepath.FromSlash(step.Path)))
	if err != nil {
		return fmt.Errorf("%w: %s: finding its interpreter: %v", ErrPostInstall, step.Path, err)
	}
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	ownTree(cmd)
	// The tree is known once the step has started; the cancel runs in
	// exec's own goroutine.
	var contained atomic.Pointer[procTree]
	cmd.Cancel = func() error { return contained.Load().kill() }
	// Should the time run out before the tree is known, the step itself
	// is killed this long after the cancel.
	cmd.WaitDelay = 2 * time.Second
	if err = cmd.Start(); err == nil {
		var tree *procTree
		tree, err = contain(cmd)
		contained.Store(tree)
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			err = fmt.Errorf("containing its processes: %w", err)
		} else {
			err = cmd.Wait()
			if err != nil {
				// A step that failed may have left children: they go
				// before the rollback begins.
				tree.kill()
			}
			tree.close()
		}
	}
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		err = fmt.Errorf("did not finish within %v", step.Timeout)
	}
	msg := fmt.Sprintf("%s: %v", step.Path, err)
	if lines := lastLines(out, 4096, 5); lines != "" {
		msg += "; its last output: " + lines
	}
	return fmt.Errorf("%w: %s", ErrPostInstall, msg)
}

// lastLines returns the last n lines of the last limit bytes of f.
func lastLines(f *os.File, limit int64, n int) string {
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-limit, 0)
	b := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(bytes.ToValidUTF8(b, []byte("?")))), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, " | "))
}
