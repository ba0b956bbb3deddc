package appserver

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestParseConfigRollout: [ROLLOUT] is optional, without staging by
// default; every key is checked against its range, and a bad value or an
// unknown key is an error naming the file, section and key.
func TestParseConfigRollout(t *testing.T) {
	with := func(f func(*RolloutConfig)) RolloutConfig {
		c := defaultRollout
		f(&c)
		return c
	}
	tests := []struct {
		name    string
		text    string
		want    RolloutConfig
		key     string // of the error; "" for none
		problem string
	}{
		{"absent", "", defaultRollout, "", ""},
		{"empty values", "[ROLLOUT]\nPilot=\nDelay=\nHaltPercent=\n", defaultRollout, "", ""},
		{"all set", "[rollout]\npilot=lab-*, *.pilot.example.com; 0123456789abcdef0123456789ABCDEF\ndelay=36h\nMinSuccesses=0\nhaltpercent=12.5%\nMinReports=1\n",
			RolloutConfig{Pilot: []string{"lab-*", "*.pilot.example.com", "0123456789abcdef0123456789ABCDEF"},
				Delay: 36 * time.Hour, MinSuccesses: 0, HaltPercent: 12.5, MinReports: 1}, "", ""},
		{"delay in seconds", "[ROLLOUT]\nDelay=3600\n", with(func(c *RolloutConfig) { c.Delay = time.Hour }), "", ""},
		{"delay in days", "[ROLLOUT]\nDelay=7d\n", with(func(c *RolloutConfig) { c.Delay = 7 * 24 * time.Hour }), "", ""},
		{"delay 0", "[ROLLOUT]\nDelay=0\n", with(func(c *RolloutConfig) { c.Delay = 0 }), "", ""},
		{"delay 30 days", "[ROLLOUT]\nDelay=720h\n", with(func(c *RolloutConfig) { c.Delay = 720 * time.Hour }), "", ""},
		{"halt at 100", "[ROLLOUT]\nHaltPercent=100\n", with(func(c *RolloutConfig) { c.HaltPercent = 100 }), "", ""},
		{"delay too long", "[ROLLOUT]\nDelay=31d\n", defaultRollout, "Delay", `"31d" is not a delay from 0 to 30 days: write seconds, or a duration as 36h, 90m or 7d`},
		{"delay too long in hours", "[ROLLOUT]\nDelay=721h\n", defaultRollout, "Delay", `"721h" is not a delay from 0 to 30 days`},
		{"delay too long in seconds", "[ROLLOUT]\nDelay=2592001\n", defaultRollout, "Delay", `"2592001" is not a delay`},
		{"delay negative", "[ROLLOUT]\nDelay=-1h\n", defaultRollout, "Delay", `"-1h" is not a delay`},
		{"delay word", "[ROLLOUT]\nDelay=tomorrow\n", defaultRollout, "Delay", `"tomorrow" is not a delay`},
		{"successes negative", "[ROLLOUT]\nMinSuccesses=-1\n", defaultRollout, "MinSuccesses", `"-1" is not a number of successful updates from 0 to 100000`},
		{"successes too many", "[ROLLOUT]\nMinSuccesses=100001\n", defaultRollout, "MinSuccesses", `"100001" is not a number of successful updates from 0 to 100000`},
		{"reports 0", "[ROLLOUT]\nMinReports=0\n", defaultRollout, "MinReports", `"0" is not a number of reports from 1 to 100000`},
		{"reports word", "[ROLLOUT]\nMinReports=five\n", defaultRollout, "MinReports", `"five" is not a number of reports from 1 to 100000`},
		{"halt 0", "[ROLLOUT]\nHaltPercent=0\n", defaultRollout, "HaltPercent", `"0" is not a percentage from 1 to 100`},
		{"halt above 100", "[ROLLOUT]\nHaltPercent=101\n", defaultRollout, "HaltPercent", `"101" is not a percentage from 1 to 100`},
		{"halt NaN", "[ROLLOUT]\nHaltPercent=NaN\n", defaultRollout, "HaltPercent", `"NaN" is not a percentage`},
		{"halt fraction", "[ROLLOUT]\nHaltPercent=0.2\n", defaultRollout, "HaltPercent", `"0.2" is not a percentage from 1 to 100`},
		{"pilot bad pattern", "[ROLLOUT]\nPilot=lab-*, lab-[\n", defaultRollout, "Pilot", `"lab-[" is not a valid pattern`},
		{"pilot path", "[ROLLOUT]\nPilot=lab\\01\n", defaultRollout, "Pilot", `"lab\01" is not a host name pattern or client id`},
		{"pilot with a space", "[ROLLOUT]\nPilot=lab 01\n", defaultRollout, "Pilot", `"lab 01" is not a host name pattern or client id`},
		{"unknown key", "[ROLLOUT]\nMinSucesses=3\n", defaultRollout, "MinSucesses", "unknown key (did you mean MinSuccesses?)"},
		{"twice", "[ROLLOUT]\nDelay=1h\nDelay=2h\n", defaultRollout, "Delay", "given 2 times"},
		{"bare", "[ROLLOUT]\nPilot\n", defaultRollout, "Pilot", "has no value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("AppServer.ini", []byte(baseINI+tc.text), t.TempDir())
			if tc.key == "" {
				if err != nil {
					t.Fatal(err)
				}
				got := cfg.Rollout
				if !slices.Equal(got.Pilot, tc.want.Pilot) || got.Delay != tc.want.Delay || got.MinSuccesses != tc.want.MinSuccesses ||
					got.HaltPercent != tc.want.HaltPercent || got.MinReports != tc.want.MinReports {
					t.Errorf("Rollout = %+v, want %+v", got, tc.want)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a ConfigError", err)
			}
			if ce.File != "AppServer.ini" || ce.Section != "ROLLOUT" || ce.Key != tc.key || !strings.Contains(ce.Problem, tc.problem) {
				t.Errorf("got %s (section %q, key %q), want [ROLLOUT] %s: ...%s...", ce, ce.Section, ce.Key, tc.key, tc.problem)
			}
		})
	}
}

// TestRolloutConfigPolicy: the section becomes the rollout policy, and
// --check describes it.
func TestRolloutConfigPolicy(t *testing.T) {
	cfg, err := ParseConfig("AppServer.ini", []byte(baseINI+"[ROLLOUT]\nPilot=lab-*\nDelay=2h\nMinSuccesses=3\nHaltPercent=15\nMinReports=4\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Rollout.Policy()
	if !slices.Equal(p.Pilot, []string{"lab-*"}) || p.Delay != 2*time.Hour || p.MinSuccesses != 3 || p.HaltPercent != 15 || p.MinReports != 4 {
		t.Errorf("Policy() = %+v", p)
	}
	want := "pilot ring lab-* first; everyone after 2h0m0s or after 3 pilot successes; halted above 15% failures in a ring (from 4 reports)"
	if got := cfg.Rollout.describe(); got != want {
		t.Errorf("describe() = %q, want %q", got, want)
	}
	if got := defaultRollout.describe(); !strings.Contains(got, "no staging") {
		t.Errorf("describe() without a pilot ring = %q", got)
	}
}
