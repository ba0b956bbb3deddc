package rollout

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/internal/atomicfile"
)

// saveEvery is how often, at most, a change of the counts alone is
// written: a report is one file write, and a rollout to 10,000 clients
// should not be 20,000 of them. A crash loses the counts of the last
// seconds at most (those clients count again when they report again); a
// change of phase is written at once.
const saveEvery = 5 * time.Second

// ErrDamaged is wrapped by Open's error when the state file cannot be
// understood.
var ErrDamaged = errors.New("rollout state damaged")

// Rollout is one OS's rollout: which release each of its clients is
// served. It is safe for concurrent use.
type Rollout struct {
	file   string
	log    *slog.Logger
	notify func(Event)

	mu     sync.Mutex
	policy Policy
	st     *state
	dirty  bool      // st has changes not yet in file
	saved  time.Time // when st was last written (the callers' clock)

	notifyMu sync.Mutex // notify is called one event at a time
}

// Open returns the rollout kept in file (made when first written), under
// policy. A state that cannot be written is logged to log (nil for none).
// notify, which may be nil, is told every event (a rollout begun,
// promoted, halted, resumed) for the log and the administrator's mail; it
// is called without the rollout's lock, one event at a time, and should
// not block for long (send mail in the background).
//
// A missing file is a rollout that has not begun. A file that cannot be
// read or understood gives an error naming it (wrapping ErrDamaged when
// damaged; the file is then moved to FILE.damaged) together with a usable
// Rollout that has not begun: the next Begin starts a pilot phase, the
// safe choice. Log the error and go on serving.
func Open(log *slog.Logger, file string, policy Policy, notify func(Event)) (*Rollout, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Rollout{file: file, log: log, notify: notify, policy: policy, st: newState()}
	data, err := os.ReadFile(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return r, nil
	case err != nil:
		return r, fmt.Errorf("reading the rollout state: %w", err)
	}
	st, err := decode(data)
	if err != nil {
		aside := file + ".damaged"
		moved := fmt.Sprintf("moved to %s", aside)
		if rerr := os.Rename(file, aside); rerr != nil {
			moved = fmt.Sprintf("could not be moved aside: %v", rerr)
		}
		return r, fmt.Errorf("%w: %s: %v (%s); the rollout starts again at the next release published, with the pilot ring",
			ErrDamaged, file, err, moved)
	}
	r.st = st
	return r, nil
}

// Peek returns the releases the rollout kept in file still serves (as
// Pinned does), reading the file only: it never writes, renames or moves
// it, which is the server's to do, so that another process (`appserver
// publish`) can read the state of the server running beside it. A missing
// file is a rollout that has not begun (none pinned). A file that cannot
// be read or understood is an error naming it (wrapping ErrDamaged when
// damaged): the caller cannot know what the rollout serves.
func Peek(file string) (pinned []uint64, err error) {
	data, err := os.ReadFile(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading the rollout state: %w", err)
	}
	st, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrDamaged, file, err)
	}
	return st.pinned(), nil
}

// SetPolicy replaces the policy, as a reloaded configuration does. A
// rollout in its pilot phase is promoted at once when the new policy has
// no pilot ring, or has a Delay or MinSuccesses already met.
func (r *Rollout) SetPolicy(now time.Time, p Policy) {
	r.mu.Lock()
	r.policy = p
	evs := r.evaluate(now)
	r.mu.Unlock()
	r.tell(evs)
}

