//go:build linux

package desktop_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/desktop/desktoptest"
)

// TestNativeUnderWine runs this package's Windows tests (TestNativeCancel:
// the Win32 window's close box and Cancel) under Wine on Xvfb, where they
// have a display, as they skip without one in the Wine run of
// scripts/ci-windows. They must pass, not skip.
func TestNativeUnderWine(t *testing.T) {
	desktoptest.Require(t, "wine64", "Xvfb", "xwininfo")
	d := desktoptest.Xvfb(t)
	wine := desktoptest.NewWine(t, d)
	exe := filepath.Join(t.TempDir(), "desktop.test.exe")
	desktoptest.BuildWindows(t, ".", exe, true)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := wine.Command(ctx, exe, "-test.run", "^TestNative", "-test.v", "-test.count=1")
	cmd.Env = append(cmd.Env, "SMARTSYNC_WINE=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestNativeCancel") {
		t.Fatalf("TestNativeCancel under Wine: %v; want it passed\n%s", err, out)
	}
}
