package appserver

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// eventRecords keeps what an eventSink was given, in order, as
// "Warning 2 text".
type eventRecords struct{ got []string }

func (e *eventRecords) add(kind string, id uint32, msg string) error {
	e.got = append(e.got, fmt.Sprintf("%s %d %s", kind, id, msg))
	return nil
}
func (e *eventRecords) Info(id uint32, msg string) error    { return e.add("Info", id, msg) }
func (e *eventRecords) Warning(id uint32, msg string) error { return e.add("Warning", id, msg) }
func (e *eventRecords) Error(id uint32, msg string) error   { return e.add("Error", id, msg) }
func (e *eventRecords) Close() error                        { return nil }

// TestEventLogHandler: a Windows service's warnings and errors go to the
// event log, with the logger's attributes and without a time, while every
// record still goes where [LOG] says.
func TestEventLogHandler(t *testing.T) {
	var out bytes.Buffer
	ev := &eventRecords{}
	log := slog.New(newEventLogHandler(logHandler(&out, defaultLog, false), ev, defaultLog, slog.LevelWarn)).With("component", "x")
	log.Debug("not at level info")
	log.Info("serving")
	log.Warn("disk low", "free", "1 GB")
	log.Error("cannot write", "err", "denied")
	want := []string{
		`Warning 2 level=WARN msg="disk low" component=x free="1 GB"`,
		`Error 3 level=ERROR msg="cannot write" component=x err=denied`,
	}
	if strings.Join(ev.got, "\n") != strings.Join(want, "\n") {
		t.Errorf("event log got\n%s\nwant\n%s", strings.Join(ev.got, "\n"), strings.Join(want, "\n"))
	}
	if n := strings.Count(out.String(), "\n"); n != 3 || strings.Contains(out.String(), "not at level info") {
		t.Errorf("the log file got %d records, want info, warn and error:\n%s", n, out.String())
	}
}
