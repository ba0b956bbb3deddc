//go:build windows

package smartclient

import (
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/windows"
)

// prepareStop starts the program in a process group of its own, the only
// way to send it CTRL_BREAK_EVENT alone.
func prepareStop(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.CreationFlags |= windows.CREATE_NEW_PROCESS_GROUP
}

// askToStop sends the program's group CTRL_BREAK_EVENT, which a console
// program may catch to save and quit (a Go program sees os.Interrupt).
// A program without a console cannot get it; it is killed after the
// grace.
func askToStop(p *os.Process) error {
	return windows.GenerateConsoleCtrlEvent(windows.CTRL_BREAK_EVENT, uint32(p.Pid))
}

// signalOf reports the signal that ended a process: none on Windows,
// where every process ends with an exit code.
func signalOf(*os.ProcessState) (int, bool) { return 0, false }
