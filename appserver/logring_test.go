package appserver

import (
	"fmt"
	"log/slog"
	"testing"
)

// TestLogRing: the ring keeps the last records at its level or above,
// newest first, with their attributes and groups, and drops the oldest.
func TestLogRing(t *testing.T) {
	ring := newLogRing(3, slog.LevelInfo)
	log := slog.New(ring.Handler()).With("server", "a b")
	log.Debug("not kept")
	for i := range 5 {
		log.WithGroup("g").Info(fmt.Sprintf("line %d", i), "n", i, slog.Group("sub", "k", "v\"x"))
	}
	log.Warn("last", "err", "")
	got := ring.Recent(10)
	if len(got) != 3 {
		t.Fatalf("Recent(10) = %d lines, want 3: %+v", len(got), got)
	}
	want := []struct{ msg, attrs string }{
		{"last", `server="a b" err=""`},
		{"line 4", `server="a b" g.n=4 g.sub.k="v\"x"`},
		{"line 3", `server="a b" g.n=3 g.sub.k="v\"x"`},
	}
	for i, w := range want {
		if got[i].Message != w.msg || got[i].Attrs != w.attrs {
			t.Errorf("line %d = %q %q, want %q %q", i, got[i].Message, got[i].Attrs, w.msg, w.attrs)
		}
	}
	if got[0].Level != slog.LevelWarn {
		t.Errorf("level = %v, want WARN", got[0].Level)
	}
	if n := len(ring.Recent(1)); n != 1 {
		t.Errorf("Recent(1) = %d lines", n)
	}
	if n := len(newLogRing(4, slog.LevelInfo).Recent(5)); n != 0 {
		t.Errorf("empty ring gave %d lines", n)
	}
}
