package clientdb

import (
	"errors"
	"fmt"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Kind is what went wrong with the database file, as far as the
// administrator is concerned.
type Kind int

// The kinds of Error.
const (
	KindOther   Kind = iota // anything else
	KindLocked              // another program holds a lock (SQLITE_BUSY, SQLITE_LOCKED)
	KindFull                // no room: disk full or a size limit (SQLITE_FULL)
	KindCorrupt             // damaged or not a database (SQLITE_CORRUPT, SQLITE_NOTADB)
	KindIO                  // the disk failed a read or write (SQLITE_IOERR)
	KindAccess              // cannot open or write (SQLITE_CANTOPEN, SQLITE_READONLY, SQLITE_PERM)
	KindNewer               // written by a newer server (schema version)
	KindMissing             // the file does not exist (read-only opening only)
)

// String names the kind in a word.
func (k Kind) String() string {
	switch k {
	case KindLocked:
		return "locked"
	case KindFull:
		return "full"
	case KindCorrupt:
		return "corrupt"
	case KindIO:
		return "i/o error"
	case KindAccess:
		return "no access"
	case KindNewer:
		return "newer schema"
	case KindMissing:
		return "missing"
	}
	return "error"
}

// Error is a problem with the client database file: the file, the step
// that failed, what kind of problem it is and the underlying error. Its
// message says what the administrator should do.
type Error struct {
	Path string // the database file
	Op   string // the step: "open", "migrate", "write", "prune", "query"
	Kind Kind
	Err  error
}

// Error reads as one sentence naming the file and the remedy.
func (e *Error) Error() string {
	var what string
	switch e.Kind {
	case KindLocked:
		what = "is locked by another program; close the program that holds it (an sqlite3 shell, a backup tool)"
	case KindFull:
		what = "is full: its disk (or a size limit) has no room left; free space on that disk"
	case KindCorrupt:
		what = fmt.Sprintf("is corrupt or not a database; move %s (with its -wal and -shm files) aside and the server starts a new one", e.Path)
	case KindIO:
		what = "cannot be read or written (disk I/O error); check the disk"
	case KindAccess:
		what = "cannot be opened for writing; check that its folder exists and that the server's account may write there"
	case KindNewer:
		what = fmt.Sprintf("was written by a newer server; run that server, or move %s aside", e.Path)
	case KindMissing:
		what = "does not exist: no client has reported yet (the server creates it at the first report)"
	default:
		what = "failed"
	}
	return fmt.Sprintf("client database %s %s (%s: %v)", e.Path, what, e.Op, e.Err)
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// kindOf classifies err.
func kindOf(err error) Kind {
	var ne *newerSchemaError
	if errors.As(err, &ne) {
		return KindNewer
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return KindOther
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return KindLocked
	case sqlite3.SQLITE_FULL:
		return KindFull
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return KindCorrupt
	case sqlite3.SQLITE_IOERR:
		return KindIO
	case sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH:
		return KindAccess
	}
	return KindOther
}

// wrap makes err an *Error for path and op (nil stays nil; an *Error is
// kept).
func wrap(path, op string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Path: path, Op: op, Kind: kindOf(err), Err: err}
}

// ErrNotFound is returned by Client for an unknown client id.
var ErrNotFound = errors.New("clientdb: no such client")
