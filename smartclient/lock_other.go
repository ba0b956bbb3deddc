//go:build !unix && !windows

package smartclient

import (
	"errors"
	"fmt"
	"os"
)

// lockInstall creates the lock file exclusively where flock(2) is not
// available; a stale lock left by a killed process names itself in the
// error so the user can remove it.
func lockInstall(root *os.Root) (func(), error) {
	if err := root.MkdirAll(metaDir, 0o755); err != nil {
		return nil, fmt.Errorf("locking install folder: %w", err)
	}
	f, err := root.OpenFile(lockFile, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("another smartclient is updating this folder (or one was killed: remove %s)", lockFile)
	}
	if err != nil {
		return nil, fmt.Errorf("locking install folder: %w", err)
	}
	return func() { f.Close(); root.Remove(lockFile) }, nil
}
