package service

import (
	"context"
	"runtime"

	kservice "github.com/kardianos/service"
)

// Serve runs serve, the server: under the Windows Service Control Manager
// through kardianos/service's Run when the process is a Windows service,
// so that the SCM's start and stop requests reach it; directly elsewhere
// (systemd and launchd run the process as it is, and stop it with
// SIGTERM, which cancels ctx in cmd/appserver). name is the service's
// name, "" for DefaultName.
//
// Under the SCM, a server that stops by itself without an error (it
// handed over to a self-update's helper) waits for the SCM's stop, which
// the helper sends; one that fails asks the SCM to stop the service and
// Serve returns its error.
func Serve(ctx context.Context, name string, serve func(context.Context) error) error {
	if runtime.GOOS != "windows" || kservice.Interactive() {
		return serve(ctx)
	}
	if name == "" {
		name = DefaultName
	}
	p := &program{ctx: ctx, serve: serve, done: make(chan struct{})}
	s, err := kservice.New(p, &kservice.Config{Name: name})
	if err != nil {
		return err
	}
	if err := s.Run(); err != nil {
		return err
	}
	<-p.done
	return p.err
}

// program is the server as a kardianos/service program.
type program struct {
	ctx   context.Context
	serve func(context.Context) error

	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (p *program) Start(s kservice.Service) error {
	ctx, cancel := context.WithCancel(p.ctx)
	p.cancel = cancel
	go func() {
		p.err = p.serve(ctx)
		close(p.done)
		if p.err != nil && ctx.Err() == nil {
			// Run returns once the SCM has the service stopped.
			go s.Stop()
		}
	}()
	return nil
}

func (p *program) Stop(kservice.Service) error {
	p.cancel()
	<-p.done
	return nil
}
