package appserver

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
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

	// minSlotBytesPerSecond is the least bandwidth a transfer slot is
	// given under MaxBytesPerSecond, and the smallest
	// MaxClientBytesPerSecond: twice the client's minimum rate
	// (smartclient.DefaultMinRate, 32 KiB/s over each 60 s), so that a
	// client held to its share never fails its own check. Where
	// MaxBytesPerSecond / MaxTransfers is less, there are fewer slots:
	// the clients past them are told busy, which they wait out, rather
	// than fed a trickle they would give up on.
	minSlotBytesPerSecond = 64 << 10
	// clientMinRate is the client's default minimum rate, for the
	// messages that explain minSlotBytesPerSecond.
	clientMinRate = 32 << 10

	// defaultTransferMinRate and defaultTransferRateWindow are the
	// progress floor of a slot: the bytes a second its session's writes
	// must average over each window of the time spent writing (time held
	// back by a bandwidth limit, or spent reading files, indexing or
	// waiting for the client's requests, is not counted), else the
	// session is closed and its slot goes to the next client. A quarter
	// of the client's own minimum: a client whose line is that slow has
	// given up by itself, unless its data compresses more than 4:1.
	defaultTransferMinRate    = 8 << 10
	defaultTransferRateWindow = time.Minute
	// defaultRequestWait bounds, in all, the time a session holding a slot
	// waits for the client's messages (its file requests, its answers to
	// a manifest sketch): a client plans and cuts its bases in seconds,
	// and one that sends nothing must not hold a slot for IdleTimeout.
	defaultRequestWait = time.Minute
)

// effectiveTransfers is the number of transfer slots: maxTransfers (0 for
// the default), fewer when serverBPS (0 for no limit) would give each
// less than minSlotBytesPerSecond, and at least one.
func effectiveTransfers(maxTransfers int, serverBPS int64) int {
	if maxTransfers < 1 {
		maxTransfers = defaultMaxTransfers()
	}
	if serverBPS > 0 {
		maxTransfers = int(min(int64(maxTransfers), max(1, serverBPS/minSlotBytesPerSecond)))
	}
	return maxTransfers
}

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
	max        int // slots (see effectiveTransfers)
	configured int // MaxTransfers as set
	wait       time.Duration
	log        *slog.Logger
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
	slots := effectiveTransfers(maxTransfers, serverBPS)
	t := &transfers{max: slots, configured: maxTransfers, wait: wait, log: log, slots: make(chan struct{}, slots),
		perClient: clientBPS, running: map[uint64]time.Time{}}
	if serverBPS > 0 {
		t.server = newLimiter(serverBPS)
	}
	return t
}

// inherit carries what old learnt into t, which replaces it (see
// Server.Reload): the count of clients told busy, the peak and the
// average transfer.
func (t *transfers) inherit(old *transfers) {
	old.mu.Lock()
	peak, avg := old.peak, old.avg
	old.mu.Unlock()
	t.busyTotal.Store(old.busyTotal.Load())
	t.mu.Lock()
	t.peak, t.avg = peak, avg
	t.mu.Unlock()
}

