package smartclient

import (
	"github.com/erpupdate/smartsync/smartclient/internal/fetch"
	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/journal"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest"
)

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
