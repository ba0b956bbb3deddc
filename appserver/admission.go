package appserver

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/erpupdate/smartsync/syncproto"
	"golang.org/x/time/rate"
)

// Admission of transfers: a session that needs the manifest (its client
// will fetch files) takes one of MaxTransfers slots before the manifest is
// sent, and holds it until its transfer ends: the last file it requested
// is sent (or it requested none), or its Report, an error or the
// connection's end comes first. A no-op check, whose GetManifest names the current
// manifest, is answered UpToDate without a slot: it is never queued behind
// transfers. With every slot taken, a session waits briefly (TransferWait)
// for one, then is told Error{CodeBusy, "server is busy, retry in N s",
// Retry: N} and closed: never a timeout.

const (
	// defaultTransferWait is how long a session waits for a transfer
	// slot before it is told busy: long enough to ride out the end of a
	// short transfer, short enough that a client never times out.
	defaultTransferWait = time.Second
	// minBusyWait and maxBusyWait clamp the N of a busy answer: at least
	// a second (the wire counts in seconds, and a client comes back
	// between N and 2N), at most 5 minutes (the client's own cap on
	// jitter), so that a wild estimate neither hammers the server nor
	// strands a client for an hour.
	minBusyWait = time.Second
	maxBusyWait = 5 * time.Minute
	// busyBuckets is the span, in seconds, of the refusals remembered
	// to estimate the queue.
	busyBuckets = 60
	// firstTransferGuess is the length assumed of a transfer before any
	// has ended and none is under way.
	firstTransferGuess = 2 * time.Second
)

// defaultMaxTransfers is [UPDATE] MaxTransfers when it is not set: four
// per CPU the Go runtime may use, and at least 8. A transfer is mostly
// waiting on the network and the disk (files go by sendfile, or through a
// zstd encoder at its fastest level, about 1 GB/s a core), so a few per
// core keep the CPUs busy; more only share the same link more thinly and
// hold each a transfer's buffers (a few MB with its encoder) for longer.
func defaultMaxTransfers() int { return max(8, 4*runtime.GOMAXPROCS(0)) }

// busyRetryAfter is the N of a busy answer, from the queue:
//
//	N = ceil((queued + 1) / slots) × avg, clamped to [minBusyWait, maxBusyWait]
//
// queued is the clients ahead of this one: those waiting for a slot now
// and those told busy lately, who will be back (see transfers.queued);
// slots is MaxTransfers; avg is the moving average of recent transfers'
// durations. (queued+1)/slots rounds up to the number of rounds of
// transfers before this client's turn, itself included.
func busyRetryAfter(queued, slots int, avg time.Duration) time.Duration {
	if slots < 1 {
		slots = 1
	}
	rounds := (max(queued, 0) + slots) / slots // ceil((queued+1)/slots)
	if avg <= 0 {
		avg = minBusyWait
	}
	n := time.Duration(rounds) * avg
	if n/time.Duration(rounds) != avg { // overflow
		n = maxBusyWait
	}
	return min(max(n, minBusyWait), maxBusyWait)
}

// transfers holds the transfer slots and what admission learns from them.
// It is safe for concurrent use.
type transfers struct {
	max  int
	wait time.Duration
	log  *slog.Logger
	// slots holds a token for every transfer under way.
	slots chan struct{}
	// server is the bandwidth of the whole server; nil for no limit.
	// perClient is the bandwidth of one session (0 for no limit).
	server    *rate.Limiter
	perClient int64

	busyTotal atomic.Int64 // clients told busy since the server started

	mu      sync.Mutex
	nextID  uint64
	running map[uint64]time.Time // start of every transfer under way
	peak    int                  // most transfers under way at once
	waiting int                  // sessions waiting for a slot now
	avg     time.Duration        // moving average of transfers' durations; 0: none ended yet
	// refusals per second over the last busyBuckets seconds, bucket
	// i holding the second whose Unix time is i mod busyBuckets.
	refusals [busyBuckets]int
	bucketAt [busyBuckets]int64
	lastN    time.Duration // the last N asked of a busy client
	// Refusals since the last log line, and when that was.
	unlogged int
	logged   time.Time
}

func newTransfers(log *slog.Logger, maxTransfers int, wait time.Duration, serverBPS, clientBPS int64) *transfers {
	if maxTransfers < 1 {
		maxTransfers = defaultMaxTransfers()
	}
	t := &transfers{max: maxTransfers, wait: wait, log: log, slots: make(chan struct{}, maxTransfers),
		perClient: clientBPS, running: map[uint64]time.Time{}}
	if serverBPS > 0 {
		t.server = newLimiter(serverBPS)
	}
	return t
}

