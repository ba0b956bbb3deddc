package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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
func runPostInstall(dir string, step *PostInstallStep) error {
	ctx, cancel := context.WithTimeout(context.Background(), step.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(dir, filepath.FromSlash(step.Path)))
	cmd.Dir = dir
	out := &tailBuffer{max: 4096}
	cmd.Stdout, cmd.Stderr = out, out
	// A step that leaves children holding its output is not waited for
	// forever once it is killed.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		err = fmt.Errorf("did not finish within %v", step.Timeout)
	}
	msg := fmt.Sprintf("%s: %v", step.Path, err)
	if lines := out.lastLines(5); lines != "" {
		msg += "; its last output: " + lines
	}
	return fmt.Errorf("%w: %s", ErrPostInstall, msg)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) lastLines(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(bytes.ToValidUTF8(t.b, []byte("?")))), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, " | "))
}
