//go:build unix

package appserver

import (
	"os"
	"os/signal"
	"syscall"
)

// notifyReload returns the channel on which SIGHUP, the usual "re-read
// your configuration", arrives from now on instead of ending the process,
// and what stops that.
func notifyReload() (<-chan os.Signal, func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGHUP)
	return c, func() { signal.Stop(c) }
}

// reloadHint says how else the configuration is re-read.
const reloadHint = "send the server SIGHUP to re-read it"
