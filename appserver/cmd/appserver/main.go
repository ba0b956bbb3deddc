// Command appserver serves SmartClient update folders; see the README.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/erpupdate/smartsync/appserver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := appserver.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "appserver:", err)
		if errors.Is(err, appserver.ErrUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
