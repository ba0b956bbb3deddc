package appserver

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sync"
)

// journalPriority is the sd-daemon prefix (sd-daemon(3)) of a record of
// level l, by which the journal files a line written to stderr under its
// priority, so that "journalctl -p warning" shows warnings and errors.
func journalPriority(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "<3>" // SD_ERR
	case l >= slog.LevelWarn:
		return "<4>" // SD_WARNING
	case l >= slog.LevelInfo:
		return "<6>" // SD_INFO
	}
	return "<7>" // SD_DEBUG
}

// priorityHandler prefixes every record with its journal priority. The
// handler it wraps formats each record into a buffer of its own; the
// prefix and the record then go to the journal's stream in one write.
type priorityHandler struct {
	inner slog.Handler
	st    *priorityState
}

type priorityState struct {
	mu  sync.Mutex
	buf bytes.Buffer
	out io.Writer
}

// newPriorityHandler returns a handler writing to out the records that
// newInner's handler formats, each prefixed with its priority.
func newPriorityHandler(out io.Writer, newInner func(io.Writer) slog.Handler) slog.Handler {
	st := &priorityState{out: out}
	return &priorityHandler{inner: newInner(&st.buf), st: st}
}

func (h *priorityHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *priorityHandler) Handle(ctx context.Context, r slog.Record) error {
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	h.st.buf.Reset()
	h.st.buf.WriteString(journalPriority(r.Level))
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	_, err := h.st.out.Write(h.st.buf.Bytes())
	return err
}

func (h *priorityHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &priorityHandler{inner: h.inner.WithAttrs(as), st: h.st}
}

func (h *priorityHandler) WithGroup(name string) slog.Handler {
	return &priorityHandler{inner: h.inner.WithGroup(name), st: h.st}
}
