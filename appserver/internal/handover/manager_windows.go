package handover

import (
	"context"
	"fmt"

	kservice "github.com/kardianos/service"
)

// windowsManager controls a Windows service through the Service Control
// Manager, with kardianos/service.
func windowsManager(name string) Manager {
	if name == "" {
		return nil
	}
	return scmService(name)
}

type scmService string

func (s scmService) String() string { return "Windows service " + string(s) }

type noopProgram struct{}

func (noopProgram) Start(kservice.Service) error { return nil }
func (noopProgram) Stop(kservice.Service) error  { return nil }

func (s scmService) control() (kservice.Service, error) {
	return kservice.New(noopProgram{}, &kservice.Config{Name: string(s)})
}

// Stop asks the SCM to stop the service and waits until it has (kardianos
// waits for the stopped state).
func (s scmService) Stop(ctx context.Context) error {
	c, err := s.control()
	if err == nil {
		err = c.Stop()
	}
	if err != nil {
		return fmt.Errorf("stopping the Windows service %s: %w", string(s), err)
	}
	return nil
}

func (s scmService) Start(ctx context.Context) error {
	c, err := s.control()
	if err == nil {
		err = c.Start()
	}
	if err != nil {
		return fmt.Errorf("starting the Windows service %s: %w", string(s), err)
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
		return false, fmt.Sprintf("the Windows service %s: %v", string(s), err)
	}
	if st == kservice.StatusRunning {
		return true, ""
	}
	return false, fmt.Sprintf("the Windows service %s is stopped", string(s))
}
