package smartclient_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/pki/pkitest"
	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/smartclient/internal/cli"
	"github.com/erpupdate/smartsync/syncproto"
)

// escapes is what a rogue server puts in its words: retitle the window,
// clear the screen, go back to the start of the line and fake a success.
const escapes = "\x1b]0;owned\x07\x1b[2J\rUpdated to build 9.99.991231Z."

// rogueServer answers every hello with answer's messages, then reads what
// the client says until it hangs up.
func rogueServer(t *testing.T, answer ...syncproto.Message) string {
	t.Helper()
	ln := pkitest.Listen(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r, w := syncproto.NewReader(c), syncproto.NewWriter(c)
				if _, err := r.Expect(syncproto.MsgHello); err != nil {
					return
				}
				for _, m := range answer {
					w.Write(m)
				}
				w.Flush()
				for {
					m, err := r.Read()
					if err != nil {
						return
					}
					if _, ok := m.(syncproto.Report); ok {
						w.Write(syncproto.ReportAck{})
						w.Flush()
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestServerTextNeverReachesTheTerminalRaw: every string a server sends for
// people is shown with its control characters escaped, and a build that is
// not a build is refused before it is stored or shown.
func TestServerTextNeverReachesTheTerminalRaw(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer []syncproto.Message
		code   int
		want   string // in stdout or stderr, escaped
	}{
		{"updates disabled", []syncproto.Message{syncproto.Welcome{ServerBuild: "7.00.240501A", UpdatesEnabled: false, Message: escapes}}, cli.ExitOK, `\x1b]0;owned\x07`},
		{"refusal", []syncproto.Message{&syncproto.Error{Code: syncproto.CodeRefused, Message: escapes}}, cli.ExitFailed, `the update server refused: request refused: \x1b]0;owned`},
		{"build", []syncproto.Message{syncproto.Welcome{ServerBuild: escapes, Compatible: true, UpdatesEnabled: true}}, cli.ExitFailed, `the server's build is not a build: \x1b]0;owned`},
		{"incompatible reason", []syncproto.Message{syncproto.Welcome{ServerBuild: "7.00.240501A", UpdatesEnabled: true, Message: escapes}}, cli.ExitDeclined, `\x1b[2J\x0dUpdated`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.name == "incompatible reason" {
				// An installed build, so that the client words the
				// server's reason rather than the first-install prompt.
				mustSync(t, newServer(t, defaultConf), dir, yes)
			}
			addr := rogueServer(t, tc.answer...)
			code, out, errOut := runCLI(t, "sync", "--server", addr, "--dir", dir, "--os", "linux")
			if code != tc.code {
				t.Errorf("exit %d, want %d; stdout %q, stderr %q", code, tc.code, out, errOut)
			}
			for _, s := range []string{out, errOut} {
				if strings.ContainsAny(s, "\x1b\x07\r") {
					t.Errorf("a control character reached the terminal: %q", s)
				}
			}
			if !strings.Contains(out+errOut, tc.want) {
				t.Errorf("output lacks %q: stdout %q, stderr %q", tc.want, out, errOut)
			}
			if tc.name == "build" {
				// Nothing of the build is stored: bookkeeping but the
				// client's id, kept from the first attempt on.
				onlyClientID(t, dir, "a sync with a server build that is not a build")
			}
		})
	}
}

// TestDisabledAfterExpiryIsAFreeze: "updates disabled" comes with nothing
// signed, so once the installed release's signature has expired, the
// workstation says it may be held back instead of reporting all is well;
// before expiry, disabled is disabled.
func TestDisabledAfterExpiryIsAFreeze(t *testing.T) {
	addr := rogueServer(t, syncproto.Welcome{ServerBuild: "7.00.240501A", UpdatesEnabled: false, Message: "updates are off"})
	for _, tc := range []struct {
		name    string
		expires time.Time
		want    error
	}{
		{"signature still valid", time.Now().Add(time.Hour), smartclient.ErrDisabled},
		{"signature expired", time.Now().Add(-time.Hour), smartclient.ErrFrozen},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			rec := fmt.Sprintf(`{"format":1,"highest":7,"installed":{"key":"6301a55e0dfc6d43","number":7,"build":"7.00.240501A","expires":%q}}`, tc.expires.UTC().Format(time.RFC3339))
			if err := os.MkdirAll(filepath.Join(dir, ".smartclient"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, smartclient.TrustFile), []byte(rec), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := smartclient.Sync(context.Background(), smartclient.Options{Dir: dir, Server: addr, OS: "linux", Timeout: 5 * time.Second})
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v; want %v", err, tc.want)
			}
			if tc.want == smartclient.ErrFrozen && (!strings.Contains(err.Error(), "release 7") || !strings.Contains(err.Error(), tc.expires.UTC().Format("2006-01-02"))) {
				t.Errorf("the message does not name the release and its expiry: %v", err)
			}
		})
	}
}
