package smartclient

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/manifest"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest/manifesttest"
	"github.com/erpupdate/smartsync/smartclient/internal/state"
)

// TestPlan checks each decision of the plan against a real folder and a
// state, including mtimes that the file system rounded (NTFS keeps 100 ns,
// FAT 2 s): what the state recorded from the disk counts, not the
// server's nanoseconds.
func TestPlan(t *testing.T) {
	const (
		srvMtime     = int64(1714521600123456789)
		rounded      = int64(1714521600123456700) // as NTFS would keep it
		otherSrvTime = int64(1714521700000000000)
	)
	// An mtime the install's file system keeps as it is: on Windows
	// (NTFS keeps 100 ns) a whole number of 100 ns.
	exact := srvMtime
	if runtime.GOOS == "windows" {
		exact = rounded
	}
	hashA, hashB := [32]byte{1}, [32]byte{2}
	hexA := "01" + strings.Repeat("00", 31)
	tests := []struct {
		name   string
		local  string // "" = missing
		mtime  int64
		state  *state.FileState
		remote manifest.File
		full   bool
		want   string
	}{
		{"missing", "", 0, nil, manifest.File{Size: 3, MtimeNs: srvMtime, Hash: hashA}, false, "fetch"},
		{"same size and mtime", "abc", exact, nil, manifest.File{Size: 3, MtimeNs: exact, Hash: hashA}, false, "current"},
		{"rounded mtime, known from state", "abc", rounded, &state.FileState{Size: 3, MtimeNs: rounded, Hash: hexA, ServerMtimeNs: srvMtime}, manifest.File{Size: 3, MtimeNs: srvMtime, Hash: hashA}, false, "current"},
		{"server retimed, same hash", "abc", rounded, &state.FileState{Size: 3, MtimeNs: rounded, Hash: hexA, ServerMtimeNs: srvMtime}, manifest.File{Size: 3, MtimeNs: otherSrvTime, Hash: hashA}, false, "touch"},
		{"server changed content", "abc", rounded, &state.FileState{Size: 3, MtimeNs: rounded, Hash: hexA, ServerMtimeNs: srvMtime}, manifest.File{Size: 3, MtimeNs: otherSrvTime, Hash: hashB}, false, "fetch"},
		{"user changed the file", "xyz!", srvMtime + 5, &state.FileState{Size: 3, MtimeNs: rounded, Hash: hexA, ServerMtimeNs: srvMtime}, manifest.File{Size: 3, MtimeNs: srvMtime, Hash: hashA}, false, "fetch"},
		{"unknown file, other mtime", "abc", rounded, nil, manifest.File{Size: 3, MtimeNs: srvMtime, Hash: hashA}, false, "fetch"},
		{"full update fetches all", "abc", exact, nil, manifest.File{Size: 3, MtimeNs: exact, Hash: hashA}, true, "fetch"},
		{"preserved and present", "mine", 1, nil, manifest.File{Size: 3, MtimeNs: srvMtime, Hash: hashA, Preserve: true}, false, "kept"},
		{"preserved, full update", "mine", 1, nil, manifest.File{Size: 3, MtimeNs: srvMtime, Hash: hashA, Preserve: true}, true, "fetch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			root, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			if tc.local != "" {
				p := filepath.Join(dir, "f.dll")
				if err := os.WriteFile(p, []byte(tc.local), 0o644); err != nil {
					t.Fatal(err)
				}
				mt := time.Unix(0, tc.mtime)
				if err := os.Chtimes(p, mt, mt); err != nil {
					t.Fatal(err)
				}
			}
			st := &state.State{Files: map[string]state.FileState{}}
			if tc.state != nil {
				st.Files["f.dll"] = *tc.state
			}
			tc.remote.Path = "f.dll"
			p, err := makePlan(root, st, manifesttest.New(t, "7.00.240501A", tc.remote), tc.full, nil, discard)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for name, n := range map[string]int{"fetch": len(p.fetch), "touch": len(p.touch), "current": len(p.current), "kept": len(p.kept)} {
				for range n {
					got = append(got, name)
				}
			}
			if len(got) != 1 || got[0] != tc.want {
				t.Fatalf("plan says %v, want [%s]", got, tc.want)
			}
		})
	}
}

// TestPlanRemovals: only files the client installed, unchanged since, and
// no longer listed under any letter case are removed.
func TestPlanRemovals(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	st := &state.State{Files: map[string]state.FileState{}}
	for name, edited := range map[string]bool{"gone.dll": false, "edited.ini": true, "foo.dll": false, "kept.ini": false} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(p)
		k := state.FileState{Size: 1, MtimeNs: fi.ModTime().UnixNano(), Preserve: name == "kept.ini"}
		if edited {
			k.Size = 99
		}
		st.Files[name] = k
	}
	st.Files["vanished.dll"] = state.FileState{Size: 1}
	// The server renamed foo.dll to Foo.dll: one file on Windows and macOS.
	man := manifesttest.New(t, "7.00.240501A", manifest.File{Path: "Foo.dll", Size: 1})
	p, err := makePlan(root, st, man, false, nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(p.remove, ",") != "gone.dll" {
		t.Fatalf("remove %v, want only gone.dll", p.remove)
	}
}

// TestPlanKnownFileWithOtherHash: a file the client installed and nobody
// touched since, whose recorded hash differs from the manifest's, has
// other content than the server's and is fetched, even when its size and
// mtime are the manifest's. The size and mtime check stands in for a hash
// only when the state does not know the file.
func TestPlanKnownFileWithOtherHash(t *testing.T) {
	// A whole number of 100 ns, which NTFS keeps as it is: the state
	// matches the disk everywhere, and only the hash tells.
	const mtime = int64(1714521600123456700)
	hashA, hashB := [32]byte{1}, [32]byte{2}
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	p := filepath.Join(dir, "f.dll")
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, time.Unix(0, mtime), time.Unix(0, mtime)); err != nil {
		t.Fatal(err)
	}
	// Installed by an earlier sync with hashA, untouched since.
	st := &state.State{Files: map[string]state.FileState{
		"f.dll": {Size: 3, MtimeNs: mtime, Hash: hex.EncodeToString(hashA[:]), ServerMtimeNs: mtime},
	}}
	man := manifesttest.New(t, "7.00.240501A", manifest.File{Path: "f.dll", Size: 3, MtimeNs: mtime, Hash: hashB})
	pl, err := makePlan(root, st, man, false, nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.fetch) != 1 {
		t.Errorf("plan fetches %v, current %v, touches %v; want f.dll fetched", pl.fetch, pl.current, pl.touch)
	}
}
