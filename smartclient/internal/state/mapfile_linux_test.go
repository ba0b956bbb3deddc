//go:build linux

package state

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/erpupdate/smartsync/smartclient/internal/install"
)

// TestMappedStateCutShort: a state file truncated by another program
// while the client has it mapped is an error that says the state is
// damaged, not a crash of the client on a bus error.
func TestMappedStateCutShort(t *testing.T) {
	dir := t.TempDir()
	files := map[string]FileState{}
	for _, name := range []string{"a.txt", "b/c.txt"} {
		files[name] = writeRecorded(t, dir, name, name)
	}
	if err := os.Mkdir(filepath.Join(dir, install.MetaDir), 0o755); err != nil {
		t.Fatal(err)
	}
	d := openDisk(t, dir)
	if err := (&State{Version: Version, ClientID: "c", Files: files}).Save(d); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, filepath.FromSlash(File))
	data, unmap, err := install.MapFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer unmap()
	if st, err := parseMapped(data); err != nil || st.enc.n != len(files) {
		t.Fatalf("the mapped state: %v, %v; want %d files", st, err, len(files))
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	st, err := parseMapped(data)
	if !errors.Is(err, errStateDamaged) {
		t.Fatalf("after the file was cut: %v, %v; want the state damaged", st, err)
	}
	t.Log(err)
}
