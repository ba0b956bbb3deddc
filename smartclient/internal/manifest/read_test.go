package manifest

import (
	"bytes"
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/erpupdate/smartsync/internal/releasecheck"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/zeebo/blake3"
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
			_, err := Read(syncproto.NewReader(bytes.NewReader(encodeManifest(t, tc.paths...))), Options{})
			if !errors.Is(err, ErrBad) {
				t.Fatalf("got %v, want ErrBad", err)
			}
		})
	}
	man, err := Read(syncproto.NewReader(bytes.NewReader(encodeManifest(t, "smartclient", "lib/a.so", "lib/b.so"))), Options{})
	if err != nil || man.Len() != 3 || man.Total() != 3 {
		t.Fatalf("good manifest: %+v, %v", man, err)
	}
	// The build is stored and shown: one that is not a build (an escape
	// sequence, say) is refused with the manifest.
	for _, build := range []string{"", "\x1b[2J7.00.240501A", "latest"} {
		var b bytes.Buffer
		w := syncproto.NewWriter(&b)
		if err := w.Write(syncproto.ManifestHeader{Build: build}); err != nil || w.Flush() != nil {
			t.Fatal(err)
		}
		_, err := Read(syncproto.NewReader(&b), Options{})
		if !errors.Is(err, ErrBad) {
			t.Errorf("manifest of build %q: %v, want ErrBad", build, err)
		}
	}
}

// FuzzReadManifest checks that no manifest from the wire is accepted with
// a path the client would not write, and that nothing panics.
func FuzzReadManifest(f *testing.F) {
	f.Add(encodeManifest(f, "smartclient", "lib/a.so"))
	f.Add(encodeManifest(f, "../x"))
	f.Add(encodeManifest(f, "a", "A"))
	f.Add(encodeEntries(f, fileEntry("TOTVS.app/Contents/MacOS/totvs"), dirEntry("TOTVS.app/Contents/Frameworks")))
	f.Add(encodeEntries(f, dirEntry("a"), fileEntry("a/x")))
	f.Add(encodeEntries(f, syncproto.ManifestEntry{Path: "a", Size: 1, Flags: syncproto.FlagDir}))
	f.Fuzz(func(t *testing.T, data []byte) {
		man, err := Read(syncproto.NewReader(bytes.NewReader(data)), Options{})
		if err != nil {
			return
		}
		var total int64
		for _, file := range man.All() {
			if err := releasecheck.CheckPath(file.Path); err != nil {
				t.Fatalf("accepted %q: %v", file.Path, err)
			}
			if file.Dir && (file.Size != 0 || file.Target != "" || file.Hash != [32]byte{} || file.Preserve) {
				t.Fatalf("accepted a folder with content: %+v", file)
			}
			total += file.Size
		}
		if total != man.Total() {
			t.Fatalf("total %d, files add up to %d", man.Total(), total)
		}
	})
}

