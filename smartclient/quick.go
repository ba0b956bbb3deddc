package smartclient

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/state"
)

// The no-op check. A client whose files are all as its state records them,
// and whose state names the digest of the manifest they came from, sends
// that digest with GetManifest; a server whose manifest has not changed
// answers UpToDate, and the check costs one lstat per file and one small
// round trip. Nothing is written but the time of the check (lastCheckFile).

// intact reports whether every file the state records is still as the
// client left it (see state.Check).
func intact(ctx context.Context, root *os.Root, st *state.State) bool {
	return state.Check(ctx, root, st.Encoded()).OK
}

// lastCheckFile records the last sync that found nothing to do, so that
// such a sync does not rewrite the whole state. It is informational:
// 'status' shows it, nothing depends on it, and a damaged one is ignored.
const lastCheckFile = install.MetaDir + "/last-check.json"

type lastCheck struct {
	When   time.Time `json:"when"`
	Server string    `json:"server"`
	Build  string    `json:"build"`
}

// recordCheck writes lastCheckFile by rename, without a sync: losing it in
// a power cut loses nothing that matters.
func recordCheck(root *os.Root, c lastCheck) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	tmp := lastCheckFile + ".tmp"
	if err := root.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return root.Rename(tmp, lastCheckFile)
}

func readCheck(root *os.Root) (lastCheck, bool) {
	var c lastCheck
	data, err := root.ReadFile(lastCheckFile)
	if err != nil || json.Unmarshal(data, &c) != nil {
		return lastCheck{}, false
	}
	return c, true
}

// Compression choices for Options.Compress.
const (
	CompressAuto = "auto" // none on a loopback connection, zstd on any other
	CompressYes  = "yes"
	CompressNo   = "no"
)

// wantRaw decides whether to ask for file data without compression. On
// loopback the bytes cost nothing to move and compressing them costs the
// server's CPU and the client's time (measured in BENCHMARKS.md); on a
// real link zstd at its fastest level saves about a quarter of the bytes
// of a typical installation.
func wantRaw(choice string, remote net.Addr) bool {
	switch choice {
	case CompressYes:
		return false
	case CompressNo:
		return true
	}
	a, ok := remote.(*net.TCPAddr)
	return ok && a.IP.IsLoopback()
}
