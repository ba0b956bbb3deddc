package smartclient

import (
	"bytes"
	"strings"
	"testing"
)

func TestProgress(t *testing.T) {
	tests := []struct {
		terminal bool
		want     []string
	}{
		{false, []string{"Downloading 3 files, 3.0 MiB\n", "progress: 100%  3/3 files  3.0 MiB/3.0 MiB", "ETA 0s\n"}},
		{true, []string{"\r[##############################] 100%  3/3 files", "\033[K", "\n"}},
	}
	for _, tc := range tests {
		var b bytes.Buffer
		p := NewProgress(&b, tc.terminal)
		p.Start(3, 3<<20)
		for range 3 {
			p.Add(1 << 20)
			p.FileDone()
		}
		p.Finish()
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("terminal=%v: output %q lacks %q", tc.terminal, b.String(), w)
			}
		}
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 200 << 20: "200.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
