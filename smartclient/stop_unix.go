//go:build unix

package smartclient

import (
	"os"
	"os/exec"
	"syscall"
)

// prepareStop readies cmd for askToStop: nothing to do. The program stays
// in smartclient's process group, where a terminal's job control and
// Ctrl+C keep reaching it.
func prepareStop(*exec.Cmd) {}

// askToStop sends the program SIGTERM, which it may catch to save and
// quit.
func askToStop(p *os.Process) error { return p.Signal(syscall.SIGTERM) }

// signalOf reports the signal that ended a process.
func signalOf(ps *os.ProcessState) (int, bool) {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return 0, false
	}
	return int(ws.Signal()), true
}
