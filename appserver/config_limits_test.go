package appserver

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestParseConfigLimits: [LIMITS] is optional with defaults sized for 500
// workstations behind one address; each key is checked against its range,
// and an unknown key is an error naming the file, section and key.
func TestParseConfigLimits(t *testing.T) {
	defaults := LimitsConfig{MaxConnections: 4000, MaxPerAddress: 1200, MaxStaySessions: 2000, Heartbeat: time.Minute}
	tests := []struct {
		name    string
		text    string
		want    LimitsConfig
		key     string // of the error; "" for none
		problem string
	}{
		{"absent", "", defaults, "", ""},
		{"empty values", "[LIMITS]\nMaxConnections=\nHeartbeat=\n", defaults, "", ""},
		{"all set", "[limits]\nmaxconnections=100\nMaxPerAddress=10\nMaxStaySessions=0\nHeartbeat=5\n",
			LimitsConfig{MaxConnections: 100, MaxPerAddress: 10, MaxStaySessions: 0, Heartbeat: 5 * time.Second}, "", ""},
		{"no connections", "[LIMITS]\nMaxConnections=0\n", defaults, "MaxConnections", `"0" is not a number of connections from 1 to 1000000`},
		{"negative", "[LIMITS]\nMaxPerAddress=-1\n", defaults, "MaxPerAddress", `"-1" is not a number of connections`},
		{"heartbeat too often", "[LIMITS]\nHeartbeat=1\n", defaults, "Heartbeat", `"1" is not a number of seconds from 5 to 3600`},
		{"stay sessions word", "[LIMITS]\nMaxStaySessions=many\n", defaults, "MaxStaySessions", `"many" is not a number of sessions`},
		{"unknown key", "[LIMITS]\nMaxConnection=10\n", defaults, "MaxConnection", "unknown key (did you mean MaxConnections?)"},
		{"twice", "[LIMITS]\nHeartbeat=10\nHeartbeat=20\n", defaults, "Heartbeat", "given 2 times"},
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
