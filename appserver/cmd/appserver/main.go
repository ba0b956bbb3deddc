// Command appserver serves SmartClient update folders; see the README. The
// command line lives in appserver/internal/cli, the server in the
// appserver package.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/erpupdate/smartsync/appserver/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
