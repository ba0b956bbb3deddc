//go:build unix

package handover

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// detach starts cmd in a session of its own, so that it outlives this
// process and is not stopped with its process group.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
}

// killTree kills a process started by detach and everything it started.
func killTree(p *os.Process) {
	if syscall.Kill(-p.Pid, syscall.SIGKILL) != nil {
		p.Kill()
	}
}

// ProcessAlive reports whether pid is a running process. A zombie, dead
// but not yet reaped by its parent, is not.
func ProcessAlive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) == syscall.ESRCH {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no /proc (macOS, BSD): the signal test is all there is
	}
	// The state follows the command name in parentheses: "pid (comm) S ...".
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return true
}

// killSelf dies the way a killed server dies: no deferred function runs.
func killSelf() {
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}
