package appserver

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// acceptBackoff bounds the wait before accepting again after an error that
// passes (out of file descriptors or memory, a connection aborted before
// it was accepted), as net/http's server waits: from 5 ms, doubled each
// time, to 1 s.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// maxOddAcceptErrors is how many errors in a row not known to pass (see
// acceptAgain) the server tries again after, each after the backoff (about
// 3 s in all), before it stops serving with the error: a listener broken
// for good ends the server, so that its service manager restarts it.
const maxOddAcceptErrors = 10

// acceptAgain reports whether Accept's error passes with time: the server
// then waits and accepts again instead of stopping, since the sessions it
// holds end and give their descriptors back.
func acceptAgain(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.ECONNRESET} {
		if errors.Is(err, e) {
			return true
		}
	}
	return acceptAgainOS(err)
}

// acceptRetries decides, error after error of one listener's Accept,
// whether to accept again and after how long: an error acceptAgain knows
// always, one it does not maxOddAcceptErrors times in a row. The server's
// loop and the console's listener share it.
type acceptRetries struct {
	backoff time.Duration
	odd     int // errors in a row not known to pass
}

// after returns the wait before accepting again after err, and whether
// to log it (every odd error; a known one when the wait is at its least
// or its most, so that a flood of them logs little); ok is false when the
// listener has failed for good.
func (a *acceptRetries) after(err error) (wait time.Duration, logIt, ok bool) {
	known := acceptAgain(err)
	if !known {
		if a.odd++; a.odd > maxOddAcceptErrors {
			return 0, false, false
		}
	}
	a.backoff = nextBackoff(a.backoff)
	return a.backoff, !known || a.backoff == acceptBackoffMin || a.backoff == acceptBackoffMax, true
}

// accepted starts the count again after an Accept that succeeded.
func (a *acceptRetries) accepted() { *a = acceptRetries{} }

// nextBackoff doubles the wait, from acceptBackoffMin to acceptBackoffMax.
func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return acceptBackoffMin
	}
	return min(2*d, acceptBackoffMax)
}