// Begin starts the rollout of release number (labelled build), published
// after release previous (0 when it is the first). Nothing changes when
// number is the release already being rolled out, so Begin can be called
// at every start with the newest release.
//
// When the current rollout has not reached everyone (pilot phase, or
// halted), the clients outside the pilot ring keep the release they were
// getting, whatever previous says. The new rollout is complete at once
// when there is no previous release or no pilot ring; else it begins with
// the pilot ring.
func (r *Rollout) Begin(now time.Time, number uint64, build string, previous uint64) error {
	now = now.Round(0).UTC()
	r.mu.Lock()
	st := r.st
	switch {
	case number == 0:
		r.mu.Unlock()
		return errors.New("beginning a rollout: release number 0")
	case number == st.release && build == st.build:
		r.mu.Unlock()
		return nil
	case number == st.release:
		r.mu.Unlock()
		return fmt.Errorf("beginning the rollout of release %d as build %q: it is being rolled out as build %q", number, build, st.build)
	case number < st.release:
		r.mu.Unlock()
		return fmt.Errorf("beginning the rollout of release %d: release %d is newer", number, st.release)
	case previous >= number:
		r.mu.Unlock()
		return fmt.Errorf("beginning the rollout of release %d: previous release %d is not older", number, previous)
	case len(build) > maxBuild:
		r.mu.Unlock()
		return fmt.Errorf("beginning the rollout of release %d: build label longer than %d bytes", number, maxBuild)
	}
	fallback, why := previous, ""
	if st.phase == PhasePilot || st.phase == PhaseHalted {
		fallback = st.previous
		why = fmt.Sprintf("; release %d had not reached everyone, so release %d stays the fallback", st.release, fallback)
	}
	ns := newState()
	ns.release, ns.build, ns.previous = number, build, fallback
	ns.started, ns.since, ns.delayFrom = now, now, now
	switch {
	case fallback == 0:
		ns.phase, ns.reason = PhaseComplete, "no previous release to fall back to: everyone is served it"
	case !r.policy.staged():
		ns.phase, ns.reason = PhaseComplete, "no pilot ring configured: everyone is served it"
	default:
		ns.phase, ns.reason = PhasePilot, "published: the pilot ring is served it first"
	}
	ns.reason += why
	r.st = ns
	err := r.save(now)
	ev := r.event(now, EventBegun, ns.reason)
	r.mu.Unlock()
	r.tell([]Event{ev})
	return err
}

// Choose returns the release number client c is to be served: the new
// release, or the previous one while c is not promoted. It returns 0 when
// no rollout has begun (serve the newest release).
func (r *Rollout) Choose(now time.Time, c Client) uint64 {
	now = now.Round(0).UTC()
	r.mu.Lock()
	evs := r.evaluate(now)
	n := r.choose(c)
	r.saveIfDue(now)
	r.mu.Unlock()
	r.tell(evs)
	return n
}

func (r *Rollout) choose(c Client) uint64 {
	st := r.st
	switch st.phase {
	case PhaseNone:
		return 0
	case PhasePromoted, PhaseComplete:
		return st.release
	}
	// Pilot or halted. A client that has the new release keeps it.
	if c.Build != "" && c.Build == st.build {
		return st.release
	}
	if k := clientKey(c); k != "" {
		if _, ok := st.pilot.ok[k]; ok {
			return st.release
		}
		if _, ok := st.everyone.ok[k]; ok {
			return st.release
		}
	}
	if st.phase == PhasePilot && r.policy.InPilot(c) {
		return st.release
	}
	return st.previous
}

// Report counts client c's outcome of updating to release (ok for a
// success). Reports of another release than the one being rolled out are
// ignored, and a client counts once per outcome. A report can promote the
// rollout (MinSuccesses) or halt it (HaltPercent); notify is told.
func (r *Rollout) Report(now time.Time, c Client, release uint64, ok bool) {
	now = now.Round(0).UTC()
	r.mu.Lock()
	st := r.st
	k := clientKey(c)
	if st.phase == PhaseNone || release != st.release || k == "" {
		r.mu.Unlock()
		return
	}
	g := &st.everyone
	if r.policy.InPilot(c) {
		g = &st.pilot
	}
	set := g.failed
	if ok {
		set = g.ok
	}
	if _, seen := set[k]; !seen {
		if g.entries() >= maxEntries {
			g.dropped++
		} else {
			set[k] = struct{}{}
		}
		r.dirty = true
	}
	evs := r.evaluate(now)
	r.saveIfDue(now)
	r.mu.Unlock()
	r.tell(evs)
}

