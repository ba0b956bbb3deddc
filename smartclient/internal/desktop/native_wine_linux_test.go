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

// TestNativeUnderWine runs this package's Windows tests that make windows
// (TestNativeCancel: the Win32 window's close box and Cancel;
// TestNativeAskTimeout: an unanswered question is a No) under Wine on
// Xvfb, where they have a display, as they skip without one in the Wine
// run of scripts/ci-windows, and TestConsoleBuild. They must pass, not
// skip.
func TestNativeUnderWine(t *testing.T) {
	desktoptest.Require(t, "wine64", "Xvfb", "xwininfo")
	d := desktoptest.Xvfb(t)
	wine := desktoptest.NewWine(t, d)
	exe := filepath.Join(t.TempDir(), "desktop.test.exe")
	desktoptest.BuildWindows(t, ".", exe, true)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := wine.Command(ctx, exe, "-test.run", "^TestNative|^TestConsoleBuild", "-test.v", "-test.count=1")
	cmd.Env = append(cmd.Env, "SMARTSYNC_WINE=1")
	out, err := cmd.CombinedOutput()
	for _, name := range []string{"TestNativeCancel", "TestNativeAskTimeout", "TestNativeClosedAtOnce", "TestConsoleBuild"} {
		if err != nil || !strings.Contains(string(out), "--- PASS: "+name+" ") {
			t.Errorf("%s under Wine: %v; want it passed\n%s", name, err, out)
		}
	}
}
