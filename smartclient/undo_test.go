package smartclient

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/state"
	"github.com/zeebo/blake3"
)

// TestJournalOfVersion3WithOutrightReplacement: builds from 1852cf4 up to
// 4f61980 wrote journals of version 3 but replaced files the snapshot held
// outright (play used keptInSnapshot alone). Undone by this client, such a
// switch gives the old release back, a and b included.
func TestJournalOfVersion3WithOutrightReplacement(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows moves every file aside")
	}
	dir := makeSwitchFixture(t)
	d := openDisk(t, dir)
	j := backedUpJournal3(t, d) // no Outright list, as 1852cf4 wrote it
	// 1852cf4's play: replace or remove outright whatever keptInSnapshot says.
	j.outright = map[string]bool{}
	for _, p := range append(append([]string{}, j.Remove...), j.Install...) {
		j.outright[p] = keptInSnapshot(d, j, p)
	}
	playUntilRenameOf(t, d, j, "lib/c")
	// A staged file gone: recovery (by the new client) must undo.
	if err := os.Remove(filepath.Join(dir, filepath.FromSlash(install.StagingDir), "lib", "c")); err != nil {
		t.Fatal(err)
	}
	if err := recoverJournal(openDisk(t, dir), discard); err != nil {
		t.Fatal(err)
	}
	if which := checkInvariant(t, dir, "after recovery"); which != "old" {
		t.Errorf("install is the %s release, want old", which)
	}
}

// TestRestoreRecordsDiskMtime: restore stages a hard link to the backup's
// file, whose mtime need not be the one the backup's state records (a
// later time fix changed the inode the backup shares); the restored state
// records the mtime on disk.
func TestRestoreRecordsDiskMtime(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"f": "release C"})
	bk := filepath.Join(dir, backupName(1))
	writeFiles(t, bk, map[string]string{"f": "release A"})
	m1 := time.Unix(1_600_000_000, 111_111_111)
	m2 := time.Unix(1_650_000_000, 222_222_222) // a touch step of release B on the shared inode
	if err := os.Chtimes(filepath.Join(bk, "f"), m2, m2); err != nil {
		t.Fatal(err)
	}
	sum := func(s string) string { h := blake3.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	fi, _ := os.Lstat(filepath.Join(dir, "f"))
	cur := &state.State{Version: state.Version, ClientID: "test", Build: "C", Files: map[string]state.FileState{
		"f": {Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano(), ServerMtimeNs: fi.ModTime().UnixNano(), Hash: sum("release C")}}}
	if err := cur.Save(openDisk(t, dir)); err != nil {
		t.Fatal(err)
	}
	old := &state.State{Version: state.Version, ClientID: "test", Build: "A", Files: map[string]state.FileState{
		"f": {Size: 9, MtimeNs: m1.UnixNano(), ServerMtimeNs: m1.UnixNano(), Hash: sum("release A")}}}
	if err := os.MkdirAll(filepath.Join(bk, install.MetaDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := old.Save(openDisk(t, bk)); err != nil {
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
