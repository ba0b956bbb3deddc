package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"
)

// echoServer starts a real TCP server on loopback that, for every
// connection, reads everything the client sends until its half-close and
// then writes back reply bytes (nil: what it read), and closes.
func echoServer(t *testing.T, reply []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				got, err := io.ReadAll(c)
				if err != nil {
					return
				}
				out := reply
				if out == nil {
					out = got
				}
				c.Write(out)
			}()
		}
	}()
	return ln.Addr().String()
}

func startRelay(t *testing.T, target string, cfg Config) *Relay {
	t.Helper()
	r, err := Listen(t.Context(), slog.New(slog.DiscardHandler), "127.0.0.1:0", target, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// exchange sends up through the relay, half-closes, and returns what came
// back and when the last byte of it came.
func exchange(t *testing.T, addr string, up []byte) ([]byte, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(up)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if werr := <-errc; werr != nil {
		return got, werr
	}
	return got, err
}

func random(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestRelayRate sends about 1 MB through the relay, in each direction and
// over two connections at once (which share the link), and fails when the
// bytes came through faster than the rate allows, beyond one chunk of
// burst and a 5% margin, or came through altered.
func TestRelayRate(t *testing.T) {
	const bps = 2e6 // 16 Mbit/s: about 1 MB in 0.5 s
	const margin = 1.05
	cases := []struct {
		name      string
		conns     int
		up, down  int // bytes each connection sends and receives
		limitedBy int // bytes of the most loaded direction, in all
	}{
		{name: "up", conns: 1, up: 1 << 20, down: 16, limitedBy: 1 << 20},
		{name: "down", conns: 1, up: 16, down: 1 << 20, limitedBy: 1 << 20},
		{name: "two connections share the link", conns: 2, up: 16, down: 512 << 10, limitedBy: 1 << 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reply := random(t, tc.down)
			r := startRelay(t, echoServer(t, reply), Config{BytesPerSecond: bps})
			up := random(t, tc.up)
			var wg sync.WaitGroup
			errs := make([]error, tc.conns)
			t0 := time.Now()
			for i := range tc.conns {
				wg.Go(func() {
					got, err := exchange(t, r.Addr(), up)
					if err == nil && !bytes.Equal(got, reply) {
						err = io.ErrUnexpectedEOF
					}
					errs[i] = err
				})
			}
			wg.Wait()
			took := time.Since(t0)
			for i, err := range errs {
				if err != nil {
					t.Fatalf("connection %d: %v", i, err)
				}
			}
			// The bucket starts full (one chunk per direction), so that
			// much goes at once.
			least := time.Duration(float64(tc.limitedBy-DefaultChunk) / (bps * margin) * float64(time.Second))
			if took < least {
				t.Errorf("%d bytes went through in %v, faster than %.0f bytes/s allows (at least %v with a %.0f%% margin)",
					tc.limitedBy, took, bps, least, (margin-1)*100)
			}
			gotUp, gotDown := r.Bytes()
			if gotUp != int64(tc.conns*tc.up) || gotDown != int64(tc.conns*tc.down) {
				t.Errorf("relay counted %d up and %d down, want %d and %d", gotUp, gotDown, tc.conns*tc.up, tc.conns*tc.down)
			}
			t.Logf("%d bytes in %v: %.0f bytes/s (rate %.0f)", tc.limitedBy, took, float64(tc.limitedBy)/took.Seconds(), bps)
		})
	}
}

// TestRelayLatency: a request and its answer take at least two one-way
// latencies.
func TestRelayLatency(t *testing.T) {
	const latency = 50 * time.Millisecond
	r := startRelay(t, echoServer(t, nil), Config{BytesPerSecond: 1e9, Latency: latency})
	t0 := time.Now()
	got, err := exchange(t, r.Addr(), []byte("ping"))
	took := time.Since(t0)
	if err != nil || string(got) != "ping" {
		t.Fatalf("got %q, %v; want ping", got, err)
	}
	if took < 2*latency {
		t.Errorf("a round trip took %v, under twice the one-way latency %v", took, latency)
	}
}

func TestListenRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"zero rate", Config{}, "the rate must be above 0"},
		{"negative latency", Config{BytesPerSecond: 1, Latency: -time.Second}, "the latency must not be negative"},
		{"negative chunk", Config{BytesPerSecond: 1, Chunk: -1}, "the chunk size must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Listen(context.Background(), slog.New(slog.DiscardHandler), "127.0.0.1:0", "127.0.0.1:1", tc.cfg)
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
