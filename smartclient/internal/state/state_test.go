package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/zeebo/blake3"
)

const (
	hashA = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
	hashB = "0000000000000000000000000000000000000000000000000000000000000000"
)

// stateCases are states whose encoding must round-trip.
var stateCases = []struct {
	name string
	st   *State
}{
	{"empty", &State{}},
	{"nil files", &State{Version: Version, ClientID: "id"}},
	{"no files", &State{Version: Version, ClientID: "id", Files: map[string]FileState{}}},
	{"every field", &State{
		Version: Version, ClientID: "0123456789abcdef0123456789abcdef", Build: "7.00.240501A", OS: "linux",
		Server: "erp.example.com:1234", LastSync: time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC),
		LastOutcome: "failed", LastMessage: "applying the update: disk full\nsecond line",
		Journal: hashA, Manifest: hashB,
		Files: map[string]FileState{
			"smartclient":         {Size: 1 << 40, MtimeNs: 1700000000123456789, Hash: hashA, ServerMtimeNs: 1700000000123456000},
			"lib/libtlpp.so":      {Size: 0, MtimeNs: 1, Hash: hashB, ServerMtimeNs: 1},
			"smartclient.ini":     {Size: 12, MtimeNs: 2, Hash: hashA, ServerMtimeNs: 3, Preserve: true},
			"Contents/Frameworks": {Hash: "link:Versions/Current/Frameworks"},
		},
	}},
	{"hashes that are not raw", &State{Files: map[string]FileState{
		"link":      {Hash: "link:../lib/libx.so.1"},
		"empty":     {Hash: ""},
		"upper":     {Hash: strings.ToUpper(hashA)},
		"short":     {Hash: hashA[:63]},
		"long":      {Hash: hashA + "0"},
		"not hex":   {Hash: "g" + hashA[1:]},
		"binary":    {Hash: "\x00\xff\xfe"},
		"preserved": {Hash: "link:x", Preserve: true},
	}}},
	{"preserve flags", &State{Files: map[string]FileState{
		"a": {Preserve: true, Hash: hashA},
		"b": {Preserve: false, Hash: hashA},
		"c": {Preserve: true},
	}}},
	{"unicode and odd paths", &State{Files: map[string]FileState{
		"relatórios/ação.dll": {Size: 1, Hash: hashA},
		"日本語/ファイル.so":         {Size: 2, Hash: hashB},
		"emoji/😀.txt":         {Size: 3},
		"":                    {Size: 4},
		"a":                   {}, "a/b": {}, "a.b": {}, "B": {}, "a\x00b": {},
		"not utf-8 \xff": {Size: 5},
	}}},
	{"extreme numbers", &State{Version: -1, LastSync: time.Unix(0, -1), Files: map[string]FileState{
		"min": {Size: -1 << 63, MtimeNs: -1 << 63, ServerMtimeNs: -1 << 63},
		"max": {Size: 1<<63 - 1, MtimeNs: 1<<63 - 1, ServerMtimeNs: 1<<63 - 1},
	}}},
	{"local time", &State{LastSync: time.Date(2024, 7, 1, 9, 30, 0, 5, time.FixedZone("BRT", -3*3600))}},
}

// sameState compares states as the client sees them: a nil and an empty
// Files are alike, and times are compared as instants.
func sameState(a, b *State) bool {
	x, y := *a, *b
	if !x.LastSync.Equal(y.LastSync) {
		return false
	}
	x.LastSync, y.LastSync = time.Time{}, time.Time{}
	if len(x.Files) == 0 && len(y.Files) == 0 {
		x.Files, y.Files = nil, nil
	}
	x.exists, y.exists = false, false
	return reflect.DeepEqual(x, y)
}

// TestStateRoundTrip: every state decodes to what was encoded, and
// encodes again to the same bytes.
func TestStateRoundTrip(t *testing.T) {
	for _, tc := range stateCases {
		t.Run(tc.name, func(t *testing.T) {
			data := Marshal(tc.st)
			got, err := Unmarshal(data)
			if err != nil {
				t.Fatal(err)
			}
			if !sameState(got, tc.st) {
				t.Errorf("got %+v\nwant %+v", got, tc.st)
			}
			if got.Files == nil {
				t.Error("decoded Files is nil")
			}
			if again := Marshal(got); !bytes.Equal(again, data) {
				t.Errorf("re-encoding differs:\n%x\n%x", again, data)
			}
		})
	}
}

// TestStateEncodingIsDeterministic: the same state encodes to the same
// bytes whatever the order a map gives its entries in, sorted by path.
func TestStateEncodingIsDeterministic(t *testing.T) {
	st := &State{Files: map[string]FileState{}}
	for i := range 200 {
		st.Files[fmt.Sprintf("f%03d", (i*7)%200)] = FileState{Size: int64(i), Hash: hashA}
	}
	want := Marshal(st)
	for range 20 {
		if got := Marshal(st); !bytes.Equal(got, want) {
			t.Fatal("two encodings of one state differ")
		}
	}
	if i, j := bytes.Index(want, []byte("f000")), bytes.Index(want, []byte("f199")); i < 0 || j < i {
		t.Errorf("files not in order of path: f000 at %d, f199 at %d", i, j)
	}
	// Raw hashes: 32 bytes each, not 64 hex digits.
	if bytes.Contains(want, []byte(hashA)) {
		t.Error("a hex hash is stored as a string")
	}
}

// seal appends the checksum to a state file's body.
func seal(body []byte) []byte {
	sum := blake3.Sum256(body)
	return append(body[:len(body):len(body)], sum[:]...)
}

// body is data without its checksum.
func body(data []byte) []byte { return bytes.Clone(data[:len(data)-stateSumSize]) }

