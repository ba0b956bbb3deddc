package rollout

import (
	"fmt"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/internal/termtext"
)

// EventKind is what happened to a rollout.
type EventKind string

// The kinds of event.
const (
	EventBegun    EventKind = "begun"
	EventPromoted EventKind = "promoted"
	EventHalted   EventKind = "halted"
	EventResumed  EventKind = "resumed"
)

// Event is a change of a rollout's phase, for the log and, when halted,
// the administrator's mail.
type Event struct {
	Kind     EventKind
	At       time.Time
	Release  uint64 // the release being rolled out
	Build    string // its build label
	Previous uint64 // the release served to the clients not promoted
	Phase    Phase  // the phase after the event
	Why      string // in words
	// Ring, Successes, Failures and Rate are set when a ring's failures
	// halted the rollout (Ring "pilot" or "everyone"; Rate in percent),
	// and Successes and Failures of the pilot ring on a promotion.
	Ring                string
	Successes, Failures int
	Rate                float64
}

// String reads, for example (the build and the reason, which come from the
// publisher and the administrator, escaped for a terminal),
//
//	rollout of release 3 (build 7.00.240601A) halted: 3 of 12 reports of the pilot ring are failures (25.0%, above HaltPercent 20%); clients without it are served release 2
func (e Event) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rollout of release %d", e.Release)
	if e.Build != "" {
		fmt.Fprintf(&b, " (build %s)", termtext.Escape(e.Build))
	}
	fmt.Fprintf(&b, " %s: %s", e.Kind, termtext.Escape(e.Why))
	switch e.Phase {
	case PhasePilot:
		fmt.Fprintf(&b, "; clients outside the pilot ring are served release %d", e.Previous)
	case PhaseHalted:
		fmt.Fprintf(&b, "; clients without it are served release %d", e.Previous)
	}
	return b.String()
}

// Ring is the reports of one ring.
type Ring struct {
	Successes int // clients that reported a successful update
	Failures  int // clients that reported a failed one
	Clients   int // distinct clients that reported
	Dropped   int // reports not counted, the ring remembering too many clients
}

// FailurePercent is the ring's failure rate, in percent.
func (g Ring) FailurePercent() float64 {
	if g.Successes+g.Failures == 0 {
		return 0
	}
	return 100 * float64(g.Failures) / float64(g.Successes+g.Failures)
}

// Status is where a rollout stands, as "appserver rollout status" shows it.
type Status struct {
	Phase    Phase
	Release  uint64 // being rolled out; 0 when none has begun
	Build    string
	Previous uint64 // served to the clients not promoted; 0 for none
	Started  time.Time
	Since    time.Time // when Phase began
	Reason   string    // why Phase began
	HaltedIn Phase     // when halted: the phase Resume returns to
	// PromoteAt is when Delay promotes a rollout in its pilot phase; zero
	// otherwise, or without a Delay.
	PromoteAt       time.Time
	Pilot, Everyone Ring
	Policy          Policy
}

// Status returns where the rollout stands at now (a Delay that has passed
// promotes it first).
func (r *Rollout) Status(now time.Time) Status {
	now = now.Round(0).UTC()
	r.mu.Lock()
	evs := r.evaluate(now)
	st := r.st
	s := Status{
		Phase: st.phase, Release: st.release, Build: st.build, Previous: st.previous,
		Started: st.started, Since: st.since, Reason: st.reason, HaltedIn: st.haltedIn,
		Pilot: ringStatus(&st.pilot), Everyone: ringStatus(&st.everyone), Policy: r.policy,
	}
	if st.phase == PhasePilot && r.policy.Delay > 0 {
		s.PromoteAt = st.delayFrom.Add(r.policy.Delay)
	}
	r.mu.Unlock()
	r.tell(evs)
	return s
}

func ringStatus(g *ring) Ring {
	return Ring{Successes: len(g.ok), Failures: len(g.failed), Clients: g.clients(), Dropped: g.dropped}
}

// String is the status in lines for a terminal, for example
//
//	release 3 (build 7.00.240601A): pilot since 2026-12-06 12:00:00 UTC: published: the pilot ring is served it first
//	  clients outside the pilot ring are served release 2
//	  promoted at 2026-12-07 12:00:00 UTC by Delay, or after 10 successful pilot updates
//	  pilot ring: 4 successes, 0 failures (0.0%) from 4 clients
//	  everyone else: 0 successes, 0 failures (0.0%) from 0 clients
//
// The build label and the reason, which come from the publisher and the
// administrator, are escaped for a terminal.
func (s Status) String() string {
	if s.Phase == PhaseNone {
		return "no release is being rolled out\n"
	}
	const layout = "2006-01-02 15:04:05 MST"
	var b strings.Builder
	fmt.Fprintf(&b, "release %d", s.Release)
	if s.Build != "" {
		fmt.Fprintf(&b, " (build %s)", termtext.Escape(s.Build))
	}
	fmt.Fprintf(&b, ": %s since %s: %s\n", s.Phase, s.Since.Format(layout), termtext.Escape(s.Reason))
	switch s.Phase {
	case PhasePilot:
		fmt.Fprintf(&b, "  clients outside the pilot ring are served release %d\n", s.Previous)
		var how []string
		if !s.PromoteAt.IsZero() {
			how = append(how, fmt.Sprintf("at %s by Delay", s.PromoteAt.Format(layout)))
		}
		if s.Policy.MinSuccesses > 0 {
			how = append(how, fmt.Sprintf("after %d successful pilot updates", s.Policy.MinSuccesses))
		}
		if len(how) == 0 {
			how = append(how, "only by \"appserver rollout promote\"")
		}
		fmt.Fprintf(&b, "  promoted %s\n", strings.Join(how, ", or "))
	case PhaseHalted:
		fmt.Fprintf(&b, "  clients without it are served release %d; \"appserver rollout resume\" returns to the %s phase, \"appserver rollout promote\" serves it to everyone\n", s.Previous, s.HaltedIn)
	}
	for _, g := range []struct {
		name string
		r    Ring
	}{{"pilot ring", s.Pilot}, {"everyone else", s.Everyone}} {
		fmt.Fprintf(&b, "  %s: %d successes, %d failures (%.1f%%) from %d clients", g.name, g.r.Successes, g.r.Failures, g.r.FailurePercent(), g.r.Clients)
		if g.r.Dropped > 0 {
			fmt.Fprintf(&b, ", %d reports not counted (too many clients)", g.r.Dropped)
		}
		b.WriteString("\n")
	}
	return b.String()
}
