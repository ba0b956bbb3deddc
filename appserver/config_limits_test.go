package appserver

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/testtree"
)

// TestParseConfigLimits: [LIMITS] is optional with defaults sized for 500
// workstations behind one address; each key is checked against its range,
// and an unknown key is an error naming the file, section and key.
func TestParseConfigLimits(t *testing.T) {
	defaults := LimitsConfig{MaxConnections: 4000, MaxPerAddress: 1200, MaxStaySessions: 2000, Heartbeat: time.Minute,
		HelloTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute, WriteTimeout: time.Minute}
	tests := []struct {
		name    string
		text    string
		want    LimitsConfig
		key     string // of the error; "" for none
		problem string
	}{
		{"absent", "", defaults, "", ""},
		{"empty values", "[LIMITS]\nMaxConnections=\nHeartbeat=\n", defaults, "", ""},
		{"all set", "[limits]\nmaxconnections=100\nMaxPerAddress=10\nMaxStaySessions=0\nHeartbeat=5\nHelloTimeout=1\nIdleTimeout=86400\nwritetimeout=5\n",
			LimitsConfig{MaxConnections: 100, MaxPerAddress: 10, MaxStaySessions: 0, Heartbeat: 5 * time.Second,
				HelloTimeout: time.Second, IdleTimeout: 24 * time.Hour, WriteTimeout: 5 * time.Second}, "", ""},
		{"no hello time", "[LIMITS]\nHelloTimeout=0\n", defaults, "HelloTimeout", `"0" is not a number of seconds from 1 to 600`},
		{"idle too short", "[LIMITS]\nIdleTimeout=9\n", defaults, "IdleTimeout", `"9" is not a number of seconds from 10 to 86400`},
		{"write in minutes", "[LIMITS]\nWriteTimeout=2m\n", defaults, "WriteTimeout", `"2m" is not a number of seconds from 5 to 3600`},
		{"write too long", "[LIMITS]\nWriteTimeout=3601\n", defaults, "WriteTimeout", `"3601" is not a number of seconds from 5 to 3600`},
		{"no connections", "[LIMITS]\nMaxConnections=0\n", defaults, "MaxConnections", `"0" is not a number of connections from 1 to 1000000`},
		{"negative", "[LIMITS]\nMaxPerAddress=-1\n", defaults, "MaxPerAddress", `"-1" is not a number of connections`},
		{"heartbeat too often", "[LIMITS]\nHeartbeat=1\n", defaults, "Heartbeat", `"1" is not a number of seconds from 5 to 3600`},
		{"stay sessions word", "[LIMITS]\nMaxStaySessions=many\n", defaults, "MaxStaySessions", `"many" is not a number of sessions`},
		{"unknown key", "[LIMITS]\nMaxConnection=10\n", defaults, "MaxConnection", "unknown key (did you mean MaxConnections?)"},
		{"twice", "[LIMITS]\nHeartbeat=10\nHeartbeat=20\n", defaults, "Heartbeat", "given 2 times"},
		{"memory limit", "[LIMITS]\nMemoryLimitMB=160\n", func() LimitsConfig { l := defaults; l.MemoryLimitMB = 160; return l }(), "", ""},
		{"memory limit off", "[LIMITS]\nMemoryLimitMB=0\n", defaults, "", ""},
		{"memory limit too low", "[LIMITS]\nMemoryLimitMB=10\n", defaults, "MemoryLimitMB", "10 MiB is below the 64 MiB a server needs to start"},
		{"memory limit with a unit", "[LIMITS]\nMemoryLimitMB=160M\n", defaults, "MemoryLimitMB", `"160M" is not a number of MiB from 0 to 1048576`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("AppServer.ini", []byte(baseINI+tc.text), t.TempDir())
			if tc.key == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Limits != tc.want {
					t.Errorf("Limits = %+v, want %+v", cfg.Limits, tc.want)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a ConfigError", err)
			}
			if ce.File != "AppServer.ini" || ce.Section != "LIMITS" || ce.Key != tc.key || !strings.Contains(ce.Problem, tc.problem) {
				t.Errorf("got %s (section %q, key %q), want [LIMITS] %s: ...%s...", ce, ce.Section, ce.Key, tc.key, tc.problem)
			}
		})
	}
}

// TestLimitsTimeoutsReachTheServer: the [LIMITS] timeouts are the
// server's deadlines (their effect on clients is shown by
// TestServerHostileClients and the idle and slow-reader tests), and
// without [LIMITS] they are the defaults of before they could be set.
func TestLimitsTimeoutsReachTheServer(t *testing.T) {
	for _, tc := range []struct {
		name               string
		text               string
		hello, idle, write time.Duration
	}{
		{"defaults", "", 10 * time.Second, 5 * time.Minute, time.Minute},
		{"set", "[LIMITS]\nHelloTimeout=3\nIdleTimeout=20\nWriteTimeout=7\n", 3 * time.Second, 20 * time.Second, 7 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("AppServer.ini", []byte(baseINI+tc.text), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			srv, err := New(t.Context(), slog.New(slog.DiscardHandler), cfg, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			if srv.HandshakeTimeout != tc.hello || srv.IdleTimeout != tc.idle || srv.WriteTimeout != tc.write {
				t.Errorf("hello, idle, write timeouts = %v, %v, %v; want %v, %v, %v",
					srv.HandshakeTimeout, srv.IdleTimeout, srv.WriteTimeout, tc.hello, tc.idle, tc.write)
			}
		})
	}
}

// TestMemoryLimitReachesTheRuntime: [LIMITS] MemoryLimitMB is the Go
// runtime's soft memory limit while the server runs.
func TestMemoryLimitReachesTheRuntime(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	cfg := stateLockConfig(t)
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("[LIMITS]\nMemoryLimitMB=3000\n")
	f.Close()
	ctx, cancel := context.WithCancel(t.Context())
	var out, errb testtree.Buffer
	done := make(chan error, 1)
	go func() { done <- RunServer(ctx, ServeOptions{Config: cfg, Listen: "127.0.0.1:0"}, &out, &errb) }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(errb.String(), "memory limit") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := debug.SetMemoryLimit(-1)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got != 3000<<20 {
		t.Errorf("the runtime's memory limit is %d, want %d (3000 MiB); log:\n%s", got, 3000<<20, errb.String())
	}
}
