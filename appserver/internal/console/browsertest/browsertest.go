// Package browsertest drives a headless Chromium from tests, with
// github.com/chromedp/chromedp: it finds the browser, starts it with the
// flags a container needs, and takes full-page screenshots. The console's
// tests and the appserver's end-to-end test use it.
//
// A test that needs the browser calls New: where no Chromium is found it
// skips, with a message, unless the environment's CI is "true", where it
// fails, so that CI never silently skips a browser test.
package browsertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Timeout bounds each browser of New: a test that hangs in the browser
// fails after it instead of running until the test binary's deadline.
const Timeout = 60 * time.Second

// Names are the executables looked for on PATH, in order, after the
// environment's CHROMIUM.
var Names = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// ErrNoChromium is wrapped by Find when no Chromium is on PATH.
var ErrNoChromium = errors.New("no Chromium")

// Find returns the path of a Chromium: the environment's CHROMIUM if set
// (an error if it is not an executable), else the first of Names on PATH.
func Find() (string, error) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		path, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("the environment's CHROMIUM=%s: %w", p, err)
		}
		return path, nil
	}
	for _, n := range Names {
		if path, err := exec.LookPath(n); err == nil {
			return path, nil
		}
	}
	return "", fmt.Errorf("%w: CHROMIUM is not set and none of %v is on PATH (install Debian's chromium: apt-get install chromium)", ErrNoChromium, Names)
}

// Chromium returns the path of a Chromium for t. Where none is found it
// skips t, with a message, unless the environment's CI is "true": then,
// and when CHROMIUM names no executable, it fails t. A Windows build
// (the tests under Wine, where CI runs the browser tests on Linux)
// skips, saying so.
func Chromium(t testing.TB) string {
	t.Helper()
	if runtime.GOOS == "windows" && os.Getenv("CHROMIUM") == "" {
		t.Skip("skipping the browser test on Windows: CI runs it on Linux with Debian's chromium (set CHROMIUM to run it here)")
	}
	path, err := Find()
	if err != nil {
		if !errors.Is(err, ErrNoChromium) || os.Getenv("CI") == "true" {
			t.Fatalf("browser test: %v (CI=true or CHROMIUM set: not skipped)", err)
		}
		t.Skipf("skipping the browser test: %v", err)
	}
	return path
}

// New starts a headless Chromium for t (see Chromium) in a profile under
// t.TempDir() and returns the context of its first tab, canceled after
// Timeout or at t's end, which stops the browser. The browser runs with
// no sandbox (tests run as root in containers), no GPU, a 1280x900 window
// and certificate errors ignored (test servers have their own CAs).
func New(t testing.TB) context.Context {
	t.Helper()
	return NewTimeout(t, Timeout)
}

// NewTimeout is New with another bound than Timeout, for a test that
// does more in one browser.
func NewTimeout(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	path := Chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "profile")),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancel()
	})
	// Start the browser now, so that a failure to start is reported as such.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return bctx
}

// Screenshot navigates the tab of ctx to url and saves a full-page PNG
// screenshot in file; it fails t if that fails or the image is blank.
func Screenshot(ctx context.Context, t testing.TB, url, file string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("screenshot: navigating to %s: %v", url, err)
	}
	Capture(ctx, t, file)
}

// Capture saves a full-page PNG screenshot of the tab of ctx as it is in
// file; it fails t if that fails or the image is blank.
func Capture(ctx context.Context, t testing.TB, file string) {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot for %s: %v", file, err)
	}
	if err := CheckPNG(buf); err != nil {
		t.Fatalf("screenshot for %s: %v", file, err)
	}
	if err := os.WriteFile(file, buf, 0o644); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
}

// CheckPNG checks that b is a PNG image that is not blank: it has pixels
// of more than one color.
func CheckPNG(b []byte) error {
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("decoding the PNG: %w", err)
	}
	r := img.Bounds()
	if r.Dx() < 16 || r.Dy() < 16 {
		return fmt.Errorf("the image is %dx%d pixels", r.Dx(), r.Dy())
	}
	colors := map[[4]uint32]bool{}
	for y := r.Min.Y; y < r.Max.Y; y += max(1, r.Dy()/64) {
		for x := r.Min.X; x < r.Max.X; x += max(1, r.Dx()/64) {
			cr, cg, cb, ca := img.At(x, y).RGBA()
			colors[[4]uint32{cr, cg, cb, ca}] = true
		}
	}
	if len(colors) < 3 {
		return fmt.Errorf("the image is blank: %d colors in %v", len(colors), r)
	}
	return nil
}

// ClickLoad clicks the element that the CSS selector css finds and waits
// until the page it leads to has loaded (a link, or a form's submit
// button); it returns the new page's HTTP status, and fails t if no page
// loads.
func ClickLoad(ctx context.Context, t testing.TB, css string) int {
	t.Helper()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(css)))
	if err != nil {
		t.Fatalf("clicking %s: %v", css, err)
	}
	return int(resp.Status)
}

// Text is the text of the first element that the CSS selector css finds,
// waiting for it to be visible; it fails t if there is none before the
// browser's deadline.
func Text(ctx context.Context, t testing.TB, css string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(css)))
	if err != nil {
		t.Fatalf("reading the text of %s: %v", css, err)
	}
	return s
}
