//go:build windows || darwin

package handover

import (
	"context"
	"fmt"

	kservice "github.com/kardianos/service"
)

// kserviceManager controls a Windows service through the Service Control
// Manager, or a launchd job through launchctl, with kardianos/service.
func kserviceManager(name string) Manager {
	if name == "" {
		return nil
	}
	return scmService(name)
}

// scmService is the service name of this system's manager.
type scmService string

func (s scmService) String() string { return kind + " " + string(s) }

type noopProgram struct{}

func (noopProgram) Start(kservice.Service) error { return nil }
func (noopProgram) Stop(kservice.Service) error  { return nil }

func (s scmService) control() (kservice.Service, error) {
	return kservice.New(noopProgram{}, &kservice.Config{Name: string(s)})
}

// Stop asks the manager to stop the service; on Windows it returns once
// the service is stopped (kardianos waits for the stopped state).
func (s scmService) Stop(ctx context.Context) error {
	c, err := s.control()
	if err == nil {
		err = c.Stop()
	}
	if err != nil {
		return fmt.Errorf("stopping the %s %s: %w", kind, string(s), err)
	}
	return nil
}

func (s scmService) Start(ctx context.Context) error {
	c, err := s.control()
	if err == nil {
		err = c.Start()
	}
	if err != nil {
		return fmt.Errorf("starting the %s %s: %w", kind, string(s), err)
	}
	return nil
}

func (s scmService) Running(ctx context.Context) (bool, string) {
	c, err := s.control()
	if err != nil {
		return false, err.Error()
	}
	st, err := c.Status()
	if err != nil {
		return false, fmt.Sprintf("the %s %s: %v", kind, string(s), err)
	}
	if st == kservice.StatusRunning {
		return true, ""
	}
	return false, fmt.Sprintf("the %s %s is stopped", kind, string(s))
}
