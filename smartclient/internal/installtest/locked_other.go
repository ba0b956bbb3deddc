//go:build !windows

package installtest

import "syscall"

// ErrLocked is the error the system gives for a file another program
// holds open, as a test injects it: EBUSY outside Windows.
const ErrLocked = syscall.EBUSY
