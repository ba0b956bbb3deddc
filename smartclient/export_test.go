package smartclient

import (
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/state"
)

// SetWriteFault lets the black-box tests make a staged write fail; see
// install.Faults.Write. It returns a function that restores the previous
// hook.
func SetWriteFault(f func(name string, off int64, n int) (int, error)) func() {
	saved := testFaults.Write
	testFaults.Write = f
	return func() { testFaults.Write = saved }
}

// SetFaultHook lets the black-box tests see, or fail, the file system
// operations of the client (see install.Faults.Op) until the test ends.
func SetFaultHook(t interface{ Cleanup(func()) }, f func(op, name string) error) {
	saved := testFaults.Op
	testFaults.Op = f
	t.Cleanup(func() { testFaults.Op = saved })
}

// DowngradeState rewrites the state file of dir, an install or a backup
// folder, as the JSON state.json of the builds before the binary one.
func DowngradeState(dir string) error {
	bin := filepath.Join(dir, filepath.FromSlash(state.File))
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	st, err := state.Unmarshal(data)
	if err != nil {
		return err
	}
	js, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(state.LegacyFile)), js, 0o644); err != nil {
		return err
	}
	return os.Remove(bin)
}

// ReadState reads the state of dir, an install folder.
func ReadState(dir string) (*state.State, error) { return state.Load(dir) }

// RetryWait is retryWait, for the test of its bounds.
var RetryWait = retryWait

// TransportFailure is transportFailure, for the table of what is retried.
var TransportFailure = transportFailure

// ResetErrno is the system's word for a connection the peer reset:
// ECONNRESET, or Winsock's WSAECONNRESET on Windows.
var ResetErrno = lostErrnos[0]

// HostUnreachableErrno is the system's word for a host no route leads to
// (EHOSTUNREACH, WSAEHOSTUNREACH).
var HostUnreachableErrno = unreachableErrnos[1]

// FreeSpace lets the black-box tests in package smartclient_test size a
// manifest that cannot fit on the disk they run on.
var FreeSpace = install.FreeSpace
