package smartclient

import (
	"net"
	"testing"
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
