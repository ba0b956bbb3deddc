package smartclient

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/state"
	"github.com/erpupdate/smartsync/syncproto"
)

func encodeManifest(t testing.TB, paths ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := syncproto.NewWriter(&b)
	if err := w.Write(syncproto.ManifestHeader{Build: "7.00.240501A", Count: uint32(len(paths)), TotalBytes: uint64(len(paths))}); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if err := w.Write(syncproto.ManifestEntry{Path: p, Size: 1, MtimeNs: 1, Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestReadManifestRejects(t *testing.T) {
	tests := []struct {
		name  string
		paths []string
	}{
		{"absolute", []string{"/etc/passwd"}},
		{"dot dot", []string{"lib/../../x"}},
		{"backslash", []string{`lib\x.dll`}},
		{"drive letter", []string{"C:/x"}},
		{"empty element", []string{"lib//x"}},
		{"dot", []string{"."}},
		{"empty", []string{""}},
		{"client state", []string{".smartclient/state.bin"}},
		{"backup folder", []string{"BKP_REMOTE.001/x"}},
		{"duplicate", []string{"a.dll", "a.dll"}},
		{"case duplicate", []string{"App.exe", "app.EXE"}},
		{"file and folder", []string{"lib", "lib/x.so"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readManifest(syncproto.NewReader(bytes.NewReader(encodeManifest(t, tc.paths...))))
			if !errors.Is(err, ErrBadManifest) {
				t.Fatalf("got %v, want ErrBadManifest", err)
			}
		})
	}
	man, err := readManifest(syncproto.NewReader(bytes.NewReader(encodeManifest(t, "smartclient", "lib/a.so", "lib/b.so"))))
	if err != nil || len(man.Files) != 3 || man.Total != 3 {
		t.Fatalf("good manifest: %+v, %v", man, err)
	}
}

// FuzzReadManifest checks that no manifest from the wire is accepted with
// a path the client would not write, and that nothing panics.
func FuzzReadManifest(f *testing.F) {
	f.Add(encodeManifest(f, "smartclient", "lib/a.so"))
	f.Add(encodeManifest(f, "../x"))
	f.Add(encodeManifest(f, "a", "A"))
	f.Fuzz(func(t *testing.T, data []byte) {
		man, err := readManifest(syncproto.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		var total int64
		for _, file := range man.Files {
			if err := checkPath(file.Path); err != nil {
				t.Fatalf("accepted %q: %v", file.Path, err)
			}
			total += file.Size
		}
		if total != man.Total {
			t.Fatalf("total %d, files add up to %d", man.Total, total)
		}
	})
}

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
	hashA, hashB := [32]byte{1}, [32]byte{2}
	hexA := "01" + strings.Repeat("00", 31)
	tests := []struct {
		name   string
		local  string // "" = missing
		mtime  int64
		state  *state.FileState
		remote remoteFile
		full   bool
		want   string
	}{
		{"missing", "", 0, nil, remoteFile{Size: 3, MtimeNs: srvMtime, Hash: hashA}, false, "fetch"},
		{"same size and mtime", "abc", srvMtime, nil, remoteFile{Size: 3, MtimeNs: srvMtime, Hash: hashA}, false, "current"},
		{"rounded mtime, known from state", "abc", rounded, &state.FileState{Size: 3, MtimeNs: rounded, Hash: hexA, ServerMtimeNs: srvMtime}, remoteFile{Size: 3, MtimeNs: srvMtime, Hash: hashA}, false, "current"},
		{"server retimed, same hash", "abc", rounded, &state.FileState{Size: 3, MtimeNs: rounded, Hash: hexA, ServerMtimeNs: srvMtime}, remoteFile{Size: 3, MtimeNs: otherSrvTime, Hash: hashA}, false, "touch"},
		{"server changed content", "abc", rounded, &state.FileState{Size: 3, MtimeNs: rounded, Hash: hexA, ServerMtimeNs: srvMtime}, remoteFile{Size: 3, MtimeNs: otherSrvTime, Hash: hashB}, false, "fetch"},
		{"user changed the file", "xyz!", srvMtime + 5, &state.FileState{Size: 3, MtimeNs: rounded, Hash: hexA, ServerMtimeNs: srvMtime}, remoteFile{Size: 3, MtimeNs: srvMtime, Hash: hashA}, false, "fetch"},
		{"unknown file, other mtime", "abc", rounded, nil, remoteFile{Size: 3, MtimeNs: srvMtime, Hash: hashA}, false, "fetch"},
		{"full update fetches all", "abc", srvMtime, nil, remoteFile{Size: 3, MtimeNs: srvMtime, Hash: hashA}, true, "fetch"},
		{"preserved and present", "mine", 1, nil, remoteFile{Size: 3, MtimeNs: srvMtime, Hash: hashA, Preserve: true}, false, "kept"},
		{"preserved, full update", "mine", 1, nil, remoteFile{Size: 3, MtimeNs: srvMtime, Hash: hashA, Preserve: true}, true, "fetch"},
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
			p, err := makePlan(root, st, &manifest{Files: []remoteFile{tc.remote}}, tc.full, nil, discard)
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
	man := &manifest{Files: []remoteFile{{Path: "Foo.dll", Size: 1}}}
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
	const mtime = int64(1714521600123456789)
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
	man := &manifest{Files: []remoteFile{{Path: "f.dll", Size: 3, MtimeNs: mtime, Hash: hashB}}}
	pl, err := makePlan(root, st, man, false, nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.fetch) != 1 {
		t.Errorf("plan fetches %v, current %v, touches %v; want f.dll fetched", pl.fetch, pl.current, pl.touch)
	}
}
