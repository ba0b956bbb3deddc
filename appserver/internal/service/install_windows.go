package service

import (
	"fmt"

	"golang.org/x/sys/windows/svc/mgr"
)

// afterInstall makes the SCM's recovery (restart after 5 s, which
// kardianos/service sets) answer a server that ends the service with an
// error too, not only one whose process dies: Serve ends the service with
// an error when the server fails.
func afterInstall(name string) error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connecting to the service manager: %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(name)
	if err != nil {
		return fmt.Errorf("opening the service %s: %w", name, err)
	}
	defer s.Close()
	if err := s.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		return fmt.Errorf("setting the recovery of the service %s: %w", name, err)
	}
	return nil
}
