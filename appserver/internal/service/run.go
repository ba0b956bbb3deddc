package service

import (
	"context"
	"sync/atomic"
)

// underSCM is set once the Windows Service Control Manager runs this
// process as a service (see Serve).
var underSCM atomic.Bool

// Serve runs serve, the server. On Windows, when the process is a
// Windows service (the installed command line names it with
// --service-name, or kardianos/service's Interactive says so), it runs
// under the Service Control Manager, so that the SCM's start and stop
// requests reach it; a process the SCM did not start runs serve directly.
// Elsewhere serve runs directly: systemd and launchd run the process as
// it is and stop it with SIGTERM, which cancels ctx in cmd/appserver.
// name is the service's name, "" when not given.
//
// Under the SCM, a server that stops by itself without an error (it
// handed over to a self-update's helper) stays until the SCM's stop,
// which the helper sends (serve itself waits for it, and fails when the
// helper is gone: see handover.AwaitStop); one that fails ends the
// service with an error, which the SCM's recovery (restart after 5 s)
// answers.
func Serve(ctx context.Context, name string, serve func(context.Context) error) error {
	return serveOS(ctx, name, serve)
}