// clientKey is how a client is remembered: its id, else its host name.
func clientKey(c Client) string {
	k := strings.ToLower(c.ID)
	if k == "" && c.Host != "" {
		k = "host:" + strings.ToLower(c.Host)
	}
	if len(k) > maxKey {
		return ""
	}
	return k
}

// Halt halts the rollout for the administrator: every client without the
// new release is served the previous one. reason is said in the status
// and the event ("" for "halted by the administrator").
func (r *Rollout) Halt(now time.Time, reason string) error {
	now = now.Round(0).UTC()
	r.mu.Lock()
	st := r.st
	switch {
	case st.phase == PhaseNone:
		r.mu.Unlock()
		return errors.New("halting: no rollout has begun")
	case st.phase == PhaseHalted:
		r.mu.Unlock()
		return fmt.Errorf("halting: the rollout of release %d is halted already", st.release)
	case st.previous == 0:
		r.mu.Unlock()
		return fmt.Errorf("halting: release %d is the first, there is no previous release to serve instead", st.release)
	}
	if reason == "" {
		reason = "halted by the administrator"
	}
	if len(reason) > maxReason {
		reason = strings.ToValidUTF8(reason[:maxReason], "")
	}
	ev := r.halt(now, reason)
	err := r.save(now)
	r.mu.Unlock()
	r.tell([]Event{ev})
	return err
}

// Resume returns a halted rollout to the phase it was halted in,
// forgiving the failures counted so far (the administrator judged them not
// the release's fault); a pilot phase's Delay runs again from now.
func (r *Rollout) Resume(now time.Time) error {
	now = now.Round(0).UTC()
	r.mu.Lock()
	st := r.st
	if st.phase != PhaseHalted {
		r.mu.Unlock()
		return fmt.Errorf("resuming: the rollout is not halted (%s)", st.phase)
	}
	r.forgive()
	st.phase, st.since, st.reason = st.haltedIn, now, "resumed by the administrator"
	st.haltedIn = ""
	if st.phase == PhasePilot {
		st.delayFrom = now
	}
	evs := []Event{r.event(now, EventResumed, st.reason)}
	evs = append(evs, r.evaluate(now)...)
	err := r.save(now)
	r.mu.Unlock()
	r.tell(evs)
	return err
}

// Promote serves the new release to everyone now, for the administrator;
// the failures of a halted rollout are forgiven.
func (r *Rollout) Promote(now time.Time) error {
	now = now.Round(0).UTC()
	r.mu.Lock()
	st := r.st
	if st.phase != PhasePilot && st.phase != PhaseHalted {
		r.mu.Unlock()
		return fmt.Errorf("promoting: the rollout is %s, not in its pilot phase or halted", st.phase)
	}
	to := PhasePromoted
	if st.phase == PhaseHalted {
		r.forgive()
		if st.haltedIn == PhaseComplete {
			to = PhaseComplete
		}
	}
	st.phase, st.since, st.reason, st.haltedIn = to, now, "promoted by the administrator", ""
	ev := r.event(now, EventPromoted, st.reason)
	err := r.save(now)
	r.mu.Unlock()
	r.tell([]Event{ev})
	return err
}

// forgive forgets the failures counted.
func (r *Rollout) forgive() {
	r.st.pilot.failed = make(map[string]struct{})
	r.st.everyone.failed = make(map[string]struct{})
}

// Pinned returns the releases the rollout may still serve (the new one
// and the fallback), which the release history must keep.
func (r *Rollout) Pinned() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st.pinned()
}