// newLimiter returns a limiter of bps bytes a second whose burst, the most
// one wait may ask for, is a tenth of a second's worth, between 1 KiB and
// 64 KiB: small enough to keep the rate smooth, large enough that a fast
// limit is not a system call per kilobyte.
func newLimiter(bps int64) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(bps), int(min(max(bps/10, 1<<10), 64<<10)))
}

// throttled reports whether sessions' writes are limited at all.
func (t *transfers) throttled() bool { return t.server != nil || t.perClient > 0 }

// acquire takes a transfer slot for the client at addr, waiting up to
// t.wait for one. It returns the slot's release, to call once when the
// transfer ends, or the busy answer when none came free; stopping ends the
// wait early with the stopping server's answer.
func (t *transfers) acquire(ctx context.Context, stopping <-chan struct{}, addr net.Addr) (func(), *syncproto.Error) {
	select {
	case t.slots <- struct{}{}:
		return t.started(), nil
	default:
	}
	t.mu.Lock()
	t.waiting++
	t.mu.Unlock()
	timer := time.NewTimer(t.wait)
	defer timer.Stop()
	var refusal *syncproto.Error
	select {
	case t.slots <- struct{}{}:
	case <-timer.C:
		refusal = t.refuse(addr)
	case <-stopping:
		refusal = stoppingError
	case <-ctx.Done():
		refusal = stoppingError
	}
	t.mu.Lock()
	t.waiting--
	t.mu.Unlock()
	if refusal != nil {
		return nil, refusal
	}
	return t.started(), nil
}

// stoppingError is the answer to a session that asks for a transfer while
// the server stops.
var stoppingError = &syncproto.Error{Code: syncproto.CodeShuttingDown, Message: "server is stopping, retry in 30 s", Retry: 30}

// started records a transfer that took a slot and returns its release.
func (t *transfers) started() func() {
	t.mu.Lock()
	id := t.nextID
	t.nextID++
	t.running[id] = time.Now()
	t.peak = max(t.peak, len(t.running))
	t.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			took := time.Since(t.running[id])
			delete(t.running, id)
			// An exponentially weighted moving average, weight 1/8 to
			// the newest: it follows a change of load within a few
			// dozen transfers and is not thrown by one odd client.
			if t.avg == 0 {
				t.avg = took
			} else {
				t.avg += (took - t.avg) / 8
			}
			t.mu.Unlock()
			<-t.slots
		})
	}
}

// refuse counts a client told busy, logs it at a bounded rate (as
// limits.refusedLocked does) and returns its answer.
func (t *transfers) refuse(addr net.Addr) *syncproto.Error {
	t.busyTotal.Add(1)
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	n := busyRetryAfter(t.queuedLocked(now), t.max, t.avgLocked(now))
	t.lastN = n
	sec := now.Unix()
	i := sec % busyBuckets
	if t.bucketAt[i] != sec {
		t.bucketAt[i], t.refusals[i] = sec, 0
	}
	t.refusals[i]++
	t.unlogged++
	if now.Sub(t.logged) >= busyLogEvery {
		t.log.Warn("server busy: every transfer slot taken; telling clients to retry",
			"max_transfers", t.max, "last_client", addr.String(), "retry_in", n,
			"refused_since_last_line", t.unlogged, "waiting", t.waiting)
		t.unlogged, t.logged = 0, now
	}
	return busyError(n)
}

// queuedLocked estimates the clients ahead of a new one: those waiting for
// a slot (the new one aside) and those told busy within the last N asked
// (at most busyBuckets seconds), who come back between N and 2N later.
func (t *transfers) queuedLocked(now time.Time) int {
	span := int64(min(max((t.lastN+time.Second-1)/time.Second, 1), busyBuckets))
	q := t.waiting - 1
	sec := now.Unix()
	for s := sec - span + 1; s <= sec; s++ {
		if i := s % busyBuckets; t.bucketAt[i] == s {
			q += t.refusals[i]
		}
	}
	return max(q, 0)
}

// avgLocked is the average transfer's duration: the moving average once a
// transfer has ended; before that, the longest of those under way (each
// will take at least that long), or firstTransferGuess.
func (t *transfers) avgLocked(now time.Time) time.Duration {
	if t.avg > 0 {
		return t.avg
	}
	longest := time.Duration(0)
	for _, start := range t.running {
		longest = max(longest, now.Sub(start))
	}
	if longest == 0 {
		return firstTransferGuess
	}
	return longest
}

