package appserver

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/syncproto"
)

// Defaults of the [LIMITS] keys, sized for 500 workstations that may all
// sit behind one address (a NAT, a terminal server): each may hold a sync
// and a staying session at once, so the per-address cap is generous and
// the total cap leaves room for several such sites.
const (
	defaultMaxConnections  = 4000
	defaultMaxPerAddress   = 1200
	defaultMaxStaySessions = 2000
	defaultHeartbeat       = 60 * time.Second
	defaultHelloTimeout    = 10 * time.Second
	defaultIdleTimeout     = 5 * time.Minute
	defaultWriteTimeout    = time.Minute
	// minMemoryLimitMB is the least [LIMITS] MemoryLimitMB: below it the
	// garbage collector would run all the time for an idle server.
	minMemoryLimitMB = 64
)

// Admission's fixed parameters.
const (
	// adminReserve is how many connections are let in over the caps to
	// see whether they are an administrator's: an administrator must be
	// able to update a server that is full.
	adminReserve = 4
	// reservedHelloTimeout bounds the wait for the first message of a
	// connection let in on the reserve, so that silent connections cannot
	// hold the reserve for long.
	reservedHelloTimeout = 2 * time.Second
	// busyRetry is the least wait a busy server asks for; the answer adds
	// up to as much again at random, so that the refused do not all come
	// back at once (and the client adds its own jitter on top).
	busyRetry = 5 * time.Second
	// busyLogEvery bounds the log of refused connections to one line per
	// period, whatever the flood.
	busyLogEvery = 10 * time.Second
	// busyWriteTimeout bounds the write of the busy answer: a peer that
	// does not read it is closed all the same.
	busyWriteTimeout = time.Second
	// busyHandshakeTimeout bounds the TLS handshake that precedes a busy
	// answer: enough for a flood's handshakes on a loaded machine.
	busyHandshakeTimeout = 3 * time.Second
	// maxBusyRefusals bounds the busy answers under way at once (each a
	// TLS handshake and a descriptor for up to two busyWriteTimeouts);
	// past it, a connection over the caps is closed at once.
	maxBusyRefusals = 1024
)

// limits counts the connections a server holds, in total and per client
// address, and decides which new ones it takes. It is safe for concurrent
// use.
type limits struct {
	maxConns, perAddr int
	log               *slog.Logger

	mu       sync.Mutex
	total    int
	byAddr   map[netip.Addr]int
	reserved int // connections let in on the admin reserve
	// Refusals since the last log line, and when that was.
	refused int
	logged  time.Time
	// busy holds a token for each busy answer under way.
	busy chan struct{}
	// Failed handshakes since the last log line, and when that was.
	failed       int
	failedLogged time.Time
}

func newLimits(log *slog.Logger, maxConns, perAddr int) *limits {
	return &limits{maxConns: maxConns, perAddr: perAddr, log: log, byAddr: map[netip.Addr]int{},
		busy: make(chan struct{}, maxBusyRefusals)}
}

// set changes the caps, for the connections that come from now on.
func (l *limits) set(maxConns, perAddr int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.maxConns, l.perAddr = maxConns, perAddr
}

// admission is the verdict on one new connection.
type admission struct {
	// release gives the connection's place back; call it once when the
	// connection ends. It is nil when the connection was refused.
	release func()
	// adminOnly marks a connection let in over a cap, on the reserve: it
	// is served only if its first message is an administrator's AdminKey.
	adminOnly bool
	// retry is, for a refused connection, how long the client should wait.
	retry time.Duration
}

