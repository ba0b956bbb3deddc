package appserver

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/erpupdate/smartsync/appserver/internal/clientdb"
	"github.com/erpupdate/smartsync/appserver/internal/console/browsertest"
	"github.com/erpupdate/smartsync/smartclient"
)

// TestConsoleEndToEnd drives the web console of a real appserver in
// headless Chromium, after real syncs of three workstations with
// smartclient, one of which fails: the console listens beyond loopback,
// so it is HTTPS and asks for the [ADMIN] login; the overview then shows
// the failure and its reason; the clients table sorts and filters; and a
// full-page screenshot is saved (CONSOLE_SCREENSHOT=FILE keeps a copy:
// the README's image is made so).
func TestConsoleEndToEnd(t *testing.T) {
	bctx := browsertest.NewTimeout(t, 2*time.Minute)
	hash, _ := testHashes()
	key, _ := testPublicKey(1)
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"keep": "folder"}, oldTime)
	cfg, _ := loadServerConfig(t, "Enable=1", "PathLinux="+dir, "Build="+srvBuild,
		"[ADMIN]", "PasswordHash="+hash, "[SELFUPDATE]", "PublicKey="+key,
		"[HTTP]", "Listen=0.0.0.0:0")
	state := t.TempDir()
	const b1, b2 = "7.00.240601A", "7.00.240701A"
	publishTree(t, cfg, state, b1, map[string]string{"app": "one", "lib/libtotvs.so": "lib one"}, nil)
	ts := startServerIn(t, cfg, state, nil, nil)
	ring := newLogRing(100, slog.LevelInfo)
	ctx, cancel := context.WithCancel(t.Context())
	wait := ts.srv.serveConsole(ctx, ring)
	t.Cleanup(func() { cancel(); wait() })

	ws := t.TempDir()
	sync := func(host, user string) error {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		_, err := smartclient.Sync(ctx, smartclient.Options{Dir: filepath.Join(ws, host), Server: ts.addr, OS: "linux",
			Yes: true, AllowUnsigned: true, Timeout: 10 * time.Second, RetryFor: -1, Host: host, User: user})
		return err
	}
	for _, w := range [][2]string{{"caixa-01", "maria"}, {"caixa-02", "joao"}, {"caixa-03", "ana"}} {
		if err := sync(w[0], w[1]); err != nil {
			t.Fatalf("%s: %v", w[0], err)
		}
	}
	publishTree(t, cfg, state, b2, map[string]string{"app": "two", "lib/libtotvs.so": "lib two"}, nil)
	// caixa-03's library is read-only: its update fails before a byte
	// is fetched, and says why.
	if err := os.Chmod(filepath.Join(ws, "caixa-03", "lib", "libtotvs.so"), 0o444); err != nil {
		t.Fatal(err)
	}
	const reason = "the file lib/libtotvs.so is read-only"
	if err := sync("caixa-03", "ana"); err == nil || !strings.Contains(err.Error(), reason) {
		t.Fatalf("caixa-03's update: %v, want %q", err, reason)
	}
	if err := sync("caixa-01", "maria"); err != nil {
		t.Fatalf("caixa-01's update: %v", err)
	}
	fctx, fcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer fcancel()
	db := ts.srv.records.Load()
	if err := db.Flush(fctx); err != nil {
		t.Fatalf("the records: %v", err)
	}
	if n, err := db.Count(fctx, clientdb.Filter{}); err != nil || n != 3 {
		t.Fatalf("%d clients recorded (%v), want 3", n, err)
	}

	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == ""; time.Sleep(10 * time.Millisecond) {
		if a, ok := ts.srv.consoleAddr.Load().(string); ok {
			addr = a
		}
		if time.Now().After(deadline) {
			t.Fatalf("the console does not listen:\n%s", ts.logs)
		}
	}
	base := "https://" + strings.Replace(addr, "0.0.0.0", "127.0.0.1", 1)
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// Beyond loopback: the login first.
	step("opening the console", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("form.login")))
	if body := browsertest.Text(bctx, t, "main"); strings.Contains(body, "caixa-03") {
		t.Fatal("the login page shows the estate")
	}
	step("logging in", chromedp.SendKeys(chromedp.CSS("#user"), "admin"), chromedp.SendKeys(chromedp.CSS("#password"), "correct horse"))
	browsertest.ClickLoad(bctx, t, "#login")
	step("the overview", chromedp.WaitVisible(chromedp.CSS("#failures table")))
	failures := browsertest.Text(bctx, t, "#failures")
	for _, want := range []string{"caixa-03", "ana", reason} {
		if !strings.Contains(failures, want) {
			t.Errorf("the overview's failures do not show %q:\n%s", want, failures)
		}
	}
	if strings.Contains(failures, "caixa-01") {
		t.Errorf("the overview lists caixa-01, which updated, as failed:\n%s", failures)
	}
	shot := filepath.Join(t.TempDir(), "console.png")
	browsertest.Capture(bctx, t, shot)

	hosts := func() []string {
		t.Helper()
		h, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#clients tbody td.host')].map(e => e.textContent.trim())`))
		if err != nil {
			t.Fatalf("reading the clients table: %v", err)
		}
		return h
	}
	step("the clients", chromedp.Navigate(base+"/clients"), chromedp.WaitVisible(chromedp.CSS("#clients")))
	if h := hosts(); !slices.Equal(h, []string{"caixa-01", "caixa-02", "caixa-03"}) {
		t.Errorf("the clients table: %q", h)
	}
	browsertest.ClickLoad(bctx, t, `a[data-col="host"]`)
	step("sorting by host", chromedp.WaitVisible(chromedp.CSS(`th[aria-sort="descending"] a[data-col="host"]`)))
	if h := hosts(); !slices.Equal(h, []string{"caixa-03", "caixa-02", "caixa-01"}) {
		t.Errorf("sorted by host, descending: %q", h)
	}
	step("searching", chromedp.SendKeys(chromedp.CSS("#q"), "joao"))
	browsertest.ClickLoad(bctx, t, "#apply")
	if h := hosts(); !slices.Equal(h, []string{"caixa-02"}) {
		t.Errorf("searching joao: %q", h)
	}

	b, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	if keep := os.Getenv("CONSOLE_SCREENSHOT"); keep != "" {
		if err := os.WriteFile(keep, b, 0o644); err != nil {
			t.Error(err)
		}
	}
}
