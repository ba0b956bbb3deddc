package handover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// AwaitStop is how a server that handed over to a self-update's helper
// waits, under a service manager that keeps its service running until it
// is told to stop (the Windows SCM) or would start an exited server again
// at once (launchd's KeepAlive), for the stop the helper sends through
// the manager: it returns nil once ctx is done (that stop). It returns an
// error, for the server to exit with so that the manager starts the
// service again and its Recover finishes the switch, when the helper of
// the journal at the installation install is gone without stopping this
// server, never recorded itself, or has not stopped it within 2 minutes
// and the journal's HealthTimeout; it reads the journal every second.
func AwaitStop(ctx context.Context, install string) error {
	return awaitStop(ctx, install, time.Second, 2*time.Minute)
}

func awaitStop(ctx context.Context, install string, poll, bound time.Duration) error {
	start := time.Now()
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		jr, err := ReadJournal(install)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("self-update: the helper's journal %s is gone and the helper has not stopped this server; exiting so that the service manager starts the server again", JournalPath(install))
		case err != nil:
			return fmt.Errorf("self-update: waiting for the helper's stop: %w", err)
		case jr.HelperPID != 0 && !ProcessAlive(jr.HelperPID):
			return fmt.Errorf("self-update: the update helper (pid %d, phase %s, journal %s) is gone and has not stopped this server; exiting so that the service manager starts the server again and it recovers",
				jr.HelperPID, jr.Phase, JournalPath(install))
		case jr.HelperPID == 0 && time.Since(start) > bound:
			return fmt.Errorf("self-update: the update helper did not start within %v (journal %s); exiting so that the service manager starts the server again and it recovers", bound, JournalPath(install))
		case time.Since(start) > bound+jr.HealthTimeout:
			return fmt.Errorf("self-update: the update helper (pid %d, phase %s) has not stopped this server within %v; exiting so that the service manager starts the server again and it recovers",
				jr.HelperPID, jr.Phase, bound+jr.HealthTimeout)
		}
	}
}
