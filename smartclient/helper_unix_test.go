//go:build unix

package smartclient

import (
	"os"
	"syscall"
)

// interruptSignals are the signals the helper program takes as a request
// to stop: what runProgram sends (SIGTERM), and ^C.
var interruptSignals = []os.Signal{os.Interrupt, syscall.SIGTERM}
