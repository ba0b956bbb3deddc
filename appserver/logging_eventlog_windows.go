package appserver

import (
	"fmt"

	"golang.org/x/sys/windows/svc/eventlog"
)

// openEventLog opens the event log source of the service name, which
// "appserver service install" registers (kardianos/service does).
func openEventLog(name string) (eventSink, error) {
	l, err := eventlog.Open(name)
	if err != nil {
		return nil, fmt.Errorf("opening the event log source %s: %w", name, err)
	}
	return l, nil
}
