package smartclient

import (
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/backup"
	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/installtest"
	"github.com/erpupdate/smartsync/smartclient/internal/journal"
	"github.com/erpupdate/smartsync/smartclient/internal/state"
	"github.com/zeebo/blake3"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestCrashChild is the child's side of TestCrashDuringRestore (see
// installtest's crash children); it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	dir, action, at, ok := installtest.ChildEnv()
	if !ok {
		t.Skip("runs only as the child of TestCrashDuringRestore")
	}
	crash := installtest.CrashAt(at)
	var err error
	switch action {
	case "recover":
		d := installtest.OpenDisk(t, dir)
		d.Faults.Op = crash
		err = journal.Recover(d, discard)
	case "restore":
		testFaults.Op = crash // for Restore's own disk
		_, err = Restore(context.Background(), dir, 3, discard)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// restored is the install after restoring bkp_remote.003 of the fixture:
// the backup's files over the old release (the client installed none of
// the old release's files, so it removes none).
func restored() map[string]string {
	m := maps.Clone(installtest.OldRelease)
	maps.Copy(m, installtest.OlderOnes[2])
	return m
}

// TestCrashDuringRestore kills a restore at each of its operations, and
// recovery up to three times: the install is then the one restore
// replaced or the backup, and every backup is complete.
func TestCrashDuringRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process per crash point")
	}
	count := func() int {
		dir := installtest.SwitchFixture(t)
		os.RemoveAll(filepath.Join(dir, filepath.FromSlash(install.StagingDir)))
		n := 0
		testFaults.Op = func(string, string) error { n++; return nil }
		defer func() { testFaults.Op = nil }()
		if _, err := Restore(t.Context(), dir, 3, discard); err != nil {
			t.Fatal(err)
		}
		if got := installtest.ReadTree(t, dir); !maps.Equal(got, restored()) {
			t.Fatalf("restore gave %v, want %v", got, restored())
		}
		return n
	}()
	seen := map[string]int{}
	for k := 1; k <= count; k++ {
		dir := installtest.SwitchFixture(t)
		os.RemoveAll(filepath.Join(dir, filepath.FromSlash(install.StagingDir)))
		if !installtest.CrashChild(t, dir, "restore", k) {
			t.Fatalf("restore finished before operation %d of %d", k, count)
		}
		for i := range k % 4 {
			installtest.CrashChild(t, dir, "recover", 1+(k+i)%3)
		}
		if err := journal.Recover(installtest.OpenDisk(t, dir), discard); err != nil {
			t.Fatalf("crash at operation %d: recovery: %v", k, err)
		}
		got := installtest.ReadTree(t, dir)
		switch {
		case maps.Equal(got, installtest.OldRelease):
			seen["before"]++
		case maps.Equal(got, restored()):
			seen["restored"]++
		default:
			t.Fatalf("crash at operation %d: the install is %v", k, got)
		}
		backups, _ := filepath.Glob(filepath.Join(dir, "bkp_remote.*"))
		for _, b := range backups {
			tree := installtest.ReadTree(t, b)
			if !maps.Equal(tree, installtest.OldRelease) && !slices.ContainsFunc(installtest.OlderOnes, func(o map[string]string) bool { return maps.Equal(tree, o) }) {
				t.Errorf("crash at operation %d: %s is not complete: %v", k, filepath.Base(b), tree)
			}
		}
	}
	if seen["before"] == 0 || seen["restored"] == 0 {
		t.Errorf("outcomes %v: expected both", seen)
	}
	t.Logf("%d crash points in a restore; after recovery: %v", count, seen)
}

// TestRestoreRecordsDiskMtime: restore stages a hard link to the backup's
// file, whose mtime need not be the one the backup's state records (a
// later time fix changed the inode the backup shares); the restored state
// records the mtime on disk.
func TestRestoreRecordsDiskMtime(t *testing.T) {
	dir := t.TempDir()
	installtest.WriteFiles(t, dir, map[string]string{"f": "release C"})
	bk := filepath.Join(dir, backup.Name(1))
	installtest.WriteFiles(t, bk, map[string]string{"f": "release A"})
	m1 := time.Unix(1_600_000_000, 111_111_111)
	m2 := time.Unix(1_650_000_000, 222_222_222) // a touch step of release B on the shared inode
	if err := os.Chtimes(filepath.Join(bk, "f"), m2, m2); err != nil {
		t.Fatal(err)
	}
	sum := func(s string) string { h := blake3.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	fi, _ := os.Lstat(filepath.Join(dir, "f"))
	cur := &state.State{Version: state.Version, ClientID: "test", Build: "C", Files: map[string]state.FileState{
		"f": {Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano(), ServerMtimeNs: fi.ModTime().UnixNano(), Hash: sum("release C")}}}
	if err := cur.Save(installtest.OpenDisk(t, dir)); err != nil {
		t.Fatal(err)
	}
	old := &state.State{Version: state.Version, ClientID: "test", Build: "A", Files: map[string]state.FileState{
		"f": {Size: 9, MtimeNs: m1.UnixNano(), ServerMtimeNs: m1.UnixNano(), Hash: sum("release A")}}}
	if err := os.MkdirAll(filepath.Join(bk, install.MetaDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := old.Save(installtest.OpenDisk(t, bk)); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(t.Context(), dir, 1, discard); err != nil {
		t.Fatal(err)
	}
	st, err := state.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ = os.Lstat(filepath.Join(dir, "f"))
	if got := st.Files["f"].MtimeNs; got != fi.ModTime().UnixNano() {
		t.Errorf("state records f's mtime %v, the disk has %v", time.Unix(0, got), fi.ModTime())
	}
}
