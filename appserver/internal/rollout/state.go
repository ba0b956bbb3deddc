package rollout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
	"unicode/utf8"
)

// Phase is where a rollout stands.
type Phase string

// The phases of a rollout.
const (
	// PhaseNone: no release has begun; Choose has no opinion (0).
	PhaseNone Phase = "none"
	// PhasePilot: the pilot ring is served the new release, everyone
	// else the previous one.
	PhasePilot Phase = "pilot"
	// PhasePromoted: everyone is served the new release, and a ring
	// failing above HaltPercent still halts it.
	PhasePromoted Phase = "promoted"
	// PhaseHalted: every client that does not have the new release is
	// served the previous one.
	PhaseHalted Phase = "halted"
	// PhaseComplete: nothing is staged (no pilot ring, or no previous
	// release): everyone is served the new release and reports never
	// halt it.
	PhaseComplete Phase = "complete"
)

// formatVersion is the version of the state file's format.
const formatVersion = 1

// Bounds of what a state file may hold, so that a damaged or hostile
// file cannot make the server hold more than a real rollout would.
const (
	// maxEntries bounds the clients remembered by one ring, successes and
	// failures together: twice the client ids the server remembers.
	maxEntries = 200000
	// maxKey bounds a client's key (its id, or its host name).
	maxKey = 300
	// maxBuild and maxReason bound the build label and the reason.
	maxBuild  = 64
	maxReason = 1000
)

// ring is the reports of one ring for the release being rolled out, each
// client once per outcome.
type ring struct {
	ok, failed map[string]struct{}
	// dropped counts the reports not counted because the ring was full.
	dropped int
}

func newRing() ring {
	return ring{ok: make(map[string]struct{}), failed: make(map[string]struct{})}
}

// entries is how many client outcomes the ring remembers.
func (g *ring) entries() int { return len(g.ok) + len(g.failed) }

// clients is how many distinct clients reported.
func (g *ring) clients() int {
	n := len(g.ok)
	for k := range g.failed {
		if _, ok := g.ok[k]; !ok {
			n++
		}
	}
	return n
}

// state is one OS's rollout.
type state struct {
	phase    Phase
	release  uint64 // being rolled out; 0 in PhaseNone
	build    string // its build label
	previous uint64 // served to the clients not promoted; 0 for none
	started  time.Time
	since    time.Time // when phase began
	reason   string    // why phase began
	// delayFrom is when the pilot phase (re)began, from which Delay runs.
	delayFrom time.Time
	// haltedIn is the phase a halted rollout was halted in, to which
	// Resume returns; "" unless halted.
	haltedIn Phase
	pilot    ring
	everyone ring
}

func newState() *state {
	return &state{phase: PhaseNone, pilot: newRing(), everyone: newRing()}
}

// fileState is the JSON form of state.
type fileState struct {
	Format    int       `json:"format"`
	Phase     Phase     `json:"phase"`
	Release   uint64    `json:"release"`
	Build     string    `json:"build"`
	Previous  uint64    `json:"previous"`
	Started   time.Time `json:"started"`
	Since     time.Time `json:"since"`
	Reason    string    `json:"reason"`
	DelayFrom time.Time `json:"delay_from"`
	HaltedIn  Phase     `json:"halted_in"`
	Pilot     fileRing  `json:"pilot"`
	Everyone  fileRing  `json:"everyone"`
}

type fileRing struct {
	Succeeded []string `json:"succeeded"`
	Failed    []string `json:"failed"`
	Dropped   int      `json:"dropped"`
}

// encode returns the state's file form: sorted, so that the same state is
// always the same bytes.
func (s *state) encode() []byte {
	fr := func(g *ring) fileRing {
		return fileRing{Succeeded: sortedKeys(g.ok), Failed: sortedKeys(g.failed), Dropped: g.dropped}
	}
	f := fileState{
		Format: formatVersion, Phase: s.phase, Release: s.release, Build: s.build, Previous: s.previous,
		Started: s.started, Since: s.since, Reason: s.reason, DelayFrom: s.delayFrom, HaltedIn: s.haltedIn,
		Pilot: fr(&s.pilot), Everyone: fr(&s.everyone),
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		// Only times outside years 0-9999 fail, which no clock gives and
		// decode refuses.
		panic(fmt.Sprintf("rollout: encoding the state: %v", err))
	}
	return append(data, '\n')
}

