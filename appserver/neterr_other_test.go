//go:build !windows

package appserver

import "syscall"

// The errors of a refused and a reset connection.
var (
	errConnRefused error = syscall.ECONNREFUSED
	errConnReset   error = syscall.ECONNRESET
)
