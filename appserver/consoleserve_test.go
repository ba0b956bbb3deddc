package appserver

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/pki"
	"github.com/erpupdate/smartsync/internal/testtree"
)

// TestStartConsole: the console's listener serves plain HTTP, or HTTPS
// with the server's certificate; a taken address is logged as an error
// and leaves the rest of the server alone; at most consoleMaxConns
// connections are held at once.
func TestStartConsole(t *testing.T) {
	cfg := linuxConfig(t, t.TempDir())
	ts := startServer(t, cfg, nil, nil)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "console") })
	logs := &testtree.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))

	get := func(c *http.Client, url string) string {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}

	plain := startConsole(t.Context(), log, "127.0.0.1:0", time.Second, nil, h)
	if plain == nil {
		t.Fatalf("no console:\n%s", logs)
	}
	defer plain.stop()
	if got := get(http.DefaultClient, "http://"+plain.Addr().String()+"/"); got != "console" {
		t.Errorf("plain GET = %q", got)
	}

	secure := startConsole(t.Context(), log, "127.0.0.1:0", time.Second, ts.srv.tlsConfig, h)
	if secure == nil {
		t.Fatalf("no TLS console:\n%s", logs)
	}
	defer secure.stop()
	// The certificate is the server's own: a client that pins it
	// connects (the console's users accept it once in their browser).
	pin := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if pki.Fingerprint(cs.PeerCertificates[0]) != ts.srv.Fingerprint() {
				t.Errorf("the console's certificate is not the server's")
			}
			return nil
		},
	}}}
	if got := get(pin, "https://"+secure.Addr().String()+"/"); got != "console" {
		t.Errorf("TLS GET = %q", got)
	}
	if resp, err := http.Get("http://" + secure.Addr().String() + "/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP to the TLS console was served")
		}
	}

	// A taken address: no console, an error naming it, and nothing else.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if cs := startConsole(t.Context(), log, taken.Addr().String(), 100*time.Millisecond, nil, h); cs != nil {
		cs.stop()
		t.Fatal("a console on a taken address")
	}
	if text := logs.String(); !strings.Contains(text, "level=ERROR msg=\"the web console is not served; the updates are\" listen="+taken.Addr().String()) {
		t.Errorf("no error for the taken address:\n%s", text)
	}

	// The cap on connections: the one past it waits for one to close.
	held := make([]net.Conn, 0, consoleMaxConns)
	for range consoleMaxConns {
		c, err := net.Dial("tcp", plain.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	// A transport of its own: DefaultTransport keeps a connection of
	// the first GET, already past the cap.
	client := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	if _, err := client.Get("http://" + plain.Addr().String() + "/"); err == nil {
		t.Errorf("a request past %d connections was served at once", consoleMaxConns)
	}
	for _, c := range held {
		c.Close()
	}
	client.Timeout = 5 * time.Second
	if got := get(client, "http://"+plain.Addr().String()+"/"); got != "console" {
		t.Errorf("after the connections closed, GET = %q", got)
	}
}
