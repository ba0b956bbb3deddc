//go:build unix

package appserver

import (
	"fmt"
	"os"
	"syscall"
)

// stderrIsJournal reports whether f, the process's stderr, is the systemd
// journal: systemd sets JOURNAL_STREAM to "DEVICE:INODE" of the stream it
// connects, and a process must check that its stderr is still that stream
// (it may have been redirected since) before relying on it (systemd.exec(5)).
func stderrIsJournal(f *os.File, journalStream string) bool {
	if journalStream == "" {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	return fmt.Sprintf("%d:%d", uint64(st.Dev), uint64(st.Ino)) == journalStream
}
