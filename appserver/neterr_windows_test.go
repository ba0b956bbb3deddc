package appserver

import "golang.org/x/sys/windows"

// Winsock's numbers for a refused and a reset connection: Windows does not
// say syscall.ECONNREFUSED or ECONNRESET, which Go invents there.
var (
	errConnRefused error = windows.WSAECONNREFUSED
	errConnReset   error = windows.WSAECONNRESET
)