// admit decides on a connection from addr before anything is read from
// it: under both caps it is let in; over one, it is let in on the admin
// reserve while that has room (see admission.adminOnly); otherwise it is
// refused with the wait to ask of the client.
func (l *limits) admit(addr net.Addr) admission {
	ip := addrIP(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	over := ""
	switch {
	case l.total >= l.maxConns:
		over = fmt.Sprintf("%d connections in total", l.maxConns)
	case l.byAddr[ip] >= l.perAddr:
		over = fmt.Sprintf("%d connections from %s", l.perAddr, ip)
	}
	adminOnly := false
	if over != "" {
		if l.reserved >= adminReserve {
			l.refusedLocked(addr, over)
			return admission{retry: busyRetry + rand.N(busyRetry)}
		}
		adminOnly = true
		l.reserved++
	}
	l.total++
	l.byAddr[ip]++
	var once sync.Once
	release := func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.total--
			if l.byAddr[ip]--; l.byAddr[ip] <= 0 {
				delete(l.byAddr, ip)
			}
			if adminOnly {
				l.reserved--
			}
		})
	}
	return admission{release: release, adminOnly: adminOnly}
}

// outcomeBusy is the outcome of a session refused as busy after its hello
// (see admission.adminOnly): it is logged by limits, not as a session.
const outcomeBusy = "refused: busy"

// refuse counts a connection refused after it was let in on the admin
// reserve, and logs it as refusedLocked does.
func (l *limits) refuse(addr net.Addr, over string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refusedLocked(addr, over)
}

// refusedLocked counts a refusal and logs at most one line per
// busyLogEvery, with the number refused since the last.
func (l *limits) refusedLocked(addr net.Addr, over string) {
	l.refused++
	now := time.Now()
	if now.Sub(l.logged) < busyLogEvery {
		return
	}
	l.log.Warn("server busy: refusing connections", "over", over, "last_client", addr.String(),
		"refused", l.refused, "connections", l.total)
	l.refused, l.logged = 0, now
}

// busySlot takes a place for a busy answer, and reports whether there was
// one; busyDone gives it back.
func (l *limits) busySlot() bool {
	select {
	case l.busy <- struct{}{}:
		return true
	default:
		return false
	}
}

func (l *limits) busyDone() { <-l.busy }

// handshakeFailed logs a connection that did not become a session (a
// failed TLS handshake, a plain client refused, bytes that are neither),
// at most one line per busyLogEvery with the number since the last, so
// that a flood of them cannot fill the disk.
func (l *limits) handshakeFailed(addr net.Addr, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failed++
	now := time.Now()
	if now.Sub(l.failedLogged) < busyLogEvery {
		return
	}
	l.log.Warn("session", "client", addr.String(), "outcome", "refused", "err", err, "refused_since_last_line", l.failed)
	l.failed, l.failedLogged = 0, now
}

// addrIP is the client's IP address, IPv4 in IPv6 unmapped, so that both
// spellings of one client count together; the zero Addr for a connection
// that has none (all such share one count).
func addrIP(addr net.Addr) netip.Addr {
	if ta, ok := addr.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	if ap, err := netip.ParseAddrPort(addr.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// busyError is the answer to a client the server is too busy to serve.
func busyError(retry time.Duration) *syncproto.Error {
	secs := uint16(min((retry+time.Second-1)/time.Second, 65535))
	return &syncproto.Error{Code: syncproto.CodeBusy, Retry: secs,
		Message: fmt.Sprintf("server is busy, retry in %d s", secs)}
}

// refuseBusy tells conn, without reading its hello, that the server is
// busy and the client should retry after retry; the caller closes conn. It
// is best effort and cheap: one small frame written within
// busyWriteTimeout. Then, as net/http does before it closes, it shuts its
// side and discards what the client sent (its hello) until the client
// closes or busyWriteTimeout passes: a connection closed with unread data
// is reset, and a reset can destroy the answer before the client reads it.
func refuseBusy(conn net.Conn, retry time.Duration) {
	conn.SetDeadline(time.Now().Add(busyWriteTimeout))
	if _, err := conn.Write(syncproto.AppendFrame(nil, busyError(retry))); err != nil {
		return
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	var discard [512]byte
	for {
		if _, err := conn.Read(discard[:]); err != nil {
			return
		}
	}
}
