package install

import (
	"strings"

	"github.com/erpupdate/smartsync/internal/releasecheck"
)

// The client's own bookkeeping lives in one hidden folder of the install
// folder, beside the bkp_remote.00N backups. The files in it that belong
// to one part of the client (the state, the journal, the kept manifest)
// are named by that part.
const (
	MetaDir      = releasecheck.MetaDir  // no release may name it
	StagingDir   = MetaDir + "/staging"  // the files a sync downloaded, before the switch
	OldDir       = MetaDir + "/old"      // install files the switch moved aside
	NewBackupDir = MetaDir + "/bkp_new"  // the snapshot of the install a switch replaces
	DropBackup   = MetaDir + "/bkp_drop" // the oldest backup, while it is removed
	LockFile     = MetaDir + "/lock"     // where the OS cannot lock the folder itself
	BackupPrefix = releasecheck.BackupPrefix
)

// Reserved reports whether a relative slash path belongs to the client's
// bookkeeping, which no manifest may name and no backup copies.
func Reserved(rel string) bool {
	first, _, _ := strings.Cut(rel, "/")
	first = strings.ToLower(first)
	return first == MetaDir || strings.HasPrefix(first, BackupPrefix)
}
