package appserver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/handover"
	"github.com/erpupdate/smartsync/internal/filelock"
)

// deadHolderGrace is how long a starting server waits for the lock of a
// holder whose process has exited.
const deadHolderGrace = 5 * time.Second

// LockFile is the name of the lock file in the state folder. A running
// server holds an OS lock on it (flock on Unix, LockFileEx on Windows) for
// its whole life, so that two servers never share one state folder: hash
// caches, the self-update's records, administrators' sessions and the TLS
// key are each one server's. The lock dies with the process, so a killed
// server leaves none behind; the file itself stays, and holds the last
// holder's pid, host and start time for the refusal to name.
const LockFile = "appserver.lock"

// StateHolder is what the lock file says of the server holding it.
type StateHolder struct {
	PID     int       // the server's process ID; 0 when unknown
	Host    string    // the host it runs on
	Program string    // its executable
	Started time.Time // when it took the lock
}

// String describes the holder as a refusal names it:
// "pid 1234 on host erp1, started 2026-12-06 07:10:00 UTC".
func (h StateHolder) String() string {
	if h.PID == 0 {
		return "pid unknown: it is starting, or is an older appserver"
	}
	s := "pid " + strconv.Itoa(h.PID)
	if h.Host != "" {
		s += " on host " + h.Host
	}
	if !h.Started.IsZero() {
		s += ", started " + h.Started.UTC().Format("2006-01-02 15:04:05 MST")
	}
	return s
}

// StateInUseError is the refusal of a server whose state folder another
// server holds.
type StateInUseError struct {
	Dir    string      // the state folder
	Holder StateHolder // the server holding it, from the lock file
}

func (e *StateInUseError) Error() string {
	return fmt.Sprintf("the state folder %s is in use by another appserver (%s); stop it first or give this one another state folder (--state)",
		e.Dir, e.Holder)
}

// stateLock is a server's hold on its state folder; Close releases it.
type stateLock struct {
	f    *os.File
	path string
}

// lockState takes the lock on the state folder dir, making the folder if
// need be, and records this process in the lock file. It fails at once,
// with a *StateInUseError naming the holder, when another server (in this
// process or another) holds it.
func lockState(dir string) (*stateLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("making the state folder: %w", err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the state folder's lock file: %w", err)
	}
	held, err := filelock.TryLock(f)
	var holder StateHolder
	if err == nil && !held {
		holder = readHolder(path)
		// A holder that has exited has let go, or will in a moment:
		// Windows may release a dead process's locks a little late, and
		// the server a self-update starts comes right after the old one's
		// exit. A live holder is refused at once.
		for deadline := time.Now().Add(deadHolderGrace); err == nil && !held && holder.PID != 0 &&
			holder.PID != os.Getpid() && !handover.ProcessAlive(holder.PID) && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			if held, err = filelock.TryLock(f); err == nil && !held {
				holder = readHolder(path) // another server may have taken it
			}
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	if !held {
		f.Close()
		return nil, &StateInUseError{Dir: dir, Holder: holder}
	}
	if err := writeHolder(f); err != nil {
		f.Close() // releases the lock
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return &stateLock{f: f, path: path}, nil
}

// Close releases the lock. The file stays: removing it would let a server
// that opened it just before lock a file no longer in the folder.
func (l *stateLock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	l.f.Truncate(0) // the holder is gone; a stale record would mislead
	err := l.f.Close()
	l.f = nil
	return err
}

// writeHolder records this process in the locked file f.
func writeHolder(f *os.File) error {
	host, _ := os.Hostname()
	exe, _ := os.Executable()
	var b bytes.Buffer
	fmt.Fprintf(&b, "pid=%d\nhost=%s\nstarted=%s\nprogram=%s\n", os.Getpid(), oneLine(host),
		time.Now().UTC().Format(time.RFC3339), oneLine(exe))
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.WriteAt(b.Bytes(), 0); err != nil {
		return err
	}
	return f.Sync()
}

func oneLine(s string) string { return strings.NewReplacer("\n", " ", "\r", " ").Replace(s) }

// readHolder reads the lock file at path. A holder writes it just after it
// takes the lock, so an empty file is given a moment to fill.
func readHolder(path string) StateHolder {
	var h StateHolder
	for range 20 {
		if h = parseHolder(path); h.PID != 0 {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	return h
}

func parseHolder(path string) StateHolder {
	var h StateHolder
	data, err := os.ReadFile(path)
	if err != nil {
		return h
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "pid":
			h.PID, _ = strconv.Atoi(v)
		case "host":
			h.Host = v
		case "program":
			h.Program = v
		case "started":
			h.Started, _ = time.Parse(time.RFC3339, v)
		}
	}
	return h
}

// StateHolderOf reports whether a server holds the state folder dir, and
// which, without taking it for long: it takes the lock and releases it at
// once when no server holds it. It is for read-only commands
// (--check), which run beside a server.
func StateHolderOf(dir string) (holder StateHolder, inUse bool, err error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return StateHolder{}, false, nil
	}
	if err != nil {
		return StateHolder{}, false, fmt.Errorf("opening the state folder's lock file: %w", err)
	}
	defer f.Close()
	held, err := filelock.TryLock(f)
	if err != nil {
		return StateHolder{}, false, fmt.Errorf("locking %s: %w", path, err)
	}
	if held {
		return StateHolder{}, false, nil // Close releases it
	}
	return readHolder(path), true, nil
}
