// Command smartclient keeps a SmartClient install folder in step with its
// appserver; see the README. The command line lives in
// smartclient/internal/cli, the sync in the smartclient package.
//
// On Windows it is built twice (make build-windows): smartclient.exe, a
// console program, and smartclientw.exe, linked with -ldflags=-H=windowsgui
// for desktop shortcuts, which opens no console and shows a progress window
// (see smartclient/internal/desktop for why two builds).
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
	endProfiles := startProfiles()
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	endProfiles()
	stop()
	os.Exit(code)
}
