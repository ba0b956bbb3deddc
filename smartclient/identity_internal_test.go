package smartclient

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/erpupdate/smartsync/syncproto"
)

func TestShortString(t *testing.T) {
	long := strings.Repeat("é", syncproto.MaxShortString) // 2 bytes each
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "ws-042", "ws-042"},
		{"invalid utf-8", "ws\xff42", "ws\uFFFD42"},
		{"cut at a character", long, long[:syncproto.MaxShortString]},
		{"cut after an odd byte", "x" + long, "x" + long[:syncproto.MaxShortString-2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := shortString(tc.in)
			if got != tc.want || len(got) > syncproto.MaxShortString || !utf8.ValidString(got) {
				t.Errorf("got %q (%d bytes); want %q", got, len(got), tc.want)
			}
		})
	}
}

func TestClientIDFile(t *testing.T) {
	const kept = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name, file, legacy string
		store              bool
		want               string // "" a new id
		wantFile           bool   // the id is in the file after
	}{
		{name: "kept", file: kept + "\n", store: true, want: kept, wantFile: true},
		{name: "kept, state says otherwise", file: kept + "\r\n", legacy: strings.Repeat("1", 32), store: true, want: kept, wantFile: true},
		{name: "from the state of an earlier build", legacy: kept, store: true, want: kept, wantFile: true},
		{name: "new", store: true, wantFile: true},
		{name: "garbage is replaced", file: "not an id\n", legacy: "also not", store: true, wantFile: true},
		{name: "upper case is not ours", file: strings.ToUpper(kept), store: true, wantFile: true},
		{name: "a check stores nothing", legacy: kept, want: kept},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.file != "" {
				if err := os.MkdirAll(filepath.Join(dir, ".smartclient"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(ClientIDFile)), []byte(tc.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			root, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			id, err := clientID(root, dir, tc.legacy, tc.store)
			if err != nil {
				t.Fatal(err)
			}
			if !validID(id) || tc.want != "" && id != tc.want || tc.want == "" && (id == kept || id == tc.legacy) {
				t.Errorf("id %q; want %q (\"\": a new one)", id, tc.want)
			}
			data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(ClientIDFile)))
			if tc.wantFile && (err != nil || strings.TrimSpace(string(data)) != id) {
				t.Errorf("file %q, %v; want %q", data, err, id+"\n")
			}
			if !tc.wantFile && tc.file == "" && err == nil {
				t.Errorf("a check stored the id")
			}
		})
	}
}

// FuzzClientIDFile: whatever the id file holds, the client ends with a
// valid id, and keeps the file's only when it is one.
func FuzzClientIDFile(f *testing.F) {
	f.Add([]byte("0123456789abcdef0123456789abcdef\n"))
	f.Add([]byte("0123456789ABCDEF0123456789abcdef"))
	f.Add([]byte(""))
	f.Add([]byte("\xff\xfe 0123"))
	dir := f.TempDir()
	if err := os.Mkdir(filepath.Join(dir, ".smartclient"), 0o755); err != nil {
		f.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { root.Close() })
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(ClientIDFile)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		id, err := clientID(root, dir, "", false)
		if err != nil {
			t.Fatal(err)
		}
		if !validID(id) {
			t.Fatalf("id %q from %q", id, data)
		}
		if kept := strings.TrimSpace(string(data)); validID(kept) != (id == kept) {
			t.Fatalf("file %q gave id %q", data, id)
		}
	})
}
