package journal

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/state"
	"github.com/zeebo/blake3"
)

// benchState is a state of n files as benchInstall records them.
func benchState(n int) *state.State {
	mt := time.Date(2024, 1, 15, 10, 0, 0, 0, time.UTC).UnixNano()
	st := &state.State{Version: state.Version, ClientID: "bench", Build: "7.00.240501A", OS: "windows", Server: "erp:1234",
		LastSync: time.Now().UTC(), LastOutcome: "updated", Files: make(map[string]state.FileState, n)}
	for i := range n {
		rel := fmt.Sprintf("d%03d/sub%d/file%05d.dll", i%125, i%3, i)
		h := blake3.Sum256([]byte(rel))
		st.Files[rel] = state.FileState{Size: int64(len(rel)), MtimeNs: mt, Hash: hex.EncodeToString(h[:]), ServerMtimeNs: mt}
	}
	return st
}

// BenchmarkWriteJournal writes the journal of an update of 1,000 of
// 20,000 files (the new state whole, and the previous one), as the switch
// does before its first rename, after the file system sync (not
// counted).
func BenchmarkWriteJournal(b *testing.B) {
	// The journal keeps the current state file; the files themselves are
	// not read.
	dir := b.TempDir()
	if err := os.Mkdir(filepath.Join(dir, install.MetaDir), 0o755); err != nil {
		b.Fatal(err)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	d := &install.Disk{Root: r}
	st := benchState(20000)
	if err := st.Save(d); err != nil {
		b.Fatal(err)
	}
	j := &Journal{State: st, Hashes: map[string]string{}}
	for name, k := range st.Files {
		if len(j.Install) == 1000 {
			break
		}
		j.Install = append(j.Install, name)
		j.Hashes[name] = k.Hash
	}
	b.ReportAllocs()
	for b.Loop() {
		j.stateFiles = nil // encoded each time, as each sync does
		if err := saveJournal(d, j); err != nil {
			b.Fatal(err)
		}
	}
}
