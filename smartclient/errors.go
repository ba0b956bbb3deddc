package smartclient

import (
	"errors"
	"io"
	"net"

	"github.com/erpupdate/smartsync/smartclient/internal/fetch"
	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/journal"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest"
)

// ErrUsage marks a bad option or configuration: the caller's mistake, not
// a failure of the update.
var ErrUsage = errors.New("usage error")

// Errors of the parts below the sync, for errors.Is: each is the very
// value its part returns.
var (
	// ErrLocked marks a file that stayed in use by another program.
	ErrLocked = install.ErrLocked
	// ErrRolledBack marks a switch that failed and was undone: the
	// install is the old release again.
	ErrRolledBack = journal.ErrRolledBack
	// ErrPostInstall marks a post-install step that failed or ran out of
	// time; the switch is then rolled back.
	ErrPostInstall = journal.ErrPostInstall
	// ErrBadManifest marks a manifest the client refuses before it
	// downloads a byte.
	ErrBadManifest = manifest.ErrBad
	// ErrVerify marks received content that does not match the manifest.
	ErrVerify = fetch.ErrVerify
)

// ConnectionLost reports an error that means the connection to the server
// broke or went silent. The system's words for a broken connection differ:
// see lostErrnos.
func ConnectionLost(err error) bool {
	var ne net.Error
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range lostErrnos {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// lostConnection is ConnectionLost, as the library's own code says it.
var lostConnection = ConnectionLost
