package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient"
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
		var p smartclient.Progress = &textProgress{w: &b, every: 2 * time.Second}
		if tc.terminal {
			p = &textProgress{w: &b, terminal: true, width: func() int { return 120 }, every: 100 * time.Millisecond}
		}
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
