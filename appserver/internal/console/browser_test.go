package console

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/erpupdate/smartsync/appserver/internal/console/browsertest"
)

// hostsJS lists the host column of the clients table, top to bottom.
const hostsJS = `[...document.querySelectorAll('#clients tbody td.host')].map(e => e.textContent)`

func hosts(t *testing.T, ctx context.Context) []string {
	t.Helper()
	h, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](hostsJS))
	if err != nil {
		t.Fatalf("reading the clients table: %v", err)
	}
	return h
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return browsertest.Text(ctx, t, sel)
}

func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// TestBrowserConsole drives the open (loopback) console in Chromium: the
// overview shows the failure and its reason, the clients table sorts by
// a header click and filters by the search form, a phone-sized screen
// does not scroll sideways, and full-page screenshots are taken.
func TestBrowserConsole(t *testing.T) {
	ctx := browsertest.New(t)
	f := start(t, setup{})
	dir := t.TempDir()

	do(t, ctx, "opening the overview", chromedp.Navigate(f.srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#failures table")))
	failures := text(t, ctx, "#failures")
	for _, want := range []string{"ws-bob", "install", readOnly, hostileHost} {
		if !strings.Contains(failures, want) {
			t.Errorf("the overview's failures do not show %q:\n%s", want, failures)
		}
	}
	// The failure rows are red.
	color, err := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector('#failures td.reason')).color`))
	if err != nil || color != "rgb(179, 38, 30)" {
		t.Errorf("the failure's reason is not red: %q, %v", color, err)
	}
	// The hostile host name ran no script: it is text.
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('main script, main img').length`)); err != nil || n != 0 {
		t.Errorf("the hostile host name made elements: %d, %v", n, err)
	}
	shot := filepath.Join(dir, "overview.png")
	browsertest.Capture(ctx, t, shot)

	// Sort: the table starts by host, ascending; a click on Host reverses it.
	do(t, ctx, "opening the clients", chromedp.Navigate(f.srv.URL+"/clients"), chromedp.WaitVisible(chromedp.CSS("#clients")))
	before := hosts(t, ctx)
	if len(before) != 5 || !slices.IsSorted(before) {
		t.Fatalf("the clients at first: %q, want 5 sorted by host", before)
	}
	browsertest.ClickLoad(ctx, t, `a[data-col="host"]`)
	do(t, ctx, "sorting by host", chromedp.WaitVisible(chromedp.CSS(`th[aria-sort="descending"] a[data-col="host"]`)))
	after := hosts(t, ctx)
	want := slices.Clone(before)
	slices.Reverse(want)
	if !slices.Equal(after, want) {
		t.Errorf("after a click on Host: %q, want %q", after, want)
	}
	browsertest.ClickLoad(ctx, t, `a[data-col="last_seen"]`)
	do(t, ctx, "sorting by last seen", chromedp.WaitVisible(chromedp.CSS(`th[aria-sort="ascending"] a[data-col="last_seen"]`)))
	if h := hosts(t, ctx); len(h) != 5 || h[0] != "ws-dan" || h[4] != "ws-eve" {
		t.Errorf("sorted by last seen: %q, want ws-dan (20 days) first and ws-eve (10 min) last", h)
	}

	// Filter: type in the search form and submit.
	do(t, ctx, "typing a search", chromedp.SendKeys(chromedp.CSS("#q"), "bob"))
	if status := browsertest.ClickLoad(ctx, t, "#apply"); status != 200 {
		t.Fatalf("the search: status %d", status)
	}
	if h := hosts(t, ctx); !slices.Equal(h, []string{"ws-bob"}) {
		t.Errorf("after searching bob: %q", h)
	}
	if s := text(t, ctx, "#summary"); !strings.Contains(s, "1–1 of 1") {
		t.Errorf("the summary after the search: %q", s)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if !strings.Contains(loc, "q=bob") || !strings.Contains(loc, "sort=last_seen") {
		t.Errorf("the search is not in the address %q (with the sort kept)", loc)
	}

	// The other pages, at a laptop's size.
	shots := []string{"overview.png", "client.png", "releases.png", "server.png", "clients-phone.png"}
	for path, name := range map[string]string{"/clients/aaaa0002": "client.png", "/releases": "releases.png", "/server": "server.png"} {
		browsertest.Screenshot(ctx, t, f.srv.URL+path, filepath.Join(dir, name))
	}

	// A phone: the page does not scroll sideways; the table scrolls in its box.
	do(t, ctx, "emulating a phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)),
		chromedp.Navigate(f.srv.URL+"/clients"), chromedp.WaitVisible(chromedp.CSS("#clients")))
	over, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
	if err != nil || over {
		w, _ := chromedp.Run(ctx, chromedp.Evaluate[[]int](`[document.documentElement.scrollWidth, window.innerWidth]`))
		t.Errorf("on a phone the page is wider than the screen (scroll width, screen): %v, %v", w, err)
	}
	browsertest.Capture(ctx, t, filepath.Join(dir, "clients-phone.png"))

	for _, name := range shots {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := browsertest.CheckPNG(b); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		t.Logf("screenshot %s: %d bytes", name, len(b))
		// CONSOLE_SCREENSHOTS=DIR keeps a copy, e.g. for the README's image.
		if keep := os.Getenv("CONSOLE_SCREENSHOTS"); keep != "" {
			if err := os.WriteFile(filepath.Join(keep, name), b, 0o644); err != nil {
				t.Error(err)
			}
		}
	}
}

