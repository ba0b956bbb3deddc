package state

import (
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/zeebo/blake3"
)

// benchState is a state of n files as benchInstall records them.
func benchState(n int) *State {
	mt := time.Date(2024, 1, 15, 10, 0, 0, 0, time.UTC).UnixNano()
	st := &State{Version: Version, ClientID: "bench", Build: "7.00.240501A", OS: "windows", Server: "erp:1234",
		LastSync: time.Now().UTC(), LastOutcome: "updated", Files: make(map[string]FileState, n)}
	for i := range n {
		rel := fmt.Sprintf("d%03d/sub%d/file%05d.dll", i%125, i%3, i)
		h := blake3.Sum256([]byte(rel))
		st.Files[rel] = FileState{Size: int64(len(rel)), MtimeNs: mt, Hash: hex.EncodeToString(h[:]), ServerMtimeNs: mt}
	}
	return st
}

// BenchmarkUnmarshalState decodes the state of 20,000 files, which every
// sync, the no-op check included, reads first.
func BenchmarkUnmarshalState(b *testing.B) {
	data := Marshal(benchState(20000))
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Unmarshal(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMarshalState encodes the state of 20,000 files, as every sync
// that changes something does.
func BenchmarkMarshalState(b *testing.B) {
	st := benchState(20000)
	b.ReportAllocs()
	for b.Loop() {
		Marshal(st)
	}
}
