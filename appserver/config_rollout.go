package appserver

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/rollout"
	"github.com/erpupdate/smartsync/internal/winini"
	"gopkg.in/ini.v1"
)

// RolloutConfig is the [ROLLOUT] section: how a new release is rolled out
// in stages (see package rollout for the model).
type RolloutConfig struct {
	// Pilot is [ROLLOUT] Pilot: the pilot ring, host name patterns
	// ("lab-*", "*.pilot.example.com") and client ids (32 hexadecimal
	// digits), each checked by rollout.CheckPattern. Empty (the default)
	// means no staging: a release goes to everyone at once.
	Pilot []string
	// Delay is [ROLLOUT] Delay: everyone gets the release this long after
	// the pilot ring did (seconds, or a duration as 36h, 90m or 7d; 0..30
	// days, default 24h; 0 never promotes by time).
	Delay time.Duration
	// MinSuccesses is [ROLLOUT] MinSuccesses: everyone gets the release
	// as soon as this many pilot clients reported updating to it
	// (0..100000, default 10; 0 never promotes by successes).
	MinSuccesses int
	// HaltPercent is [ROLLOUT] HaltPercent: a ring whose failure rate is
	// above it halts the rollout (1..100, default 20).
	HaltPercent float64
	// MinReports is [ROLLOUT] MinReports: the reports a ring needs before
	// its failure rate is weighed (1..100000, default 5).
	MinReports int
}

// Policy is the rollout policy the section describes.
func (c RolloutConfig) Policy() rollout.Policy {
	return rollout.Policy{Pilot: c.Pilot, Delay: c.Delay, MinSuccesses: c.MinSuccesses, HaltPercent: c.HaltPercent, MinReports: c.MinReports}
}

const (
	sectionRollout = "ROLLOUT"

	keyPilot        = "Pilot"
	keyDelay        = "Delay"
	keyMinSuccesses = "MinSuccesses"
	keyHaltPercent  = "HaltPercent"
	keyMinReports   = "MinReports"

	// maxRolloutDelay bounds [ROLLOUT] Delay: a release held back longer
	// than a month is better not published.
	maxRolloutDelay = 30 * 24 * time.Hour
)

// rolloutKeys are the keys of [ROLLOUT], which is ours.
var rolloutKeys = []string{keyPilot, keyDelay, keyMinSuccesses, keyHaltPercent, keyMinReports}

// defaultRollout is the [ROLLOUT] a file without the section has.
var defaultRollout = RolloutConfig{Delay: 24 * time.Hour, MinSuccesses: 10, HaltPercent: 20, MinReports: 5}

func (v *validator) rollout(f *ini.File, cfg *Config) {
	cfg.Rollout = defaultRollout
	sec := section(f, sectionRollout)
	if sec == nil {
		return
	}
	v.unknownKeys(sec, sectionRollout, rolloutKeys)
	if val, _, ok := v.value(sec, sectionRollout, keyPilot); ok {
		for _, item := range winini.List(val) {
			if err := rollout.CheckPattern(item); err != nil {
				v.add(sectionRollout, keyPilot, err, "%s %v; give host name patterns (lab-*, *.pilot.example.com) or client ids, separated by commas", winini.Quote(item), err)
				continue
			}
			cfg.Rollout.Pilot = append(cfg.Rollout.Pilot, item)
		}
	}
	if val, _, ok := v.value(sec, sectionRollout, keyDelay); ok && val != "" {
		d, ok := parseDelay(val)
		if !ok || d < 0 || d > maxRolloutDelay {
			v.add(sectionRollout, keyDelay, nil, "%q is not a delay from 0 to 30 days: write seconds, or a duration as 36h, 90m or 7d", val)
		} else {
			cfg.Rollout.Delay = d
		}
	}
	for _, k := range []struct {
		key      string
		min, max int
		what     string
		set      *int
	}{
		{keyMinSuccesses, 0, 100000, "number of successful updates", &cfg.Rollout.MinSuccesses},
		{keyMinReports, 1, 100000, "number of reports", &cfg.Rollout.MinReports},
	} {
		val, _, ok := v.value(sec, sectionRollout, k.key)
		if !ok || val == "" {
			continue
		}
		n, err := winini.Digits(val)
		if err != nil || n < k.min || n > k.max {
			v.add(sectionRollout, k.key, err, "%q is not a %s from %d to %d", val, k.what, k.min, k.max)
			continue
		}
		*k.set = n
	}
	if val, _, ok := v.value(sec, sectionRollout, keyHaltPercent); ok && val != "" {
		p, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(val, "%")), 64)
		if err != nil || math.IsNaN(p) || p < 1 || p > 100 {
			v.add(sectionRollout, keyHaltPercent, nil, "%q is not a percentage from 1 to 100", val)
		} else {
			cfg.Rollout.HaltPercent = p
		}
	}
}

// parseDelay parses [ROLLOUT] Delay: whole seconds, a Go duration (36h,
// 90m, 1h30m) or whole days (7d).
func parseDelay(s string) (time.Duration, bool) {
	if n, err := winini.Digits(s); err == nil {
		if n > int(maxRolloutDelay/time.Second) {
			return 0, false
		}
		return time.Duration(n) * time.Second, true
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := winini.Digits(days)
		if err != nil || n > 30 {
			return 0, false
		}
		return time.Duration(n) * 24 * time.Hour, true
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}

// describe is how "appserver --check" reports the rollout policy.
func (c RolloutConfig) describe() string {
	if len(c.Pilot) == 0 {
		return "no staging: a release goes to everyone at once ([ROLLOUT] Pilot is not set)"
	}
	var when []string
	if c.Delay > 0 {
		when = append(when, "after "+c.Delay.String())
	}
	if c.MinSuccesses > 0 {
		when = append(when, "after "+strconv.Itoa(c.MinSuccesses)+" pilot successes")
	}
	if len(when) == 0 {
		when = append(when, `only by "appserver rollout promote"`)
	}
	return "pilot ring " + strings.Join(c.Pilot, ", ") + " first; everyone " + strings.Join(when, " or ") +
		"; halted above " + strconv.FormatFloat(c.HaltPercent, 'g', -1, 64) + "% failures in a ring (from " +
		strconv.Itoa(c.MinReports) + " reports)"
}
