//go:build !unix

package smartclient

import "os"

// interruptSignals are the signals the helper program takes as a request
// to stop: on Windows, Go delivers the CTRL_BREAK_EVENT runProgram sends
// as os.Interrupt.
var interruptSignals = []os.Signal{os.Interrupt}
