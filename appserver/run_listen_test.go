package appserver

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"
)

// TestListenWaitsForTheAddress: a server whose port is still held (by the
// server it replaces, closing) listens once it is free, within the retry;
// past the retry it fails naming the cause.
func TestListenWaitsForTheAddress(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := held.Addr().String()
	if _, err := listen(context.Background(), slog.New(slog.DiscardHandler), addr, 200*time.Millisecond); err == nil || !addrInUse(err) {
		t.Fatalf("listen on a held address past the retry: %v, want address in use", err)
	}
	time.AfterFunc(300*time.Millisecond, func() { held.Close() })
	ln, err := listen(context.Background(), slog.New(slog.DiscardHandler), addr, 10*time.Second)
	if err != nil {
		t.Fatalf("listen once the address is free: %v", err)
	}
	ln.Close()
}
