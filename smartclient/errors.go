package smartclient

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// ErrUsage marks a bad option or configuration: the caller's mistake, not
// a failure of the update.
var ErrUsage = errors.New("usage error")

// ConnectionLost reports an error that means the connection to the server
// broke or went silent.
func ConnectionLost(err error) bool {
	var ne net.Error
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) || errors.As(err, &ne) && ne.Timeout()
}

// lostConnection is ConnectionLost, as the library's own code says it.
var lostConnection = ConnectionLost
