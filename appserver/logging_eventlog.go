package appserver

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
)

// eventSink is the Windows event log of one source, as
// golang.org/x/sys/windows/svc/eventlog's Log writes it.
type eventSink interface {
	Info(eid uint32, msg string) error
	Warning(eid uint32, msg string) error
	Error(eid uint32, msg string) error
	Close() error
}

// Event IDs of the server's records in the event log (EventCreate's
// message file takes 1 to 1000 and prints the text as it is).
const (
	eventInfo    = 1
	eventWarning = 2
	eventError   = 3
)

// eventLogHandler sends the records of level min and above to the event
// log as well as to the handler it wraps: a Windows service's stderr goes
// nowhere, and an administrator looks for a service's warnings in the
// Event Viewer. The record's text is the wrapped handler's format, without
// its time (the event has one).
type eventLogHandler struct {
	inner slog.Handler
	fmt   slog.Handler // formats into st.buf
	min   slog.Level
	st    *eventState
}

type eventState struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	sink eventSink
}

func newEventLogHandler(inner slog.Handler, sink eventSink, c LogConfig, min slog.Level) slog.Handler {
	st := &eventState{sink: sink}
	return &eventLogHandler{inner: inner, fmt: logHandler(&st.buf, c, true), min: min, st: st}
}

func (h *eventLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min || h.inner.Enabled(ctx, l)
}

func (h *eventLogHandler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.inner.Enabled(ctx, r.Level) {
		err = h.inner.Handle(ctx, r)
	}
	if r.Level < h.min {
		return err
	}
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	h.st.buf.Reset()
	if ferr := h.fmt.Handle(ctx, r); ferr != nil {
		return ferr
	}
	msg := string(bytes.TrimSuffix(h.st.buf.Bytes(), []byte("\n")))
	var eerr error
	switch {
	case r.Level >= slog.LevelError:
		eerr = h.st.sink.Error(eventError, msg)
	case r.Level >= slog.LevelWarn:
		eerr = h.st.sink.Warning(eventWarning, msg)
	default:
		eerr = h.st.sink.Info(eventInfo, msg)
	}
	if err == nil {
		err = eerr
	}
	return err
}

func (h *eventLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &eventLogHandler{inner: h.inner.WithAttrs(as), fmt: h.fmt.WithAttrs(as), min: h.min, st: h.st}
}

func (h *eventLogHandler) WithGroup(name string) slog.Handler {
	return &eventLogHandler{inner: h.inner.WithGroup(name), fmt: h.fmt.WithGroup(name), min: h.min, st: h.st}
}
