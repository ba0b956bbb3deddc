package smartclient

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest/manifesttest"
	"github.com/erpupdate/smartsync/smartclient/internal/state"
	"github.com/zeebo/blake3"
)

// benchInstall makes an install of n small files in 125 folders with the
// state a sync would have left, and the manifest it came from.
func benchInstall(b *testing.B, n int) (string, *manifest.Manifest) {
	b.Helper()
	dir := b.TempDir()
	mt := time.Date(2024, 1, 15, 10, 0, 0, 0, time.UTC)
	st := &state.State{Version: state.Version, ClientID: "bench", Build: "7.00.240501A", Files: map[string]state.FileState{}}
	var files []manifest.File
	for i := range n {
		rel := fmt.Sprintf("d%03d/sub%d/file%05d.dll", i%125, i%3, i)
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(rel), 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.Chtimes(p, mt, mt); err != nil {
			b.Fatal(err)
		}
		h := blake3.Sum256([]byte(rel))
		st.Files[rel] = state.FileState{Size: int64(len(rel)), MtimeNs: mt.UnixNano(), Hash: hex.EncodeToString(h[:]), ServerMtimeNs: mt.UnixNano()}
		files = append(files, manifest.File{Path: rel, Size: int64(len(rel)), MtimeNs: mt.UnixNano(), Mode: 0o644, Hash: h})
	}
	// The server sends its manifest sorted by path.
	slices.SortFunc(files, func(a, b manifest.File) int { return strings.Compare(a.Path, b.Path) })
	man := manifesttest.New(b, st.Build, files...)
	r, err := os.OpenRoot(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	if err := os.Mkdir(filepath.Join(dir, install.MetaDir), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := st.Save(&install.Disk{Root: r}); err != nil {
		b.Fatal(err)
	}
	return dir, man
}

// BenchmarkNoopCheck is the client's side of a no-op sync of 20,000
// files: read the state and look at every file once.
func BenchmarkNoopCheck(b *testing.B) {
	dir, _ := benchInstall(b, 20000)
	r, err := os.OpenRoot(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	b.ReportAllocs()
	for b.Loop() {
		// As Sync reads it: the files stay encoded.
		st, err := state.Read(dir)
		if err != nil {
			b.Fatal(err)
		}
		if !intact(context.Background(), r, st) {
			b.Fatal("install not intact")
		}
	}
}

// BenchmarkPlanNoop plans a sync of 20,000 files that are all current,
// as a client without a usable manifest digest does.
func BenchmarkPlanNoop(b *testing.B) {
	dir, man := benchInstall(b, 20000)
	r, err := os.OpenRoot(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	st, err := state.Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	b.ReportAllocs()
	for b.Loop() {
		p, err := makePlan(r, st, man, false, nil, log)
		if err != nil {
			b.Fatal(err)
		}
		if !p.empty() || len(p.current) != man.Len() {
			b.Fatalf("plan of a current install: %d to fetch, %d current", len(p.fetch), len(p.current))
		}
	}
}

func BenchmarkLoadState(b *testing.B) {
	dir, _ := benchInstall(b, 20000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := state.Load(dir); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIntact(b *testing.B) {
	dir, _ := benchInstall(b, 20000)
	r, err := os.OpenRoot(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	st, err := state.Read(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !intact(context.Background(), r, st) {
			b.Fatal("install not intact")
		}
	}
}