// logFewer says when MaxBytesPerSecond (serverBPS) leaves fewer slots
// than MaxTransfers.
func (t *transfers) logFewer(log *slog.Logger, serverBPS int64) {
	if t.max < t.configured {
		log.Info("fewer transfers at once than MaxTransfers: MaxBytesPerSecond gives each its least share; the clients past them are told busy",
			"max_transfers", t.configured, "transfers_at_once", t.max,
			"max_bytes_per_second", serverBPS, "least_per_transfer", minSlotBytesPerSecond)
	}
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
// limits.refusedLocked does) and returns its answer. The line is written
// after the lock is let go: a slow log must not hold up admission.
func (t *transfers) refuse(addr net.Addr) *syncproto.Error {
	t.busyTotal.Add(1)
	t.mu.Lock()
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
	var line []any
	if now.Sub(t.logged) >= busyLogEvery {
		line = []any{"max_transfers", t.max, "last_client", addr.String(), "retry_in", n,
			"refused_since_last_line", t.unlogged, "waiting", t.waiting}
		t.unlogged, t.logged = 0, now
	}
	t.mu.Unlock()
	if line != nil {
		t.log.Warn("server busy: every transfer slot taken; telling clients to retry", line...)
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

// transferConn is a session's connection as its transfer sees it: once
// the session holds a transfer slot, its writes are limited to its own
// bandwidth limit and the server's, and metered for the slot's progress
// floor (see watchProgress). The waits for bandwidth end with the
// session's context (the server's stop, after its grace period) and do
// not count against the write deadline, which is for a client that stops
// reading: the deadline is pushed back by the time waited. It has no
// ReadFrom, so that a throttled raw file goes through Write rather than
// sendfile(2); sendfileConn adds one where no limit applies.
type transferConn struct {
	net.Conn
	ctx context.Context
	// limiters are the session's and the server's limiters, and meter
	// counts its writes, while the session holds a transfer slot; both
	// are nil otherwise.
	limiters atomic.Pointer[[]*rate.Limiter]
	meter    atomic.Pointer[meter]

	mu       sync.Mutex
	deadline time.Time // the write deadline last set; zero for none
}

// newTransferConn wraps a session's connection: in a sendfileConn when
// no bandwidth limit applies and conn can send a file by itself.
func newTransferConn(ctx context.Context, conn net.Conn, t *transfers) (net.Conn, *transferConn) {
	tc := &transferConn{Conn: conn, ctx: ctx}
	if _, ok := conn.(io.ReaderFrom); ok && !t.throttled() {
		return sendfileConn{tc}, tc
	}
	return tc, tc
}

func (c *transferConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *transferConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *transferConn) Write(p []byte) (int, error) {
	m := c.meter.Load()
	var ls []*rate.Limiter
	if lp := c.limiters.Load(); lp != nil {
		ls = *lp
	}
	if m == nil && ls == nil {
		return c.Conn.Write(p)
	}
	piece := meterPiece
	for _, l := range ls {
		piece = min(piece, l.Burst())
	}
	written := 0
	for len(p) > 0 {
		k := min(len(p), piece)
		if err := c.waitBandwidth(ls, k); err != nil {
			return written, err
		}
		m.begin()
		n, err := c.Conn.Write(p[:k])
		m.end(int64(n))
		written += n
		if err != nil {
			return written, err
		}
		p = p[k:]
	}
	return written, nil
}

// waitBandwidth waits until every limiter of ls lets n bytes go, and
// pushes the write deadline back by the time waited.
func (c *transferConn) waitBandwidth(ls []*rate.Limiter, n int) error {
	if len(ls) == 0 {
		return nil
	}
	start := time.Now()
	for _, l := range ls {
		if err := l.WaitN(c.ctx, n); err != nil {
			return fmt.Errorf("waiting for bandwidth: %w: %w", net.ErrClosed, err)
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
	return nil
}

// start begins the session's transfer: its writes are limited and
// metered from now on. end stops both.
func (c *transferConn) start(t *transfers) *meter {
	var ls []*rate.Limiter
	if t.perClient > 0 {
		ls = append(ls, newLimiter(t.perClient))
	}
	if t.server != nil {
		ls = append(ls, t.server)
	}
	if ls != nil {
		c.limiters.Store(&ls)
	}
	m := &meter{}
	c.meter.Store(m)
	return m
}

func (c *transferConn) end() {
	c.limiters.Store(nil)
	c.meter.Store(nil)
}

// sendfileConn is a transferConn over a connection that sends a file by
// itself (TCP: sendfile(2)) and no bandwidth limit applies to: bytes go
// from the file to the socket in the kernel, metered all the same.
type sendfileConn struct{ *transferConn }

func (c sendfileConn) ReadFrom(r io.Reader) (int64, error) {
	rf := c.Conn.(io.ReaderFrom)
	m := c.meter.Load()
	lr, ok := r.(*io.LimitedReader)
	if m == nil || !ok {
		m.begin()
		n, err := rf.ReadFrom(r)
		m.end(n)
		return n, err
	}
	// In pieces of the file, each still by sendfile(2), so that the
	// meter sees a slow client's progress within a chunk.
	var total int64
	for lr.N > 0 {
		m.begin()
		n, err := rf.ReadFrom(&io.LimitedReader{R: lr.R, N: min(lr.N, meterPiece)})
		m.end(n)
		total += n
		lr.N -= n
		if err != nil || n == 0 {
			return total, err
		}
	}
	return total, nil
}

// unthrottled is the connection under a transferConn, or c.
func unthrottled(c net.Conn) net.Conn {
	switch tc := c.(type) {
	case *transferConn:
		return tc.Conn
	case sendfileConn:
		return tc.Conn
	}
	return c
}

// meterPiece is the most a metered write hands the connection at once:
// the meter counts a write's bytes when it ends, so pieces much smaller
// than what the floor asks over its window (8 KiB/s over 60 s) keep its
// measure of a slow client close to the truth.
const meterPiece = 64 << 10

// meter counts the bytes a session holding a transfer slot writes, and
// the time the connection took to take them: time spent waiting for
// bandwidth, reading files or waiting for the client's requests is not
// counted, so that the progress floor measures the client and its line
// alone. A nil meter counts nothing.
type meter struct {
	mu    sync.Mutex
	sent  int64
	took  time.Duration // in writes that ended
	since time.Time     // the start of the write under way; zero for none
}

func (m *meter) begin() {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.since = time.Now()
	m.mu.Unlock()
}

func (m *meter) end(n int64) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.took += time.Since(m.since)
	m.since = time.Time{}
	m.sent += n
	m.mu.Unlock()
}

// read returns the bytes written so far and the time spent writing, the
// write under way included.
func (m *meter) read(now time.Time) (int64, time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	took := m.took
	if !m.since.IsZero() {
		took += now.Sub(m.since)
	}
	return m.sent, took
}

// watchProgress holds a transfer to its progress floor: every fifth of
// window it compares the bytes m counted over the last window of writing
// with minRate a second, and when they fall short it calls fail, once,
// with what it measured, and returns. The first window of writing is the
// transfer's grace. stop ends the watch and waits for it.
func watchProgress(m *meter, minRate int64, window time.Duration, fail func(sent int64, over time.Duration)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(max(window/5, time.Millisecond))
		defer tick.Stop()
		type sample struct {
			sent int64
			took time.Duration
		}
		samples := []sample{{}}
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				sent, took := m.read(now)
				// The latest sample at least a window of writing ago.
				k := -1
				for i, s := range samples {
					if took-s.took >= window {
						k = i
					}
				}
				if k >= 0 {
					samples = samples[k:]
					got, over := sent-samples[0].sent, took-samples[0].took
					if float64(got) < float64(minRate)*over.Seconds() {
						fail(got, over)
						return
					}
				}
				// Samples a fifth of a window of writing apart, so
				// that a transfer whose writes are quick keeps few.
				if took-samples[len(samples)-1].took >= window/5 {
					samples = append(samples, sample{sent, took})
				}
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// describeAdmission is the summary's line of the admission keys.
func describeAdmission(cfg *Config) string {
	bw := func(n int64) string {
		if n == 0 {
			return "no limit"
		}
		return formatBytesPerSecond(n)
	}
	n := cmp.Or(cfg.MaxTransfers, defaultMaxTransfers())
	transfers := fmt.Sprintf("MaxTransfers=%d transfers at once", n)
	if slots := effectiveTransfers(n, cfg.MaxBytesPerSecond); slots < n {
		transfers = fmt.Sprintf("MaxTransfers=%d, of which %d at once (MaxBytesPerSecond gives each transfer at least %dK a second)",
			n, slots, minSlotBytesPerSecond>>10)
	}
	return fmt.Sprintf("[UPDATE] %s; MaxBytesPerSecond %s, MaxClientBytesPerSecond %s",
		transfers, bw(cfg.MaxBytesPerSecond), bw(cfg.MaxClientBytesPerSecond))
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
