//go:build windows

package appserver

import (
	"errors"

	"golang.org/x/sys/windows"
)

// acceptAgainOS knows Winsock's own numbers for the errors that pass.
func acceptAgainOS(err error) bool {
	for _, e := range []error{windows.WSAEMFILE, windows.WSAENOBUFS, windows.WSAECONNABORTED, windows.WSAECONNRESET} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
