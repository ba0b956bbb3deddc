// Command smartclient keeps a SmartClient install folder in step with its
// appserver; see the README. The command line lives in
// smartclient/internal/cli, the sync in the smartclient package.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/smartclient/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	smartclient.LimitMemory()
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
