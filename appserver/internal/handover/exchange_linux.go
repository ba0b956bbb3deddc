package handover

import (
	"errors"

	"golang.org/x/sys/unix"
)

// exchange swaps the folders at a and b in one step (renameat2 with
// RENAME_EXCHANGE): at every moment each path holds one whole
// installation, so a crash between steps cannot leave the server's path
// empty. A file system without the call gets the three-rename fallback.
func exchange(a, b string) error {
	err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTSUP) {
		return exchangeByRenames(a, b)
	}
	if err != nil {
		return &osPathError{"exchange", a, b, err}
	}
	return nil
}
