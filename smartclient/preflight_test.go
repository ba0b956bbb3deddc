package smartclient

import (
	"errors"
	"strings"
	"testing"

	"github.com/erpupdate/smartsync/smartclient/internal/installtest"
)

func TestPreflightNeedsFreeSpace(t *testing.T) {
	dir := t.TempDir()
	installtest.WriteFiles(t, dir, map[string]string{"app.exe": strings.Repeat("x", 1000), "config.ini": strings.Repeat("y", 3000)})
	d := installtest.OpenDisk(t, dir)
	man := &manifest{Files: []remoteFile{{Path: "app.exe", Size: 5 << 20}}}
	p := &plan{fetch: []int{0}, fetchBytes: 5 << 20}
	for _, tc := range []struct {
		have int64
		want string // "" = fits
	}{
		{have: 1 << 30},
		{have: 4 << 20, want: "not enough free space in " + dir + ": need 6.0 MiB, have 4.0 MiB"},
	} {
		d.Faults.FreeSpace = func(string) (int64, error) { return tc.have, nil }
		err := preflight(d, man, p, measureSpace(d))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("have %d: %v", tc.have, err)
		case tc.want != "" && (!errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("have %d: got %v, want %q", tc.have, err, tc.want)
		}
	}
}
