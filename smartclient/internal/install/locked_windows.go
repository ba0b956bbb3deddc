//go:build windows

package install

import (
	"errors"

	"golang.org/x/sys/windows"
)

// isLocked reports the errors Windows gives for a file that a running
// program or an antivirus scan holds open.
func isLocked(err error) bool {
	return errors.Is(err, windows.ERROR_SHARING_VIOLATION) || errors.Is(err, windows.ERROR_LOCK_VIOLATION) ||
		errors.Is(err, windows.ERROR_ACCESS_DENIED)
}
