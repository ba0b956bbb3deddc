package smartclient_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient"
)

// TestConnectionLostOnARealReset: a connection the peer resets is a lost
// connection, in the words of the system the test runs on (Windows says
// WSAECONNRESET, not ECONNRESET), both for a read and for a write.
func TestConnectionLostOnARealReset(t *testing.T) {
	if smartclient.ConnectionLost(errors.New("disk full")) {
		t.Error("ConnectionLost of another error")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Linger 0: the close sends a reset, as a crashed or
			// restarting server's system does.
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		// The reset may come back while the connection is being made.
		if !smartclient.ConnectionLost(err) {
			t.Errorf("ConnectionLost(%v) = false; a reset is a lost connection", err)
		}
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	_, rerr := io.ReadAll(c)
	var werr error
	for i := 0; i < 100 && werr == nil; i++ {
		_, werr = c.Write(make([]byte, 64<<10))
	}
	for _, err := range []error{rerr, werr} {
		if err == nil {
			continue // a reset read as an end of stream, on some systems
		}
		if !smartclient.ConnectionLost(err) {
			t.Errorf("ConnectionLost(%v) = false; a reset is a lost connection", err)
		}
	}
	if rerr == nil && werr == nil {
		t.Fatal("neither the read nor the writes saw the reset")
	}
}
