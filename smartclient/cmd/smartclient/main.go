// Command smartclient keeps a SmartClient install folder in step with its
// appserver; see the README.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/erpupdate/smartsync/smartclient"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	smartclient.LimitMemory()
	code := smartclient.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
