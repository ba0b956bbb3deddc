package pending

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/erpupdate/smartsync/syncproto"
)

func report(n int) syncproto.Report {
	return syncproto.Report{Outcome: syncproto.OutcomeFailed, Build: "7.00.240501A", Step: "fetch",
		Message: "staging lib/x.so: no space left on device", Files: uint32(n), Bytes: 7, Duration: 1200, At: int64(1795000000 + n), ID: 0xfeed_0000_0000_0000 + uint64(n)}
}

// TestKeepsTheLastMax: reports are kept oldest first, the last Max of
// them, and saving none removes the file.
func TestKeepsTheLastMax(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".smartclient")
	s := At(dir, slog.New(slog.DiscardHandler))
	var want []syncproto.Report
	for i := range Max + 3 {
		if err := s.Add(report(i)); err != nil {
			t.Fatal(err)
		}
		want = append(want, report(i))
	}
	want = want[len(want)-Max:]
	if got := s.Load(); !reflect.DeepEqual(got, want) {
		t.Fatalf("kept %+v\nwant %+v", got, want)
	}
	if err := s.Save(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, Name)); !os.IsNotExist(err) {
		t.Errorf("the file is still there after saving none: %v", err)
	}
}

// TestDamagedFileDropped: a damaged file, and the temporary file a
// crash while writing left, are logged and removed; nothing fails, and
// the next report is kept.
func TestDamagedFileDropped(t *testing.T) {
	tests := map[string]string{
		"torn":            `{"version":1,"reports":[{"outcome":3,"at":17`,
		"unknown outcome": `{"version":1,"reports":[{"outcome":99,"at":1795000000}]}`,
		"no time":         `{"version":1,"reports":[{"outcome":3}]}`,
		"other version":   `{"version":2,"reports":[]}`,
		"unknown field":   `{"version":1,"reports":[],"x":1}`,
		"binary":          "\x00\xff\xfe",
		"step too long":   `{"version":1,"reports":[{"outcome":3,"at":1,"step":"` + strings.Repeat("s", 200) + `"}]}`,
	}
	for name, content := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, Name), []byte(content), 0o644)
			tmp := filepath.Join(dir, "."+Name+".tmp-123")
			os.WriteFile(tmp, []byte("half"), 0o644)
			var log bytes.Buffer
			s := At(dir, slog.New(slog.NewTextHandler(&log, nil)))
			if got := s.Load(); got != nil {
				t.Fatalf("loaded %+v from a damaged file", got)
			}
			if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), "dropping the damaged file") {
				t.Errorf("the drop is not logged: %q", log.String())
			}
			for _, p := range []string{filepath.Join(dir, Name), tmp} {
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Errorf("%s is still there: %v", p, err)
				}
			}
			if err := s.Add(report(1)); err != nil {
				t.Fatal(err)
			}
			if got := s.Load(); len(got) != 1 {
				t.Errorf("after a new report: %+v", got)
			}
		})
	}
}

// FuzzDecode: no content makes Decode panic, and what it accepts encodes
// back to reports it accepts alike.
func FuzzDecode(f *testing.F) {
	f.Add(Encode([]syncproto.Report{report(1), report(2)}))
	f.Add([]byte(`{"version":1,"reports":[]}`))
	f.Add([]byte(`{"version":1,"reports":[{"outcome":6,"at":1,"message":"\u00e9"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Decode(data)
		if err != nil {
			return
		}
		again, err := Decode(Encode(got))
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("%+v encodes to what decodes as %+v, %v", got, again, err)
		}
	})
}
