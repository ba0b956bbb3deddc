package install

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ErrBusy is Lock's answer when another smartclient holds the install
// folder.
var ErrBusy = errors.New("another smartclient is updating this folder")

// Holder says which smartclient holds the lock of an install folder, for
// status to tell the user while a sync runs.
type Holder struct {
	PID   int
	Since time.Time
}

// holderFile is where the holder of the lock says who it is. It is only
// information: read only while the lock is held by someone else, so a
// stale one (a killed smartclient) misleads nobody, and written only when
// MetaDir exists, so that a first sync that is declined leaves no trace.
const holderFile = MetaDir + "/running"

// HolderFile is holderFile, for a caller that tells bookkeeping from the
// lock's note.
const HolderFile = holderFile

// announce writes holderFile for the lock just taken and returns unlock
// with its removal first.
func announce(root *os.Root, unlock func()) func() {
	fi, err := root.Lstat(MetaDir)
	if err != nil || !fi.IsDir() {
		return unlock
	}
	text := fmt.Sprintf("%d %d\n", os.Getpid(), time.Now().Unix())
	f, err := root.OpenFile(holderFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		// A note a killed smartclient left must not name it as the
		// holder now.
		root.Remove(holderFile)
		return unlock
	}
	_, werr := f.WriteString(text)
	if err := f.Close(); err != nil || werr != nil {
		root.Remove(holderFile)
		return unlock
	}
	return func() {
		root.Remove(holderFile)
		unlock()
	}
}

// ReadHolder reads who holds the lock, as the holder wrote it; ok is
// false when it did not (a first install, or a smartclient before this
// file existed).
func ReadHolder(root *os.Root) (h Holder, ok bool) {
	data, err := root.ReadFile(holderFile)
	if err != nil || len(data) > 64 {
		return Holder{}, false
	}
	fields := strings.Fields(string(data))
	if len(fields) != 2 {
		return Holder{}, false
	}
	pid, err1 := strconv.Atoi(fields[0])
	since, err2 := strconv.ParseInt(fields[1], 10, 64)
	if err1 != nil || err2 != nil || pid <= 0 {
		return Holder{}, false
	}
	return Holder{PID: pid, Since: time.Unix(since, 0)}, true
}
