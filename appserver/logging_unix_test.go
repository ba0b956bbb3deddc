//go:build unix

package appserver

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestLogJournal: when stderr is the stream systemd names in
// JOURNAL_STREAM, records have no time of their own (the journal stamps
// them); when it names another stream, they have.
func TestLogJournal(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	self := fmt.Sprintf("%d:%d", uint64(st.Dev), uint64(st.Ino))
	other := fmt.Sprintf("%d:%d", uint64(st.Dev), uint64(st.Ino)+1)
	cfg := logConfig(t, dir, "")
	for _, tc := range []struct {
		env      string
		wantTime bool
	}{{self, false}, {other, true}, {"", true}} {
		t.Setenv("JOURNAL_STREAM", tc.env)
		if got := stderrIsJournal(f, tc.env); got == tc.wantTime {
			t.Errorf("stderrIsJournal(%q) = %v, want %v", tc.env, got, !tc.wantTime)
		}
		log, closer, err := openLog(cfg, f)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("hello", "env", tc.env)
		closer.Close()
	}
	data, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 {
		t.Fatalf("stderr holds %q, want 3 records", lines)
	}
	if strings.Contains(lines[0], "time=") || !strings.HasPrefix(lines[0], "<6>level=INFO msg=hello") {
		t.Errorf("record to the journal is %q, want no time and the priority <6>", lines[0])
	}
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "time=") {
			t.Errorf("record to a stream that is not the journal is %q, want a time", l)
		}
	}
}
