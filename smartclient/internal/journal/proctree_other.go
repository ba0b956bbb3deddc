//go:build !unix && !windows

package journal

import "os/exec"

// procTree is the step's process alone where the system has neither
// process groups nor job objects.
type procTree struct{ cmd *exec.Cmd }

func ownTree(*exec.Cmd) {}

func contain(cmd *exec.Cmd) (*procTree, error) { return &procTree{cmd: cmd}, nil }

func (t *procTree) kill() error {
	if t == nil {
		return nil
	}
	return t.cmd.Process.Kill()
}

func (t *procTree) close() {}
