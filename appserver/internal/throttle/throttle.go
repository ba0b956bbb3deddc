// Package throttle slows down password guessing, per remote address: the
// administrator's logins on the admin channel and on the web console go
// through one Logins, so that both count the same failures.
//
// After n failed logins from one address within Window, that address is
// refused without a check for Delay(n) (from the second failure: 1 s,
// then 2, 4, ... up to MaxWait), and only one of its attempts is checked
// at a time. A refusal never checks the password, so that a right guess
// cannot be told from a wrong one by its speed.
package throttle

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

const (
	// Window is how long a failure counts.
	Window = 15 * time.Minute
	// MaxWait bounds an address's wait.
	MaxWait = 30 * time.Second
	// forgetAbove is the count of addresses past which those whose
	// failures are older than Window are forgotten, so that the record
	// stays bounded by the addresses of the last Window.
	forgetAbove = 1000
)

// Delay is how long an address waits after its n-th failure.
func Delay(n int) time.Duration {
	switch {
	case n <= 1:
		return 0
	case n > 7:
		return MaxWait
	}
	return min(time.Second<<(n-2), MaxWait)
}

// Results told to Logins.Observe.
const (
	ResultOK        = "ok"
	ResultFailed    = "failed"
	ResultThrottled = "throttled"
)

// Logins counts failed logins by remote address. The zero value is ready
// to use; it is safe for concurrent use.
type Logins struct {
	// Observe, when set before use, is told of every attempt's result:
	// ResultOK, ResultFailed or ResultThrottled (for the metrics).
	Observe func(result string)

	mu    sync.Mutex
	fails map[string]fails
}

type fails struct {
	n         int
	last      time.Time
	notBefore time.Time // no attempt is checked before then
	checking  bool      // an attempt from the address is being checked
}

// Begin admits one login attempt from host: it returns how long the
// address must still wait (a refusal), or 0, and then the caller checks
// the password and must call End.
func (l *Logins) Begin(host string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fails == nil {
		l.fails = map[string]fails{}
	}
	f := l.fails[host]
	if wait := time.Until(f.notBefore); wait > 0 {
		l.tell(ResultThrottled)
		return wait
	}
	if f.checking {
		l.tell(ResultThrottled)
		return time.Second
	}
	f.checking = true
	l.fails[host] = f
	return 0
}

// End records the attempt begun from host: ok, or one more failure. It
// returns the address's failures within Window (0 after a success).
func (l *Logins) End(host string, ok bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.fails[host]
	f.checking = false
	if ok {
		l.tell(ResultOK)
		delete(l.fails, host)
		return 0
	}
	l.tell(ResultFailed)
	if time.Since(f.last) > Window {
		f.n = 0
	}
	f.n++
	f.last = time.Now()
	f.notBefore = f.last.Add(Delay(f.n))
	if l.fails == nil {
		l.fails = map[string]fails{}
	}
	l.fails[host] = f
	if len(l.fails) > forgetAbove {
		for h, g := range l.fails {
			if !g.checking && time.Since(g.last) > Window {
				delete(l.fails, h)
			}
		}
	}
	return f.n
}

// Failures returns host's failures within Window (for tests and logs).
func (l *Logins) Failures(host string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.fails[host]
	if time.Since(f.last) > Window {
		return 0
	}
	return f.n
}

// Forget clears every address's record.
func (l *Logins) Forget() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.fails)
}

// Fail records n failures from host now, as if they had been made (for
// tests that start from a throttled address).
func (l *Logins) Fail(host string, n int) {
	for range n {
		l.Begin(host)
		l.End(host, false)
		l.mu.Lock()
		f := l.fails[host]
		f.notBefore = time.Time{}
		l.fails[host] = f
		l.mu.Unlock()
	}
	l.mu.Lock()
	f := l.fails[host]
	f.notBefore = f.last.Add(Delay(f.n))
	l.fails[host] = f
	l.mu.Unlock()
}

func (l *Logins) tell(result string) {
	if l.Observe != nil {
		l.Observe(result)
	}
}

// Key is the address a login from addr (an IP, or IP:port) counts
// against: the IP, or for IPv6 its /64, since one host commonly holds a
// whole /64 and could otherwise change address at every guess.
func Key(addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.WithZone("").Prefix(64)
		return p.String()
	}
	return ip.String()
}
