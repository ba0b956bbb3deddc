//go:build !windows

package appserver

import "errors"

// openEventLog: only Windows has an event log.
func openEventLog(name string) (eventSink, error) {
	return nil, errors.New("no Windows event log on this system")
}
