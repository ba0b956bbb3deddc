package manifest

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/erpupdate/smartsync/syncproto"
)

// TestReadManifestFolding: what the folding finds, through Read.
func TestReadManifestFolding(t *testing.T) {
	tests := []struct {
		name  string
		paths []string
		want  string // "" = accepted
	}{
		{"sigma", []string{"λόγος.txt", "ΛΌΓΟΣ.txt"}, "one file on Windows or macOS"},
		{"NFC and NFD", []string{"café.txt", "cafe\u0301.txt"}, "one file on Windows or macOS"},
		{"exact duplicate", []string{"a.dll", "b.dll", "a.dll"}, `entries 0 and 2 are both "a.dll"`},
		{"file below a file", []string{"lib", "lib/x.so"}, `entry 0 "lib" is a file, and entry 1 "lib/x.so"`},
		{"file below a file, listed first", []string{"lib/x.so", "lib"}, `entry 1 "lib" is a file, and entry 0 "lib/x.so"`},
		{"file below a file, a neighbour between them", []string{"lib", "lib-x", "lib/x.so"}, `entry 0 "lib" is a file`},
		{"file below a file of another case", []string{"LIB", "lib/x.so"}, `"LIB" is a file`},
		{"deep", []string{"a/b/c", "A/B/c/d/e"}, `"a/b/c" is a file`},
		{"folders differing in case", []string{"lib/a.so", "LIB/b.so"}, ""},
		{"siblings", []string{"lib-x", "lib/x.so", "lib.so"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(syncproto.NewReader(bytes.NewReader(encodeManifest(t, tc.paths...))), Options{})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (!errors.Is(err, ErrBad) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v; want ErrBad saying %q", err, tc.want)
			}
		})
	}
}
