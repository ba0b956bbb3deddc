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

// nextBackoff doubles the wait, from acceptBackoffMin to acceptBackoffMax.
func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return acceptBackoffMin
	}
	return min(2*d, acceptBackoffMax)
}
