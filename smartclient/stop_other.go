//go:build !unix && !windows

package smartclient

import (
	"os"
	"os/exec"
)

func prepareStop(*exec.Cmd) {}

// askToStop sends the program os.Interrupt, where the OS has it.
func askToStop(p *os.Process) error { return p.Signal(os.Interrupt) }

func signalOf(*os.ProcessState) (int, bool) { return 0, false }
