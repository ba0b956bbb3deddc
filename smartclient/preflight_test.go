package smartclient

import (
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/installtest"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest/manifesttest"
)

func TestPreflightNeedsFreeSpace(t *testing.T) {
	dir := t.TempDir()
	installtest.WriteFiles(t, dir, map[string]string{"app.exe": strings.Repeat("x", 1000), "config.ini": strings.Repeat("y", 3000)})
	d := installtest.OpenDisk(t, dir)
	man := manifesttest.New(t, "7.00.240501A", manifest.File{Path: "app.exe", Size: 5 << 20})
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

func TestCheckFreeSpace(t *testing.T) {
	dir := t.TempDir()
	have, err := install.FreeSpace(dir)
	if errors.Is(err, errors.ErrUnsupported) {
		if err := checkFreeSpace(dir, math.MaxInt64); err != nil {
			t.Fatalf("where free space is unknown the check must pass: %v", err)
		}
		t.Skip("free space is not known on this OS")
	}
	if err != nil || have <= 0 {
		t.Fatalf("FreeSpace(%s) = %d, %v", dir, have, err)
	}
	if err := checkFreeSpace(dir, 0); err != nil {
		t.Errorf("need nothing: %v", err)
	}
	if err := checkFreeSpace(dir, 1<<20); err != nil {
		t.Errorf("need 1 MiB: %v", err)
	}
	err = checkFreeSpace(dir, math.MaxInt64)
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "need 8.0 EiB, have ") || !strings.Contains(err.Error(), dir) {
		t.Errorf("need 8 EiB: got %v; want ErrNoSpace saying need, have and where", err)
	}
	// A folder not created yet is measured where it will be created.
	if err := checkFreeSpace(filepath.Join(dir, "not", "yet"), 1<<20); err != nil {
		t.Errorf("folder not created yet: %v", err)
	}
}
