//go:build linux

package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	at := func(startMs, latMs int, code int, err error) check {
		s := t0.Add(time.Duration(startMs) * time.Millisecond)
		return check{start: s, end: s.Add(time.Duration(latMs) * time.Millisecond), code: code, err: err}
	}
	checks := []check{
		at(-50, 40, 0, nil),                  // before the window
		at(0, 10, 0, nil),                    // at its start: in
		at(10, 30, 0, nil),                   // in
		at(40, 200, 100, nil),                // update available: in, the slowest
		at(240, 20, 1, errors.New("exit 1")), // failed: in
		at(300, 5, 0, nil),                   // at its end: out
	}
	tests := []struct {
		name     string
		from, to int
		want     checkStats
	}{
		{"the window", 0, 300, checkStats{n: 4, failed: 1, max: 200 * time.Millisecond, median: 25 * time.Millisecond,
			window: 300 * time.Millisecond, nOld: 2, nNew: 1, maxOld: 30 * time.Millisecond, maxNew: 200 * time.Millisecond}},
		{"before it", -100, 0, checkStats{n: 1, max: 40 * time.Millisecond, median: 40 * time.Millisecond,
			window: 100 * time.Millisecond, nOld: 1, maxOld: 40 * time.Millisecond}},
		{"empty", 1000, 2000, checkStats{window: time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := summarize(checks, t0.Add(time.Duration(tt.from)*time.Millisecond), t0.Add(time.Duration(tt.to)*time.Millisecond))
			if got != tt.want {
				t.Errorf("summarize = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestWaitPublished(t *testing.T) {
	const head = "time=2026-12-06T12:00:00.000Z level=INFO msg=listening addr=127.0.0.1:1\n" +
		"time=2026-12-06T12:00:00.100Z level=INFO msg=\"made the patches planned\" patches=1 kept=1 took=1ms\n" +
		"time=2026-12-06T12:00:00.200Z level=INFO msg=\"serving a published release\" os=linux release=1 build=7.00.240101A published=2026-12-06T11:59:59Z files=1 signed=true\n"
	end := time.Date(2026, 12, 6, 12, 0, 1, 0, time.UTC)
	tests := []struct {
		name, log, build string
		served, patches  time.Duration
		line             string
	}{
		{"patches made", head +
			"time=2026-12-06T12:00:00.900Z level=INFO msg=\"serving a published release\" os=linux release=2 build=7.00.240301A published=2026-12-06T12:00:00Z files=1 signed=true\n" +
			"time=2026-12-06T12:00:01.000Z level=INFO msg=\"making patches from the older releases kept, in the background\" os=linux release=2 patches=3\n" +
			"time=2026-12-06T12:00:04.250Z level=INFO msg=\"made the patches planned\" patches=3 kept=3 took=3.25s\n",
			"7.00.240301A", -100 * time.Millisecond, 3250 * time.Millisecond, "made the patches planned patches=3 kept=3 took=3.25s"},
		{"none to make", head +
			"time=2026-12-06T12:00:01.500Z level=INFO msg=\"no patches to make for the release: every one it needs is made\" os=linux release=1\n",
			"7.00.240101A", -800 * time.Millisecond, 500 * time.Millisecond, "no patches to make for the release: every one it needs is made os=linux release=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "appserver.log")
			if err := os.WriteFile(log, []byte(tt.log), 0o644); err != nil {
				t.Fatal(err)
			}
			srv := &server{log: log, done: make(chan struct{})}
			served, patches, line, err := waitPublished(context.Background(), srv, 0, tt.build, end)
			if err != nil {
				t.Fatal(err)
			}
			if served != tt.served || patches != tt.patches || line != tt.line {
				t.Errorf("waitPublished = %v, %v, %q; want %v, %v, %q", served, patches, line, tt.served, tt.patches, tt.line)
			}
		})
	}
	// A patch line from before the build was served does not count: the
	// wait goes on until the context ends.
	log := filepath.Join(t.TempDir(), "appserver.log")
	if err := os.WriteFile(log, []byte(head), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, _, _, err := waitPublished(ctx, &server{log: log, done: make(chan struct{})}, 0, "7.00.240101A", end); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waitPublished with no patch line after the served one: %v, want the context's deadline", err)
	}
}

func TestPublishScenarioChosen(t *testing.T) {
	all, err := pickScenarios("")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(all, func(sc scenario) bool { return sc.name == publishName }) {
		t.Errorf("the default set lacks %q", publishName)
	}
	only, err := pickScenarios(publishName)
	if err != nil || len(only) != 1 || only[0].name != publishName {
		t.Fatalf("-only %s: %v, %v", publishName, only, err)
	}
	specs, wantGo := neededTrees(only, treeSpecs(true))
	var names []string
	for _, s := range specs {
		names = append(names, s.name)
	}
	if strings.Join(names, ",") != "v1,v2" || wantGo {
		t.Errorf("-only %s needs trees %v (Go trees %v), want v1,v2 and no Go trees", publishName, names, wantGo)
	}
	if st := startTrees(only); len(st) != 0 {
		t.Errorf("-only %s makes templates %v, want none", publishName, st)
	}
}

func TestServerSessions(t *testing.T) {
	log := filepath.Join(t.TempDir(), "appserver.log")
	data := "time=2026-12-06T12:00:00.000Z level=INFO msg=listening addr=127.0.0.1:1\n" +
		"time=2026-12-06T12:00:01.050Z level=INFO msg=session client=127.0.0.1:2 outcome=checked took=50ms\n" +
		"time=2026-12-06T12:00:02.500Z level=INFO msg=session client=127.0.0.1:3 outcome=checked took=1.2s\n" +
		"time=2026-12-06T12:00:03.010Z level=INFO msg=session client=127.0.0.1:4 outcome=checked took=10ms\n" +
		"time=2026-12-06T12:00:03.020Z level=INFO msg=\"made the patches planned\" patches=1 kept=1 took=3s\n"
	if err := os.WriteFile(log, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	ss := serverSessions(log, 0)
	if len(ss) != 3 {
		t.Fatalf("serverSessions found %d sessions, want 3: %+v", len(ss), ss)
	}
	at := func(s string) time.Time { return time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC).Add(mustDuration(t, s)) }
	tests := []struct {
		from, to string
		n        int
		max      time.Duration
	}{
		// The sessions started at 1.0 s, 1.3 s and 3.0 s.
		{"1s", "1.3s", 1, 50 * time.Millisecond},
		{"1s", "1.31s", 2, 1200 * time.Millisecond},
		{"1.01s", "3s", 1, 1200 * time.Millisecond},
		{"1.301s", "3.1s", 1, 10 * time.Millisecond},
		{"4s", "5s", 0, 0},
	}
	for _, tt := range tests {
		n, m := slowestSession(ss, at(tt.from), at(tt.to))
		if n != tt.n || m != tt.max {
			t.Errorf("slowestSession(%s, %s) = %d, %v; want %d, %v", tt.from, tt.to, n, m, tt.n, tt.max)
		}
	}
	if got := serverSessions(log, len(data)+1); got != nil {
		t.Errorf("serverSessions past the end: %v", got)
	}
}

func mustDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