// withFiles is the encoding of a state with no scalar fields and the file
// count and entries given, checksummed.
func withFiles(count uint64, entries ...[]byte) []byte {
	b := body(Marshal(&State{}))
	b = b[:len(b)-1] // the count of no files
	b = binary.AppendUvarint(b, count)
	for _, e := range entries {
		b = append(b, e...)
	}
	return seal(b)
}

// entry encodes a file's entry with a string hash.
func entry(path string, flags byte, hash string) []byte {
	b := appendString(nil, path)
	b = append(b, 0, 0, 0, flags)
	return appendString(b, hash)
}

// TestUnmarshalStateRejects: a foreign, damaged or non-canonical file is
// an error that says what is wrong, whether or not its checksum holds.
func TestUnmarshalStateRejects(t *testing.T) {
	small := Marshal(stateCases[3].st)
	flipped := bytes.Clone(small)
	flipped[len(flipped)/2] ^= 0x40
	// A raw hash entry: flags fileRawHash and 32 bytes.
	raw := append(appendString(nil, "x"), 0, 0, 0, fileRawHash)
	raw = append(raw, make([]byte, 32)...)
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "not a smartclient state file"},
		{"wrong magic", append([]byte("SCSU"), small[4:]...), "not a smartclient state file"},
		{"json", []byte(`{"version":1,"files":{}}`), "not a smartclient state file"},
		{"magic only", []byte(stateMagic), "too short"},
		{"future format", seal(append([]byte(stateMagic), 2, 0)), "format 2"},
		{"flipped byte", flipped, "checksum"},
		{"trailing byte", append(bytes.Clone(small), 0), "checksum"},
		{"trailing bytes under the checksum", seal(append(body(small), 0)), "after the last file"},
		{"checksum missing", body(small), "checksum"},
		{"files out of order", withFiles(2, entry("b", 0, ""), entry("a", 0, "")), "out of order"},
		{"duplicate file", withFiles(2, entry("a", 0, ""), entry("a", 0, "")), "out of order"},
		{"unknown flag", withFiles(1, entry("a", 4, "")), "unknown flags"},
		{"raw hash as string", withFiles(1, entry("a", 0, hashA)), "hash stored as a string"},
		{"raw hash cut short", withFiles(1, raw[:len(raw)-1]), "exceeds"},
		{"more files than bytes", withFiles(1<<60, entry("a", 0, "")), "cannot fit"},
		{"fewer files than entries", withFiles(1, entry("a", 0, ""), entry("b", 0, "")), "after the last file"},
		{"more files than entries", withFiles(2, entry(strings.Repeat("a", 20), 0, "")), "truncated"},
		{"huge path length", withFiles(1, append(binary.AppendUvarint(nil, 1<<62), 0, 0, 0, 0, 0)), "exceeds"},
		{"overlong number", withFiles(1, append(appendString(nil, "a"), 0x80, 0x00, 0, 0, 0, 0)), "bad number"},
		{"number past 64 bits", withFiles(1, append(append(appendString(nil, "a"), bytes.Repeat([]byte{0xff}, 9)...), 0x7f)), "bad number"},
		{"bad time flag", seal(append(append([]byte(stateMagic), stateFormat, 2), 0, 0, 0, 0, 2, 0, 0, 0, 0, 0)), "time of the last sync"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := Unmarshal(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, %v; want an error saying %q", st, err, tc.want)
			}
		})
	}
}

// TestUnmarshalStateTorn: every prefix of a state file, and every byte of
// it changed, is an error.
func TestUnmarshalStateTorn(t *testing.T) {
	data := Marshal(stateCases[3].st)
	for n := range len(data) {
		if _, err := Unmarshal(data[:n]); err == nil {
			t.Errorf("accepted the first %d of %d bytes", n, len(data))
		}
		b := bytes.Clone(data)
		b[n] ^= 1 << (n % 8)
		if _, err := Unmarshal(b); err == nil {
			t.Errorf("accepted byte %d changed", n)
		} else if n >= len(stateMagic)+1 && !errors.Is(err, errStateDamaged) {
			t.Errorf("byte %d changed: %v is not errStateDamaged", n, err)
		}
	}
}

// FuzzUnmarshalState: no input panics, and whatever is accepted re-encodes
// to the very bytes it came from. Each input is also tried with a valid
// checksum appended, so that mutations reach the decoding of the fields.
func FuzzUnmarshalState(f *testing.F) {
	for _, tc := range stateCases {
		data := Marshal(tc.st)
		f.Add(data)
		f.Add(body(data))
	}
	empty, err := os.OpenRoot(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	defer empty.Close()
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, in := range [][]byte{data, seal(data)} {
			st, err := Unmarshal(in)
			if err != nil {
				continue
			}
			if st.Files == nil {
				t.Fatal("accepted a state without Files")
			}
			if got := Marshal(st); !bytes.Equal(got, in) {
				t.Fatalf("accepted %x, which re-encodes to %x", in, got)
			}
		}
		// The no-op check walks the files still encoded: whatever
		// the checksum lets through, it fails safe. In an empty
		// folder, only a state of no files is as recorded.
		st, err := parseState(seal(data))
		if err != nil {
			return
		}
		c := Check(t.Context(), empty, st.enc)
		c.Same()
		if c.OK && (st.LoadFiles() != nil || len(st.Files) != 0) {
			t.Fatalf("the check of %x in an empty folder says it is as recorded", data)
		}
	})
}

func openDisk(t testing.TB, dir string) *install.Disk {
	t.Helper()
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return &install.Disk{Root: r}
}

// writeRecorded writes file name of the install dir and returns its
// record.
func writeRecorded(t *testing.T, dir, name, content string) FileState {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return FileState{Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano(), ServerMtimeNs: fi.ModTime().UnixNano(), Hash: strings.Repeat("ab", 32)}
}
