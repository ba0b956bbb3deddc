//go:build windows

package installtest

import "golang.org/x/sys/windows"

// ErrLocked is the error the system gives for a file another program
// holds open, as a test injects it: on Windows a sharing violation.
const ErrLocked = windows.ERROR_SHARING_VIOLATION