func sortedKeys(m map[string]struct{}) []string {
	return slices.Sorted(maps.Keys(m))
}

// decode parses a state file, refusing anything encode would not write.
func decode(data []byte) (*state, error) {
	var f fileState
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(&f); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("data after the state")
	}
	if f.Format != formatVersion {
		return nil, fmt.Errorf("format %d, want %d", f.Format, formatVersion)
	}
	s := &state{
		phase: f.Phase, release: f.Release, build: f.Build, previous: f.Previous,
		started: f.Started.UTC(), since: f.Since.UTC(), reason: f.Reason, delayFrom: f.DelayFrom.UTC(), haltedIn: f.HaltedIn,
	}
	switch s.phase {
	case PhaseNone:
		if s.release != 0 || s.previous != 0 || s.build != "" || s.haltedIn != "" {
			return nil, errors.New("a release in phase none")
		}
	case PhasePilot, PhasePromoted, PhaseComplete, PhaseHalted:
		if s.release == 0 {
			return nil, fmt.Errorf("phase %s without a release", s.phase)
		}
	default:
		return nil, fmt.Errorf("unknown phase %q", s.phase)
	}
	if s.release != 0 && s.previous >= s.release {
		return nil, fmt.Errorf("previous release %d is not older than release %d", s.previous, s.release)
	}
	if (s.phase == PhasePilot || s.phase == PhaseHalted) && s.previous == 0 {
		return nil, fmt.Errorf("phase %s without a previous release", s.phase)
	}
	switch {
	case s.phase == PhaseHalted && s.haltedIn != PhasePilot && s.haltedIn != PhasePromoted && s.haltedIn != PhaseComplete:
		return nil, fmt.Errorf("halted in %q, not pilot, promoted or complete", s.haltedIn)
	case s.phase != PhaseHalted && s.haltedIn != "":
		return nil, fmt.Errorf("halted_in %q while %s", s.haltedIn, s.phase)
	}
	if len(s.build) > maxBuild || !utf8.ValidString(s.build) {
		return nil, fmt.Errorf("build longer than %d bytes", maxBuild)
	}
	if len(s.reason) > maxReason {
		return nil, fmt.Errorf("reason longer than %d bytes", maxReason)
	}
	for _, t := range []time.Time{s.started, s.since, s.delayFrom} {
		if y := t.Year(); y < 1 || y > 9999 {
			return nil, fmt.Errorf("time %v out of range", t)
		}
	}
	var err error
	if s.pilot, err = decodeRing(f.Pilot); err != nil {
		return nil, fmt.Errorf("pilot ring: %w", err)
	}
	if s.everyone, err = decodeRing(f.Everyone); err != nil {
		return nil, fmt.Errorf("everyone ring: %w", err)
	}
	if s.phase == PhaseNone && (s.pilot.entries() != 0 || s.everyone.entries() != 0) {
		return nil, errors.New("reports in phase none")
	}
	return s, nil
}

func decodeRing(f fileRing) (ring, error) {
	g := newRing()
	if f.Dropped < 0 {
		return g, fmt.Errorf("dropped %d", f.Dropped)
	}
	g.dropped = f.Dropped
	if len(f.Succeeded)+len(f.Failed) > maxEntries {
		return g, fmt.Errorf("more than %d clients", maxEntries)
	}
	for _, l := range []struct {
		keys []string
		m    map[string]struct{}
		what string
	}{{f.Succeeded, g.ok, "succeeded"}, {f.Failed, g.failed, "failed"}} {
		for _, k := range l.keys {
			if k == "" || len(k) > maxKey || !utf8.ValidString(k) {
				return g, fmt.Errorf("%s: client %q is not a client id or host", l.what, k)
			}
			if _, dup := l.m[k]; dup {
				return g, fmt.Errorf("%s: client %q twice", l.what, k)
			}
			l.m[k] = struct{}{}
		}
	}
	return g, nil
}
