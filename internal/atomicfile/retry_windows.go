//go:build windows

package atomicfile

import (
	"errors"

	"golang.org/x/sys/windows"
)

// isSharingError says whether err is Windows refusing a rename or a
// removal because another process has the file open: ERROR_ACCESS_DENIED
// (a file open without FILE_SHARE_DELETE, or pending deletion) or
// ERROR_SHARING_VIOLATION.
func isSharingError(err error) bool {
	return errors.Is(err, windows.ERROR_ACCESS_DENIED) || errors.Is(err, windows.ERROR_SHARING_VIOLATION)
}
