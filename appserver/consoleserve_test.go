package appserver

import (
	"crypto/tls"
	"errors"
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
// connections are held at once, and consoleMaxPerAddr from one address.
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

	// The caps on connections. A dialer from each of 127.0.0.1-2 (both
	// loopback).
	from := func(n int) *net.Dialer {
		return &net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(n))}}
	}
	hold := func(addr string, n, count int) []net.Conn {
		t.Helper()
		var held []net.Conn
		for range count {
			c, err := from(n).Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
		}
		return held
	}
	// On loopback, the cap on all: the connection past it waits for
	// one to close. A transport of its own: DefaultTransport keeps a
	// connection of the first GET, already past the cap.
	held := hold(plain.Addr().String(), 1, consoleMaxConns)
	client := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	if _, err := client.Get("http://" + plain.Addr().String() + "/"); err == nil {
		t.Errorf("a request past %d connections was served at once", consoleMaxConns)
	}
	for _, c := range held {
		c.Close()
	}

	// Beyond loopback (the TLS console), one address's share: the
	// connection past it is closed at once, and another address is
	// served.
	if c, err := from(2).Dial("tcp", secure.Addr().String()); err != nil {
		t.Logf("this system cannot dial from 127.0.0.2 (%v): the share of one address is not tested", err)
	} else {
		c.Close()
		pinFrom := func(n int) *http.Client {
			tr := pin.Transport.(*http.Transport).Clone()
			tr.DisableKeepAlives, tr.DialContext = true, from(n).DialContext
			return &http.Client{Timeout: 5 * time.Second, Transport: tr}
		}
		shared := hold(secure.Addr().String(), 1, consoleMaxPerAddr)
		// Until the server has accepted the held connections, a request
		// from their address may still be served.
		var past error
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			resp, err := pinFrom(1).Get("https://" + secure.Addr().String() + "/")
			if err != nil {
				past = err
				break
			}
			resp.Body.Close()
		}
		var ne net.Error
		if past == nil || errors.As(past, &ne) && ne.Timeout() {
			t.Errorf("a request past %d connections from one address: %v, want closed at once", consoleMaxPerAddr, past)
		}
		if got := get(pinFrom(2), "https://"+secure.Addr().String()+"/"); got != "console" {
			t.Errorf("from another address while one holds its share, GET = %q", got)
		}
		if !strings.Contains(logs.String(), `msg="web console: too many connections from one address; closing the new ones" client=127.0.0.1:`) {
			t.Errorf("no log line of the connection closed:\n%s", logs)
		}
		for _, c := range shared {
			c.Close()
		}
	}
	client.Timeout = 5 * time.Second
	if got := get(client, "http://"+plain.Addr().String()+"/"); got != "console" {
		t.Errorf("after the connections closed, GET = %q", got)
	}
}