// AdmissionStats is what admission control has counted since the server
// started serving, for tests and metrics.
type AdmissionStats struct {
	// MaxTransfers is the number of transfer slots.
	MaxTransfers int
	// Transfers is the transfers under way now, and PeakTransfers the
	// most that were under way at once.
	Transfers, PeakTransfers int
	// Waiting is the sessions waiting for a slot now.
	Waiting int
	// Busy is the clients told busy because every slot was taken.
	Busy int64
	// AvgTransfer is the moving average of the transfers' durations
	// (0 before one ended).
	AvgTransfer time.Duration
}

// AdmissionStats returns the counts of admission control; zero before
// Serve starts.
func (s *Server) AdmissionStats() AdmissionStats {
	s.mu.Lock()
	t := s.transfers
	s.mu.Unlock()
	if t == nil {
		return AdmissionStats{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return AdmissionStats{MaxTransfers: t.max, Transfers: len(t.running), PeakTransfers: t.peak,
		Waiting: t.waiting, Busy: t.busyTotal.Load(), AvgTransfer: t.avg}
}

// throttledConn limits the bytes written to a session's connection, once
// the session holds a transfer slot, to its own limit and the server's.
// The waits for bandwidth end with the session's context (the server's
// stop, after its grace period) and do not count against the write
// deadline, which is for a client that stops reading: the deadline is
// pushed back by the time waited. It has no ReadFrom, so that a throttled
// raw file goes through Write rather than sendfile(2).
type throttledConn struct {
	net.Conn
	ctx context.Context
	// limiters are the session's and the server's limiters, set when the
	// session takes a transfer slot and cleared when it gives it back.
	limiters atomic.Pointer[[]*rate.Limiter]

	mu       sync.Mutex
	deadline time.Time // the write deadline last set; zero for none
}

func (c *throttledConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *throttledConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *throttledConn) Write(p []byte) (int, error) {
	ls := c.limiters.Load()
	if ls == nil {
		return c.Conn.Write(p)
	}
	piece := math.MaxInt
	for _, l := range *ls {
		piece = min(piece, l.Burst())
	}
	written := 0
	for len(p) > 0 {
		k := min(len(p), piece)
		start := time.Now()
		for _, l := range *ls {
			if err := l.WaitN(c.ctx, k); err != nil {
				return written, fmt.Errorf("waiting for bandwidth: %w: %w", net.ErrClosed, err)
			}
		}
		if waited := time.Since(start); waited > time.Millisecond {
			c.mu.Lock()
			if !c.deadline.IsZero() {
				c.deadline = c.deadline.Add(waited)
				c.Conn.SetWriteDeadline(c.deadline)
			}
			c.mu.Unlock()
		}
		n, err := c.Conn.Write(p[:k])
		written += n
		if err != nil {
			return written, err
		}
		p = p[k:]
	}
	return written, nil
}

// throttle starts (on) or ends the session's bandwidth limits.
func (c *throttledConn) throttle(t *transfers, on bool) {
	if !on {
		c.limiters.Store(nil)
		return
	}
	var ls []*rate.Limiter
	if t.perClient > 0 {
		ls = append(ls, newLimiter(t.perClient))
	}
	if t.server != nil {
		ls = append(ls, t.server)
	}
	c.limiters.Store(&ls)
}

// describeAdmission is the summary's line of the admission keys.
func describeAdmission(cfg *Config) string {
	bw := func(n int64) string {
		if n == 0 {
			return "no limit"
		}
		return formatBytesPerSecond(n)
	}
	return fmt.Sprintf("[UPDATE] MaxTransfers=%d transfers at once; MaxBytesPerSecond %s, MaxClientBytesPerSecond %s",
		cmp.Or(cfg.MaxTransfers, defaultMaxTransfers()), bw(cfg.MaxBytesPerSecond), bw(cfg.MaxClientBytesPerSecond))
}

// formatBytesPerSecond writes a bandwidth as the keys take it: in the
// largest of G, M and K that divides it, with its number of bytes.
func formatBytesPerSecond(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 30, "G"}, {1 << 20, "M"}, {1 << 10, "K"}} {
		if n%u.size == 0 {
			return fmt.Sprintf("%d%s (%d bytes/s)", n/u.size, u.name, n)
		}
	}
	return fmt.Sprintf("%d bytes/s", n)
}
