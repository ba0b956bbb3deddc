package manifest

import (
	"bytes"
	"errors"
	"testing"

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
}

// FuzzReadManifest checks that no manifest from the wire is accepted with
// a path the client would not write, and that nothing panics.
func FuzzReadManifest(f *testing.F) {
	f.Add(encodeManifest(f, "smartclient", "lib/a.so"))
	f.Add(encodeManifest(f, "../x"))
	f.Add(encodeManifest(f, "a", "A"))
	f.Fuzz(func(t *testing.T, data []byte) {
		man, err := Read(syncproto.NewReader(bytes.NewReader(data)), Options{})
		if err != nil {
			return
		}
		var total int64
		for _, file := range man.All() {
			if err := checkPath(file.Path); err != nil {
				t.Fatalf("accepted %q: %v", file.Path, err)
			}
			total += file.Size
		}
		if total != man.Total() {
			t.Fatalf("total %d, files add up to %d", man.Total(), total)
		}
	})
}
