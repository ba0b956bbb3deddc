//go:build !unix

package appserver

import "os"

// notifyReload returns nil: Windows has no SIGHUP. A change of
// AppServer.ini on disk re-reads it all the same (see watchConfig).
func notifyReload() (<-chan os.Signal, func()) { return nil, func() {} }

// reloadHint says how else the configuration is re-read.
const reloadHint = "restart the server to apply a change"
