package appserver

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/syncproto"
)

// TestPlainClientsAreToldWhy: a client that speaks plain frames to a
// server that wants TLS reads why in its own protocol version: an older
// SmartClient that it must be updated, one of ours set to plain TCP that
// the server wants TLS. Neither gets further.
func TestPlainClientsAreToldWhy(t *testing.T) {
	ts := startServer(t, linuxConfig(t, t.TempDir()), nil, nil)
	for _, tc := range []struct {
		name     string
		version  uint8
		wantCode syncproto.Code
		want     string
	}{
		{"SmartClient of protocol 5", 5, syncproto.CodeVersion, "install a newer SmartClient"},
		{"SmartClient of protocol 3", 3, syncproto.CodeVersion, "version 3"},
		{"ours, set to plain TCP", syncproto.Version, syncproto.CodePlaintext, "AllowPlaintext=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", ts.addr, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			// A hello of three strings, as versions before 6 sent it.
			payload := []byte{0, 12}
			payload = append(payload, "7.00.240501A"...)
			payload = append(payload, 0, 5)
			payload = append(payload, "linux"...)
			payload = append(payload, 0, 2, 'i', 'd')
			frame := append([]byte{'S', 'C', tc.version, byte(syncproto.MsgHello), 0, 0, 0, 0}, payload...)
			binary.BigEndian.PutUint32(frame[4:], uint32(len(payload)))
			if _, err := c.Write(frame); err != nil {
				t.Fatal(err)
			}
			answer, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if len(answer) < syncproto.HeaderSize || answer[0] != 'S' || answer[1] != 'C' || answer[2] != tc.version || syncproto.MsgType(answer[3]) != syncproto.MsgError {
				t.Fatalf("answer %q: want an Error frame of version %d", answer, tc.version)
			}
			m, err := syncproto.Decode(syncproto.MsgError, answer[syncproto.HeaderSize:])
			if err != nil {
				t.Fatal(err)
			}
			e := m.(*syncproto.Error)
			if e.Code != tc.wantCode || !strings.Contains(e.Message, tc.want) {
				t.Errorf("got %v; want %v saying %q", e, tc.wantCode, tc.want)
			}
		})
	}
	if log := ts.logs.String(); strings.Contains(log, "outcome=welcomed") {
		t.Errorf("a plain client was welcomed:\n%s", log)
	}
}

// TestNeitherTLSNorFrame: a connection that starts with anything else is
// closed without a word.
func TestNeitherTLSNorFrame(t *testing.T) {
	ts := startServer(t, linuxConfig(t, t.TempDir()), nil, nil)
	c, err := net.DialTimeout("tcp", ts.addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	if answer, _ := io.ReadAll(c); len(answer) != 0 {
		t.Errorf("answered %q", answer)
	}
	if !strings.Contains(ts.logs.String(), "neither a TLS handshake nor a frame") {
		t.Errorf("not logged:\n%s", ts.logs)
	}
	// A flood of them is logged at a bounded rate, not a line each.
	for range 50 {
		c, err := net.DialTimeout("tcp", ts.addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		io.ReadAll(c)
		c.Close()
	}
	if n := strings.Count(ts.logs.String(), "neither a TLS handshake nor a frame"); n > 2 {
		t.Errorf("%d log lines for 51 such connections, want at most 2", n)
	}
}

// TestAdminNeedsTLS: where plain TCP is allowed, an administrator's
// session is still refused without TLS: the password's seal does not
// authenticate the server, only the pinned TLS key does.
func TestAdminNeedsTLS(t *testing.T) {
	cfg := linuxConfig(t, t.TempDir())
	cfg.TLS.AllowPlaintext = true
	ts := startServer(t, cfg, nil, nil)
	c, err := net.DialTimeout("tcp", ts.addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	_, key, err := syncproto.NewAdminKey()
	if err != nil {
		t.Fatal(err)
	}
	w := syncproto.NewWriter(c)
	if err := w.Write(key); err != nil || w.Flush() != nil {
		t.Fatal(err)
	}
	_, err = syncproto.NewReader(c).Read()
	var pe *syncproto.Error
	if !errors.As(err, &pe) || pe.Code != syncproto.CodeDenied || !strings.Contains(pe.Message, "need TLS") {
		t.Fatalf("got %v; want %v saying TLS is needed", err, syncproto.CodeDenied)
	}
	// A plain client is still served where it is allowed.
	plain, err := net.DialTimeout("tcp", ts.addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	plain.SetDeadline(time.Now().Add(5 * time.Second))
	tc := &testClient{conn: plain, raw: plain, r: syncproto.NewReader(plain), w: syncproto.NewWriter(plain)}
	if _, err := tc.hello(srvBuild, "linux", "plain"); err != nil {
		t.Fatalf("a plain client of a server that allows it: %v", err)
	}
}
