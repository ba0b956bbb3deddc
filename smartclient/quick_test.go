package smartclient

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/syncproto"
)

func TestWantRaw(t *testing.T) {
	loop := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	loop6 := &net.TCPAddr{IP: net.IPv6loopback, Port: 1}
	lan := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 1}
	tests := []struct {
		choice string
		addr   net.Addr
		raw    bool
	}{
		{CompressAuto, loop, true},
		{CompressAuto, loop6, true},
		{CompressAuto, lan, false},
		{"", lan, false},
		{CompressYes, loop, false},
		{CompressNo, lan, true},
	}
	for _, tc := range tests {
		if got := wantRaw(tc.choice, tc.addr); got != tc.raw {
			t.Errorf("wantRaw(%q, %v) = %v, want %v", tc.choice, tc.addr, got, tc.raw)
		}
	}
}

// TestUpToDateToAFreshClient: a server that says "up to date" to a client
// that named no manifest is refused, and nothing is installed.
func TestUpToDateToAFreshClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r, w := syncproto.NewReader(c), syncproto.NewWriter(c)
		if _, err := r.Expect(syncproto.MsgHello); err != nil {
			return
		}
		w.Write(syncproto.Welcome{ServerBuild: "7.00.240501A", Compatible: true, UpdatesEnabled: true})
		w.Flush()
		if _, err := r.Expect(syncproto.MsgGetManifest); err != nil {
			return
		}
		w.Write(syncproto.UpToDate{Build: "7.00.240501A"})
		w.Flush()
		r.Read() // the client's report, if any
	}()
	dir := t.TempDir()
	_, err = Sync(context.Background(), Options{Dir: dir, Server: ln.Addr().String(), OS: "linux", Yes: true, Timeout: 5 * time.Second})
	if !errors.Is(err, syncproto.ErrUnexpected) || !strings.Contains(err.Error(), "named no manifest") {
		t.Fatalf("got %v; want the lie refused", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a refused first sync left %d entries in the install folder", len(entries))
	}
}
