// Package relay is a throttling TCP relay for the benchmarks: it stands for
// a slow link (a branch office's line) between a client and a server that
// both run on loopback.
//
// Every connection accepted is forwarded to one target address, in both
// directions. Each direction has one token bucket (golang.org/x/time/rate)
// shared by every connection through the relay, as a link's capacity is
// shared by everything that crosses it, and the relay forwards in writes of
// at most Chunk bytes, each taken from the bucket before it leaves, so that
// the rate is smooth at the scale of one chunk. A chunk then arrives Latency
// later (one way): it is serialised at the link's rate, then propagated.
//
// The relay is transparent: it carries the bytes as they are, so TLS between
// the two ends (a pinned server key included) works through it unchanged.
// The kernel's socket buffers on the relay's two sides act as the link's
// queues, as a router's buffer does.
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Config is the link the relay stands for.
type Config struct {
	// BytesPerSecond is the rate of each direction (required, > 0).
	BytesPerSecond float64
	// Latency is the one-way delay added to every chunk (0 for none).
	Latency time.Duration
	// Chunk is the largest write the relay makes, and the token bucket's
	// burst; 0 means DefaultChunk.
	Chunk int
}

// DefaultChunk is the write size when Config.Chunk is 0: small enough that
// at 20 Mbit/s a chunk leaves every 6.6 ms.
const DefaultChunk = 16 << 10

// MbitPerSecond converts a link's rate in Mbit/s (10^6 bits) to bytes per
// second.
func MbitPerSecond(mbit float64) float64 { return mbit * 1e6 / 8 }

// Relay forwards the connections accepted on its listener to a target.
type Relay struct {
	ln     net.Listener
	target string
	cfg    Config
	log    *slog.Logger
	up     *rate.Limiter // client to target
	down   *rate.Limiter // target to client

	upBytes, downBytes atomic.Int64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

// Listen starts a relay on addr (such as "127.0.0.1:0") that forwards to
// target. It serves until ctx is cancelled or Close is called.
func Listen(ctx context.Context, log *slog.Logger, addr, target string, cfg Config) (*Relay, error) {
	if !(cfg.BytesPerSecond > 0) {
		return nil, fmt.Errorf("relay to %s: the rate must be above 0 bytes per second (got %v)", target, cfg.BytesPerSecond)
	}
	if cfg.Latency < 0 {
		return nil, fmt.Errorf("relay to %s: the latency must not be negative (got %v)", target, cfg.Latency)
	}
	if cfg.Chunk < 0 {
		return nil, fmt.Errorf("relay to %s: the chunk size must not be negative (got %d)", target, cfg.Chunk)
	}
	if cfg.Chunk == 0 {
		cfg.Chunk = DefaultChunk
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("relay to %s: listening on %s: %w", target, addr, err)
	}
	r := &Relay{
		ln:     ln,
		target: target,
		cfg:    cfg,
		log:    log,
		up:     rate.NewLimiter(rate.Limit(cfg.BytesPerSecond), cfg.Chunk),
		down:   rate.NewLimiter(rate.Limit(cfg.BytesPerSecond), cfg.Chunk),
		conns:  map[net.Conn]struct{}{},
	}
	r.ctx, r.cancel = context.WithCancel(ctx)
	r.wg.Go(r.accept)
	go func() {
		<-r.ctx.Done()
		ln.Close()
	}()
	return r, nil
}

// Addr is the address the relay listens on.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Bytes returns what the relay has forwarded so far: up from the clients
// to the target, down from the target to the clients.
func (r *Relay) Bytes() (up, down int64) { return r.upBytes.Load(), r.downBytes.Load() }

// Close stops accepting, closes every connection and waits for the relay's
// goroutines.
func (r *Relay) Close() error {
	r.cancel()
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

func (r *Relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *Relay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	c.Close()
}

func (r *Relay) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if r.ctx.Err() == nil {
				r.log.Warn("relay: accepting", "addr", r.Addr(), "err", err)
			}
			return
		}
		r.wg.Go(func() { r.serve(c) })
	}
}

func (r *Relay) serve(client net.Conn) {
	if !r.track(client) {
		client.Close()
		return
	}
	defer r.untrack(client)
	var d net.Dialer
	target, err := d.DialContext(r.ctx, "tcp", r.target)
	if err != nil {
		r.log.Warn("relay: dialling the target", "target", r.target, "err", err)
		return
	}
	if !r.track(target) {
		target.Close()
		return
	}
	defer r.untrack(target)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() { errs[0] = r.pipe(target, client, r.up, &r.upBytes) })
	wg.Go(func() { errs[1] = r.pipe(client, target, r.down, &r.downBytes) })
	wg.Wait()
	if err := errors.Join(errs...); err != nil && r.ctx.Err() == nil {
		r.log.Debug("relay: connection ended", "client", client.RemoteAddr(), "err", err)
	}
}

// chunk is one write on its way: it may be written at due.
type chunk struct {
	data []byte
	due  time.Time
}

// pipe copies src to dst at the bucket's rate, each chunk Latency after it
// left, and half-closes dst at the end of src. On an error it closes both,
// so that the other direction ends too.
func (r *Relay) pipe(dst, src net.Conn, bucket *rate.Limiter, count *atomic.Int64) error {
	// The chunks in flight: those one latency's worth of the rate holds,
	// and a few more, so that the link stays full; the reader waits on
	// this queue when the writer is held up by a slow receiver.
	inFlight := 4
	if r.cfg.Latency > 0 {
		inFlight += int(r.cfg.BytesPerSecond*r.cfg.Latency.Seconds())/r.cfg.Chunk + 1
	}
	queue := make(chan chunk, inFlight)
	free := make(chan []byte, inFlight+2)
	for range inFlight + 2 {
		free <- make([]byte, r.cfg.Chunk)
	}
	var readErr error
	go func() {
		defer close(queue)
		for {
			buf := <-free
			n, err := src.Read(buf)
			if n > 0 {
				if werr := bucket.WaitN(r.ctx, n); werr != nil {
					readErr = werr
					return
				}
				queue <- chunk{data: buf[:n], due: time.Now().Add(r.cfg.Latency)}
			} else {
				free <- buf
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					readErr = err
				}
				return
			}
		}
	}()
	var writeErr error
	for c := range queue {
		if writeErr != nil {
			free <- c.data[:cap(c.data)]
			continue
		}
		if d := time.Until(c.due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-r.ctx.Done():
				t.Stop()
			}
		}
		n, err := dst.Write(c.data)
		count.Add(int64(n))
		free <- c.data[:cap(c.data)]
		if err != nil {
			writeErr = err
			// Unblock the reader, which may be waiting for the peer.
			src.Close()
		}
	}
	// The queue is closed, so the reader has returned and readErr is set.
	if err := errors.Join(readErr, writeErr); err != nil {
		dst.Close()
		src.Close()
		return err
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
