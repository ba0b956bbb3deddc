package service

import (
	"context"
	"errors"

	kservice "github.com/kardianos/service"
	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
)

// serveOS runs serve under the SCM with golang.org/x/sys/windows/svc, on
// which kardianos/service is built: kardianos's Run decides from
// svc.IsWindowsService alone (the parent is services.exe in session 0),
// which misses a service where sessions are numbered otherwise (Wine), and
// never ends a service whose program failed. Here the dispatcher is tried
// whenever the command line names a service; "not started by the SCM"
// (ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) runs serve directly.
func serveOS(ctx context.Context, name string, serve func(context.Context) error) error {
	if name == "" && kservice.Interactive() {
		return serve(ctx)
	}
	if name == "" {
		name = DefaultName
	}
	h := &handler{ctx: ctx, serve: serve, done: make(chan struct{})}
	err := svc.Run(name, h)
	if errors.Is(err, windows.ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) {
		return serve(ctx)
	}
	if err != nil {
		return err
	}
	return h.err
}

// handler is the server as an SCM service.
type handler struct {
	ctx   context.Context
	serve func(context.Context) error
	done  chan struct{}
	err   error
}

func (h *handler) Execute(args []string, r <-chan svc.ChangeRequest, s chan<- svc.Status) (bool, uint32) {
	underSCM.Store(true)
	s <- svc.Status{State: svc.StartPending}
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	go func() {
		h.err = h.serve(ctx)
		close(h.done)
	}()
	s <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	done := h.done
	for {
		select {
		case c := <-r:
			switch c.Cmd {
			case svc.Interrogate:
				s <- c.CurrentStatus
			case svc.Stop, svc.Shutdown:
				s <- svc.Status{State: svc.StopPending}
				cancel()
				<-h.done
				return false, 0
			}
		case <-done:
			if h.err != nil && ctx.Err() == nil {
				// A failure of its own: a service-specific exit code,
				// which the SCM's recovery answers.
				return true, 1
			}
			// Stopped for a self-update's helper: stay until the stop
			// it sends through the SCM.
			done = nil
		}
	}
}
