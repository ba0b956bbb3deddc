//go:build !windows

package smartclient

import "syscall"

// lostErrnos are the system's words for a connection the peer reset or
// closed while data was under way.
var lostErrnos = []error{syscall.ECONNRESET, syscall.EPIPE, syscall.ECONNABORTED}

// unreachableErrnos are the system's words for a server that cannot be
// reached now: nothing listens, or no route leads there.
var unreachableErrnos = []error{syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EHOSTDOWN, syscall.ENETDOWN, syscall.ETIMEDOUT}
