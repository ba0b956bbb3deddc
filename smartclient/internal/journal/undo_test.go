package journal

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/installtest"
)

// TestJournalOfVersion3WithOutrightReplacement: builds from 1852cf4 up to
// 4f61980 wrote journals of version 3 but replaced files the snapshot held
// outright (play used keptInSnapshot alone). Undone by this client, such a
// switch gives the old release back, a and b included.
func TestJournalOfVersion3WithOutrightReplacement(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows moves every file aside")
	}
	dir := installtest.SwitchFixture(t)
	d := installtest.OpenDisk(t, dir)
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
	if err := Recover(installtest.OpenDisk(t, dir), discard); err != nil {
		t.Fatal(err)
	}
	if which := checkInvariant(t, dir, "after recovery"); which != "old" {
		t.Errorf("install is the %s release, want old", which)
	}
}