// pinned returns the release and the fallback, those not 0.
func (st *state) pinned() []uint64 {
	var p []uint64
	if st.release != 0 {
		p = append(p, st.release)
	}
	if st.previous != 0 {
		p = append(p, st.previous)
	}
	return p
}

// Flush writes the state if it has changes not yet written, as at
// shutdown.
func (r *Rollout) Flush(now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.dirty {
		return nil
	}
	return r.save(now.Round(0).UTC())
}

// evaluate applies the policy to the counts and the clock: halts a ring
// failing above HaltPercent, promotes a pilot phase whose successes or
// Delay are met. It returns the events, which the caller tells once the
// lock is released.
func (r *Rollout) evaluate(now time.Time) []Event {
	st, p := r.st, r.policy
	if st.phase != PhasePilot && st.phase != PhasePromoted {
		return nil
	}
	for _, g := range []struct {
		name string
		r    *ring
	}{{"pilot", &st.pilot}, {"everyone", &st.everyone}} {
		f, total := len(g.r.failed), g.r.entries()
		if total == 0 || total < p.MinReports || f == 0 {
			continue
		}
		rate := 100 * float64(f) / float64(total)
		if rate > p.HaltPercent {
			why := fmt.Sprintf("%d of %d reports of the %s ring are failures (%.1f%%, above HaltPercent %g%%)", f, total, g.name, rate, p.HaltPercent)
			ev := r.halt(now, why)
			ev.Ring, ev.Successes, ev.Failures, ev.Rate = g.name, len(g.r.ok), f, rate
			r.save(now)
			return []Event{ev}
		}
	}
	if st.phase != PhasePilot {
		return nil
	}
	var why string
	switch {
	case !p.staged():
		why = "no pilot ring is configured any more"
	case p.MinSuccesses > 0 && len(st.pilot.ok) >= p.MinSuccesses:
		why = fmt.Sprintf("the pilot ring reported %d successful updates (MinSuccesses %d)", len(st.pilot.ok), p.MinSuccesses)
	case p.Delay > 0 && !now.Before(st.delayFrom.Add(p.Delay)):
		why = fmt.Sprintf("Delay %v has passed since the pilot phase began", p.Delay)
	default:
		return nil
	}
	st.phase, st.since, st.reason = PhasePromoted, now, why
	ev := r.event(now, EventPromoted, why)
	ev.Successes, ev.Failures = len(st.pilot.ok), len(st.pilot.failed)
	r.save(now)
	return []Event{ev}
}

// halt moves to PhaseHalted.
func (r *Rollout) halt(now time.Time, why string) Event {
	st := r.st
	st.haltedIn, st.phase, st.since, st.reason = st.phase, PhaseHalted, now, why
	return r.event(now, EventHalted, why)
}

func (r *Rollout) event(now time.Time, kind EventKind, why string) Event {
	return Event{Kind: kind, At: now, Release: r.st.release, Build: r.st.build, Previous: r.st.previous, Phase: r.st.phase, Why: why}
}

// saveIfDue writes changed counts when the last write is old enough.
func (r *Rollout) saveIfDue(now time.Time) {
	if r.dirty && now.Sub(r.saved) >= saveEvery {
		r.save(now)
	}
}

// save writes the state; a failure is logged and returned, and the state
// is written again at the next change.
func (r *Rollout) save(now time.Time) error {
	r.dirty = true
	if err := atomicfile.Write(r.file, r.st.encode(), 0o644); err != nil {
		r.log.Error("rollout state not saved; a restart would forget the latest reports", "file", r.file, "err", err)
		return fmt.Errorf("saving the rollout state: %w", err)
	}
	r.dirty, r.saved = false, now
	return nil
}

// tell hands the events to notify.
func (r *Rollout) tell(evs []Event) {
	if r.notify == nil || len(evs) == 0 {
		return
	}
	r.notifyMu.Lock()
	defer r.notifyMu.Unlock()
	for _, ev := range evs {
		r.notify(ev)
	}
}
