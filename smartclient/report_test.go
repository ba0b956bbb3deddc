package smartclient_test

import (
	"database/sql"
	"time"

	_ "modernc.org/sqlite"

	"bytes"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/smartclient/internal/hostiletest"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/zeebo/blake3"
)

// TestReportOfAFullDisk: a full disk in the middle of a transfer that the
// server is still sending fails the sync, and its report reaches the
// server on a session of its own, logged at WARN with the step, the
// reason and the workstation; nothing is kept for later, since the server
// took it.
func TestReportOfAFullDisk(t *testing.T) {
	s := newServer(t, defaultConf)
	dir := t.TempDir()
	named := func(o *smartclient.Options) { o.Yes, o.Host, o.User = true, "caixa-07", "maria" }
	mustSync(t, s, dir, named)
	big := make([]byte, 24<<20)
	rand.NewChaCha8([32]byte{4}).Read(big)
	s.write("linux", "lib/big.so", string(big))
	restore := smartclient.SetWriteFault(func(name string, off int64, n int) (int, error) {
		if strings.HasSuffix(name, "/lib/big.so") && off <= 1<<20 && 1<<20 < off+int64(n) {
			return int(1<<20 - off), syscall.ENOSPC
		}
		return 0, nil
	})
	_, err := sync1(t, s, dir, named)
	restore()
	if err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("sync on a full disk: %v", err)
	}
	s.log.waitFor(t, `msg="sync failed"`)
	var line string
	for l := range strings.Lines(s.log.String()) {
		if strings.Contains(l, `msg="sync failed"`) {
			line = l
		}
	}
	for _, want := range []string{"level=WARN", "step=fetch", "no space left on device", "lib/big.so", "host=caixa-07", "user=maria", "os=linux"} {
		if !strings.Contains(line, want) {
			t.Errorf("the server's line of the failure lacks %q: %s", want, line)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".smartclient", "pending-reports.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a report the server took is kept for later: %v", err)
	}
	// And the server's records, the real SQLite file, hold it.
	outcome, step, reason := lastRecorded(t, s.state, "caixa-07")
	if outcome != "failed" || step != "fetch" || !strings.Contains(reason, "no space left on device") {
		t.Errorf("the server recorded %s at %q: %q; want the failure at fetch", outcome, step, reason)
	}
}

// lastRecorded reads the newest sync of host from the server's client
// records (STATE/clients.db), as any sqlite3 shell would, waiting up to
// 10 s for the server's writer.
func lastRecorded(t *testing.T, state, host string) (outcome, step, reason string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(state, "clients.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var last error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		last = db.QueryRow("SELECT outcome, step, reason FROM syncs WHERE host = ? ORDER BY at DESC, id DESC LIMIT 1", host).Scan(&outcome, &step, &reason)
		if last == nil && outcome != "updated" {
			return outcome, step, reason
		}
	}
	t.Fatalf("no failure of %s in the server's records: %v", host, last)
	return
}

// TestReportOfAFileThatFailsItsCheck: a file whose content is not the
// one the manifest names fails the sync at the step "verify", and the
// report says which file.
func TestReportOfAFileThatFailsItsCheck(t *testing.T) {
	files := liarRelease()
	last := files[2].Content
	saw, _ := hostileRun(t, hostiletest.Lie{Name: "hash mismatch", Want: smartclient.ErrVerify, WantMsg: []string{"data/last.dat"},
		Send: func(s *hostiletest.Stream) {
			s.File(0)
			s.File(1)
			forged := bytes.ToUpper(last)
			s.Msg(syncproto.FileStart{Index: 2, Size: uint64(len(forged))})
			s.Data(forged)
			s.Msg(syncproto.FileEnd{Hash: blake3.Sum256(last)})
		}})
	r := saw.Report
	if r == nil || r.Outcome != syncproto.OutcomeFailed || r.Step != "verify" || !strings.Contains(r.Message, "data/last.dat") || r.At != 0 || r.Duration == 0 {
		t.Errorf("report %+v; want the failure at verify, naming the file", r)
	}
}
