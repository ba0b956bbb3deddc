//go:build !windows

package smartclient

import "syscall"

// lostErrnos are the system's words for a connection the peer reset or
// closed while data was under way.
var lostErrnos = []error{syscall.ECONNRESET, syscall.EPIPE, syscall.ECONNABORTED}