// TestBrowserLogin drives the console beyond loopback, over TLS with
// RequireLogin: a visit is sent to the login page, a wrong password is
// refused, the right one leads to the page asked for, and logging out
// ends the session.
func TestBrowserLogin(t *testing.T) {
	ctx := browsertest.New(t)
	f := start(t, setup{tls: true, login: true})

	do(t, ctx, "opening the console", chromedp.Navigate(f.srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS("form.login")))
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); !strings.Contains(loc, "/login?next=%2F") {
		t.Errorf("not sent to the login: %s", loc)
	}
	if body := text(t, ctx, "main"); strings.Contains(body, "ws-bob") {
		t.Error("the login page shows data")
	}
	do(t, ctx, "typing a wrong password", chromedp.SendKeys(chromedp.CSS("#user"), adminUser), chromedp.SendKeys(chromedp.CSS("#password"), "guess"))
	if status := browsertest.ClickLoad(ctx, t, "#login"); status != 401 {
		t.Errorf("a wrong password: status %d, want 401", status)
	}
	if s := text(t, ctx, "#error"); !strings.Contains(s, "wrong user or password") {
		t.Errorf("a wrong password: %q", s)
	}
	do(t, ctx, "typing the password", chromedp.SendKeys(chromedp.CSS("#password"), adminPassword))
	browsertest.ClickLoad(ctx, t, "#login")
	do(t, ctx, "logging in", chromedp.WaitVisible(chromedp.CSS("#failures table")))
	if s := text(t, ctx, "#failures"); !strings.Contains(s, readOnly) {
		t.Errorf("after the login the overview does not show the failure: %q", s)
	}
	browsertest.Screenshot(ctx, t, f.srv.URL+"/clients?failed=1", filepath.Join(t.TempDir(), "failed.png"))
	if h := hosts(t, ctx); len(h) != 2 {
		t.Errorf("failed clients after the login: %q", h)
	}
	browsertest.ClickLoad(ctx, t, "form.logout button")
	do(t, ctx, "logging out", chromedp.WaitVisible(chromedp.CSS("form.login")))
	do(t, ctx, "coming back", chromedp.Navigate(f.srv.URL+"/clients"), chromedp.WaitVisible(chromedp.CSS("form.login")))
}