// encodeEntries encodes a manifest of the entries e, its header's total
// their sizes.
func encodeEntries(t testing.TB, entries ...syncproto.ManifestEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	w := syncproto.NewWriter(&b)
	var total uint64
	for _, e := range entries {
		total += e.Size
	}
	if err := w.Write(syncproto.ManifestHeader{Build: "7.00.240501A", Count: uint32(len(entries)), TotalBytes: total}); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := w.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// dirEntry and fileEntry are entries of the tests of empty folders.
func dirEntry(p string) syncproto.ManifestEntry {
	return syncproto.ManifestEntry{Path: p, Mode: 0o755, Flags: syncproto.FlagDir}
}

func fileEntry(p string) syncproto.ManifestEntry {
	return syncproto.ManifestEntry{Path: p, Size: 1, MtimeNs: 1, Mode: 0o644}
}

// TestReadManifestDirs shows which empty-folder entries (FlagDir) a
// client accepts: a leaf folder with its permission bits and nothing
// else, under the same path rules as a file; never the parent of another
// entry, one file with a file under folding, nor a folder that says it
// has content, a target, a time or another flag.
func TestReadManifestDirs(t *testing.T) {
	with := func(p string, f func(*syncproto.ManifestEntry)) syncproto.ManifestEntry {
		e := dirEntry(p)
		f(&e)
		return e
	}
	tests := []struct {
		name    string
		entries []syncproto.ManifestEntry
		want    string // "" = accepted
	}{
		{"leaf folders", []syncproto.ManifestEntry{fileEntry("TOTVS.app/Contents/MacOS/totvs"),
			dirEntry("TOTVS.app/Contents/Frameworks"), dirEntry("Resources/empty/inner")}, ""},
		{"folder beside a file of its parent", []syncproto.ManifestEntry{fileEntry("a/x"), dirEntry("a/b")}, ""},
		{"top-level folder", []syncproto.ManifestEntry{dirEntry("logs")}, ""},
		{"with a size", []syncproto.ManifestEntry{with("a", func(e *syncproto.ManifestEntry) { e.Size = 1 })}, "a folder that declares 1 bytes"},
		{"with a target", []syncproto.ManifestEntry{with("a", func(e *syncproto.ManifestEntry) { e.Target = "b" })}, "a folder with a link target"},
		{"with a hash", []syncproto.ManifestEntry{with("a", func(e *syncproto.ManifestEntry) { e.Hash[31] = 1 })}, "a folder with a content hash"},
		{"with a time", []syncproto.ManifestEntry{with("a", func(e *syncproto.ManifestEntry) { e.MtimeNs = 1 })}, "a folder with a modification time"},
		{"and a link", []syncproto.ManifestEntry{with("a", func(e *syncproto.ManifestEntry) { e.Flags |= syncproto.FlagSymlink })}, "besides the folder's"},
		{"and preserved", []syncproto.ManifestEntry{with("a", func(e *syncproto.ManifestEntry) { e.Flags |= syncproto.FlagPreserve })}, "besides the folder's"},
		{"a folder mode", []syncproto.ManifestEntry{with("a", func(e *syncproto.ManifestEntry) { e.Mode = uint32(fs.ModeDir | 0o755) })}, "special file"},
		{"setgid", []syncproto.ManifestEntry{with("a", func(e *syncproto.ManifestEntry) { e.Mode = 0o2755 })}, "setgid"},
		{"parent of a file", []syncproto.ManifestEntry{dirEntry("a"), fileEntry("a/x")}, `entry 0 "a" is an empty folder, and entry 1 "a/x"`},
		{"parent of a folder", []syncproto.ManifestEntry{dirEntry("a/b"), dirEntry("a")}, `entry 1 "a" is an empty folder, and entry 0 "a/b"`},
		{"parent of a file in another case", []syncproto.ManifestEntry{dirEntry("Lib"), fileEntry("lib/x.so")}, `"Lib" is an empty folder`},
		{"a file of the same path", []syncproto.ManifestEntry{fileEntry("a"), dirEntry("a")}, `entries 0 and 1 are both "a"`},
		{"a file of a folded path", []syncproto.ManifestEntry{dirEntry("Cafe\u0301"), fileEntry("café")}, "one file on Windows or macOS"},
		{"twice", []syncproto.ManifestEntry{dirEntry("a"), dirEntry("a")}, `entries 0 and 1 are both "a"`},
		{"below a file", []syncproto.ManifestEntry{fileEntry("a"), dirEntry("a/b")}, `entry 0 "a" is a file, and entry 1 "a/b"`},
		{"below a link", []syncproto.ManifestEntry{{Path: "l", Size: 1, MtimeNs: 1, Mode: 0o777, Flags: syncproto.FlagSymlink,
			Target: "x", Hash: blake3.Sum256([]byte("x"))}, fileEntry("x"), dirEntry("l/d")}, `"l/d" lies below the symbolic link "l"`},
		{"absolute", []syncproto.ManifestEntry{dirEntry("/tmp/x")}, "/tmp/x"},
		{"dot dot", []syncproto.ManifestEntry{dirEntry("a/../../x")}, `has a ".." part`},
		{"the client's folder", []syncproto.ManifestEntry{dirEntry(".smartclient/staging")}, "the client's own bookkeeping"},
		{"a backup slot", []syncproto.ManifestEntry{dirEntry("bkp_remote.004")}, "the client's own bookkeeping"},
		{"a device name", []syncproto.ManifestEntry{dirEntry("a/CON")}, "Windows device"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			refused := tc.want != ""
			man, err := Read(syncproto.NewReader(bytes.NewReader(encodeEntries(t, tc.entries...))), Options{})
			switch {
			case !refused && err != nil:
				t.Fatalf("refused: %v", err)
			case refused && !errors.Is(err, ErrBad):
				t.Fatalf("got %v; want ErrBad", err)
			case refused && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("got %v; want it to say %q", err, tc.want)
			case !refused:
				for i, f := range man.All() {
					if want := tc.entries[i].Flags&syncproto.FlagDir != 0; f.Dir != want || (f.Dir && (f.Size != 0 || f.Mode != 0o755)) {
						t.Errorf("entry %d read as %+v", i, f)
					}
				}
			}
		})
	}
}
