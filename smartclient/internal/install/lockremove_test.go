package install

import (
	"errors"
	"io/fs"
	"os"
	"testing"
)

// TestLockFileRemovableWhileHeld: the lock's own file can be removed
// while the lock is held (a first sync that did not happen leaves only
// the client's id), on Windows as on Unix; it is gone once unlocked.
func TestLockFileRemovableWhileHeld(t *testing.T) {
	r, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	unlock, err := Lock(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveAll(LockFile); err != nil {
		t.Errorf("removing the held lock file: %v", err)
	}
	unlock()
	if _, err := r.Stat(LockFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after unlocking, the lock file: %v; want it gone", err)
	}
}
