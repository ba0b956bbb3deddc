//go:build !unix

package appserver

import "os"

// stderrIsJournal is false where there is no systemd journal.
func stderrIsJournal(f *os.File, journalStream string) bool { return false }
