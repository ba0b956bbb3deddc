//go:build !unix && !windows

package install

import (
	"errors"
	"fmt"
	"os"
)

// Lock creates the lock file exclusively where flock(2) is not
// available; a stale lock left by a killed process names itself in the
// error so the user can remove it.
func Lock(root *os.Root) (func(), error) {
	if err := root.MkdirAll(MetaDir, 0o755); err != nil {
		return nil, fmt.Errorf("locking install folder: %w", err)
	}
	f, err := root.OpenFile(LockFile, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("%w (or one was killed: remove %s)", ErrBusy, LockFile)
	}
	if err != nil {
		return nil, fmt.Errorf("locking install folder: %w", err)
	}
	return announce(root, func() { f.Close(); root.Remove(LockFile) }), nil
}
