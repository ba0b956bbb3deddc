package smartclient

import "github.com/erpupdate/smartsync/smartclient/internal/install"

// Errors of the parts below the sync, for errors.Is: each is the very
// value its part returns.
var (
	// ErrLocked marks a file that stayed in use by another program.
	ErrLocked = install.ErrLocked
)
