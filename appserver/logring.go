package appserver

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// LogLine is one record of the server's log, as the console shows it.
type LogLine struct {
	Time    time.Time
	Level   slog.Level
	Message string
	Attrs   string // key=value pairs, as the text log writes them
}

// logRingLines is how many log records the running server keeps for
// the console.
const logRingLines = 500

// logRing keeps the last records of the server's log in memory, for the
// console's "recent log lines": a slog.Handler put beside the log's own
// (slog.NewMultiHandler). It is safe for concurrent use.
type logRing struct {
	level slog.Leveler

	mu    sync.Mutex
	lines []LogLine // a ring of cap(lines) once full
	next  int       // where the next line goes, once full
}

// newLogRing keeps the last n records at level or above.
func newLogRing(n int, level slog.Leveler) *logRing {
	return &logRing{level: level, lines: make([]LogLine, 0, n)}
}

func (r *logRing) add(l LogLine) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lines) < cap(r.lines) {
		r.lines = append(r.lines, l)
		return
	}
	r.lines[r.next] = l
	r.next = (r.next + 1) % len(r.lines)
}

// Recent returns up to n of the last records, newest first.
func (r *logRing) Recent(n int) []LogLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	n = min(n, len(r.lines))
	out := make([]LogLine, 0, n)
	for i := range n {
		// The newest is just before next (or at the end before the ring
		// is full, when next is 0).
		j := (r.next - 1 - i + 2*len(r.lines)) % len(r.lines)
		out = append(out, r.lines[j])
	}
	return out
}

// ringHandler is a slog.Handler that writes to a logRing, with the
// attributes and groups of WithAttrs and WithGroup.
type ringHandler struct {
	ring   *logRing
	prefix string // attributes given by WithAttrs, formatted
	group  string // the open groups, dot-separated, with a trailing dot
}

// Handler returns the slog.Handler that feeds the ring.
func (r *logRing) Handler() slog.Handler { return ringHandler{ring: r} }

func (h ringHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.ring.level.Level()
}

func (h ringHandler) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(h.prefix)
	rec.Attrs(func(a slog.Attr) bool {
		appendAttr(&b, h.group, a)
		return true
	})
	h.ring.add(LogLine{Time: rec.Time, Level: rec.Level, Message: rec.Message, Attrs: strings.TrimSpace(b.String())})
	return nil
}

func (h ringHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range attrs {
		appendAttr(&b, h.group, a)
	}
	h.prefix = b.String()
	return h
}

func (h ringHandler) WithGroup(name string) slog.Handler {
	if name != "" {
		h.group += name + "."
	}
	return h
}

// appendAttr writes " key=value" for a, with groups flattened as the
// text handler does.
func appendAttr(b *strings.Builder, group string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		g := group
		if a.Key != "" {
			g += a.Key + "."
		}
		for _, ga := range v.Group() {
			appendAttr(b, g, ga)
		}
		return
	}
	if a.Equal(slog.Attr{}) {
		return
	}
	b.WriteByte(' ')
	b.WriteString(group)
	b.WriteString(a.Key)
	b.WriteByte('=')
	s := v.String()
	if strings.ContainsAny(s, " \"=\t\n") || s == "" {
		s = quoteValue(s)
	}
	b.WriteString(s)
}

func quoteValue(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
