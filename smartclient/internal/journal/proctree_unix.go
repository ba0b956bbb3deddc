//go:build unix

package journal

import (
	"errors"
	"os/exec"
	"syscall"
)

// procTree is the process group a post-install step runs in.
type procTree struct{ pgid int }

// ownTree makes the step the leader of a process group of its own, which
// its children join unless they leave it on purpose.
func ownTree(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// contain returns the tree of a started step.
func contain(cmd *exec.Cmd) (*procTree, error) {
	return &procTree{pgid: cmd.Process.Pid}, nil
}

// kill ends every process of the group. A group already gone is not an
// error.
func (t *procTree) kill() error {
	if t == nil {
		return nil
	}
	if err := syscall.Kill(-t.pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

func (t *procTree) close() {}
