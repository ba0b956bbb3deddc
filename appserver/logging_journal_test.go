package appserver

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// TestJournalPriority: every record written for the journal starts with
// the sd-daemon priority of its level, in text and JSON, through
// WithAttrs and WithGroup, and records written at once do not mix.
func TestJournalPriority(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var out bytes.Buffer
			c := defaultLog
			c.Format = format
			c.Level = slog.LevelDebug
			log := slog.New(journalHandler(&out, c)).With("component", "test").WithGroup("g")
			log.Debug("d")
			log.Info("i")
			log.Warn("w")
			log.Error("e")
			log.Log(t.Context(), slog.LevelError+4, "worse")
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			want := []string{"<7>", "<6>", "<4>", "<3>", "<3>"}
			if len(lines) != len(want) {
				t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), out.String())
			}
			for i, l := range lines {
				if !strings.HasPrefix(l, want[i]) {
					t.Errorf("line %d %q, want the prefix %s", i, l, want[i])
				}
				rest := l[3:]
				if format == "json" && !json.Valid([]byte(rest)) {
					t.Errorf("line %d after the prefix is not JSON: %q", i, rest)
				}
				if strings.Contains(rest, "time") || !strings.Contains(rest, "component") {
					t.Errorf("line %d %q: want no time (the journal stamps it) and the logger's attributes", i, l)
				}
			}
		})
	}
	// Concurrent records each get their own prefix, whole.
	var out bytes.Buffer
	log := slog.New(journalHandler(&out, defaultLog))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if i%2 == 0 {
					log.Warn("warn", "n", i)
				} else {
					log.Info("info", "n", i)
				}
			}
		}()
	}
	wg.Wait()
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		if !(strings.HasPrefix(l, "<4>level=WARN msg=warn") || strings.HasPrefix(l, "<6>level=INFO msg=info")) {
			t.Fatalf("mixed or unprefixed line %q", l)
		}
	}
}
