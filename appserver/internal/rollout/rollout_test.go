package rollout

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// t0 is the time the tests' rollouts begin.
var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// policy is a staged policy with the defaults of [ROLLOUT].
func policy() Policy {
	return Policy{Pilot: []string{"lab-*", "*.pilot.example.com", "0123456789abcdef0123456789ABCDEF"},
		Delay: 24 * time.Hour, MinSuccesses: 10, HaltPercent: 20, MinReports: 5}
}

// events collects what a rollout tells.
type events struct {
	mu  sync.Mutex
	evs []Event
}

func (e *events) add(ev Event) { e.mu.Lock(); e.evs = append(e.evs, ev); e.mu.Unlock() }

func (e *events) kinds() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var k []string
	for _, ev := range e.evs {
		k = append(k, string(ev.Kind))
	}
	return strings.Join(k, ",")
}

func (e *events) last() Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.evs) == 0 {
		return Event{}
	}
	return e.evs[len(e.evs)-1]
}

// open opens the rollout in dir/linux.json.
func open(t *testing.T, dir string, p Policy) (*Rollout, *events) {
	t.Helper()
	ev := &events{}
	r, err := Open(slog.New(slog.DiscardHandler), filepath.Join(dir, "linux.json"), p, ev.add)
	if err != nil {
		t.Fatal(err)
	}
	return r, ev
}

// begun is a rollout of release 2 (build B2) after release 1, begun at t0.
func begun(t *testing.T, p Policy) (*Rollout, *events, string) {
	t.Helper()
	dir := t.TempDir()
	r, ev := open(t, dir, p)
	if err := r.Begin(t0, 2, "B2", 1); err != nil {
		t.Fatal(err)
	}
	return r, ev, dir
}

func pilotClient(i int) Client {
	return Client{ID: fmt.Sprintf("%032x", 1000+i), Host: fmt.Sprintf("lab-%d", i)}
}
func othersClient(i int) Client {
	return Client{ID: fmt.Sprintf("%032x", 5000+i), Host: fmt.Sprintf("caixa-%d", i)}
}

func TestPilotMatching(t *testing.T) {
	p := Policy{Pilot: []string{"lab-*", "*.pilot.example.com", "0123456789abcdef0123456789ABCDEF", "caixa-0?", "[xy]-1"}}
	for _, tc := range []struct {
		c    Client
		want bool
	}{
		{Client{Host: "lab-01"}, true},
		{Client{Host: "LAB-01"}, true},
		{Client{Host: "lab-"}, true},
		{Client{Host: "mylab-01"}, false},
		{Client{Host: "lab"}, false},
		{Client{Host: "ws1.pilot.example.com"}, true},
		{Client{Host: "WS1.Pilot.Example.COM"}, true},
		{Client{Host: "ws1.pilot.example.com.evil"}, false},
		{Client{Host: "ws1"}, false}, // a short name does not match full names
		{Client{Host: "caixa-07"}, true},
		{Client{Host: "caixa-007"}, false},
		{Client{Host: "x-1"}, true},
		{Client{Host: "z-1"}, false},
		{Client{ID: "0123456789abcdef0123456789abcdef", Host: "ws9"}, true},
		{Client{ID: "0123456789ABCDEF0123456789ABCDEF"}, true},
		{Client{ID: "0123456789abcdef0123456789abcde0", Host: "ws9"}, false},
		{Client{}, false},
	} {
		if got := p.InPilot(tc.c); got != tc.want {
			t.Errorf("InPilot(%+v) = %v, want %v", tc.c, got, tc.want)
		}
	}
	// A pattern that is not an id never matches an id, even with '*'.
	if (Policy{Pilot: []string{"0123*"}}).InPilot(Client{ID: "0123456789abcdef0123456789abcdef", Host: "ws"}) {
		t.Error("a host pattern matched a client id")
	}
}

func TestCheckPattern(t *testing.T) {
	for _, tc := range []struct {
		p       string
		problem string // "" for a good pattern
	}{
		{"lab-*", ""},
		{"*.pilot.example.com", ""},
		{"0123456789abcdef0123456789ABCDEF", ""},
		{"caixa-0?", ""},
		{"", "is empty"},
		{"lab-[", "not a valid pattern"},
		{`lab\01`, "no slash, backslash or space"},
		{"a/b", "no slash"},
		{"lab 01", "space"},
		{"lab\x1b[31m", "control character"},
		{strings.Repeat("a", 254), "longer than 253"},
	} {
		err := CheckPattern(tc.p)
		switch {
		case tc.problem == "" && err != nil:
			t.Errorf("CheckPattern(%q) = %v, want nil", tc.p, err)
		case tc.problem != "" && (err == nil || !strings.Contains(err.Error(), tc.problem)):
			t.Errorf("CheckPattern(%q) = %v, want ...%s...", tc.p, err, tc.problem)
		}
	}
}

// TestChooseAcrossPhases: who is served which release in each phase.
func TestChooseAcrossPhases(t *testing.T) {
	pilot, other := pilotClient(1), othersClient(1)
	updated := othersClient(2)
	updated.Build = "B2" // installed the new release while it was promoted
	failedPilot := pilotClient(2)
	type want struct{ pilot, other, updated, failedPilot uint64 }
	for _, tc := range []struct {
		name string
		do   func(t *testing.T, r *Rollout)
		want want
	}{
		{"pilot", func(*testing.T, *Rollout) {}, want{2, 1, 2, 2}},
		{"promoted", func(t *testing.T, r *Rollout) { must(t, r.Promote(t0)) }, want{2, 2, 2, 2}},
		// Halted: who has not got it gets release 1, pilot clients too; who
		// has it keeps it.
		{"halted", func(t *testing.T, r *Rollout) { must(t, r.Halt(t0, "")) }, want{1, 1, 2, 1}},
		{"halted after the pilot updated", func(t *testing.T, r *Rollout) {
			r.Report(t0, pilot, 2, true)
			must(t, r.Halt(t0, "bad"))
		}, want{2, 1, 2, 1}},
		{"resumed", func(t *testing.T, r *Rollout) { must(t, r.Halt(t0, "")); must(t, r.Resume(t0)) }, want{2, 1, 2, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _, _ := begun(t, policy())
			r.Report(t0, failedPilot, 2, false)
			tc.do(t, r)
			got := want{r.Choose(t0, pilot), r.Choose(t0, other), r.Choose(t0, updated), r.Choose(t0, failedPilot)}
			if got != tc.want {
				t.Errorf("pilot, other, updated, failed pilot get %v, want %v\n%s", got, tc.want, r.Status(t0))
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestNotBegunHasNoOpinion(t *testing.T) {
	r, _ := open(t, t.TempDir(), policy())
	if n := r.Choose(t0, pilotClient(1)); n != 0 {
		t.Errorf("Choose = %d before any Begin, want 0", n)
	}
	r.Report(t0, pilotClient(1), 1, false)
	if s := r.Status(t0); s.Phase != PhaseNone || s.Pilot != (Ring{}) {
		t.Errorf("status %+v, want nothing", s)
	}
}

// TestNoStaging: without a pilot ring, and for the first release, everyone
// gets the new release at once, and failures do not halt it.
func TestNoStaging(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pilot    []string
		previous uint64
	}{
		{"no pilot ring", nil, 1},
		{"first release", policy().Pilot, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policy()
			p.Pilot = tc.pilot
			r, ev := open(t, t.TempDir(), p)
			must(t, r.Begin(t0, 2, "B2", tc.previous))
			for i := range 10 {
				r.Report(t0, othersClient(i), 2, false)
			}
			if n := r.Choose(t0, othersClient(99)); n != 2 {
				t.Errorf("served %d, want 2", n)
			}
			if s := r.Status(t0); s.Phase != PhaseComplete || s.Everyone.Failures != 10 {
				t.Errorf("status %s, want complete with 10 failures counted", s)
			}
			if k := ev.kinds(); k != "begun" {
				t.Errorf("events %s, want begun", k)
			}
		})
	}
}

func TestPromotedAfterMinSuccesses(t *testing.T) {
	r, ev, _ := begun(t, policy())
	for i := range 9 {
		r.Report(t0, pilotClient(i), 2, true)
		r.Report(t0, pilotClient(i), 2, true) // twice, counted once
	}
	// Successes outside the pilot ring, and of another release, do not count.
	r.Report(t0, othersClient(1), 2, true)
	r.Report(t0, pilotClient(50), 1, true)
	if n := r.Choose(t0, othersClient(2)); n != 1 {
		t.Fatalf("after 9 pilot successes others get %d, want 1", n)
	}
	r.Report(t0, pilotClient(9), 2, true)
	if n := r.Choose(t0, othersClient(2)); n != 2 {
		t.Fatalf("after 10 pilot successes others get %d, want 2", n)
	}
	last := ev.last()
	if ev.kinds() != "begun,promoted" || last.Successes != 10 || !strings.Contains(last.String(), "pilot ring reported 10 successful updates") {
		t.Errorf("events %s, last %s", ev.kinds(), last)
	}
}

func TestMinSuccessesZeroOnlyDelayPromotes(t *testing.T) {
	p := policy()
	p.MinSuccesses = 0
	r, _, _ := begun(t, p)
	for i := range 50 {
		r.Report(t0, pilotClient(i), 2, true)
	}
	if s := r.Status(t0.Add(time.Hour)); s.Phase != PhasePilot {
		t.Errorf("phase %s after 50 successes with MinSuccesses 0, want pilot", s.Phase)
	}
	if s := r.Status(t0.Add(24 * time.Hour)); s.Phase != PhasePromoted {
		t.Errorf("phase %s after Delay, want promoted", s.Phase)
	}
}

func TestPromotedAfterDelay(t *testing.T) {
	r, ev, _ := begun(t, policy())
	other := othersClient(1)
	if n := r.Choose(t0.Add(24*time.Hour-time.Second), other); n != 1 {
		t.Fatalf("a second before Delay others get %d, want 1", n)
	}
	if s := r.Status(t0.Add(time.Hour)); !s.PromoteAt.Equal(t0.Add(24*time.Hour)) || !strings.Contains(s.String(), "2026-12-07 12:00:00 UTC by Delay") {
		t.Errorf("PromoteAt %v, status:\n%s", s.PromoteAt, s)
	}
	if n := r.Choose(t0.Add(24*time.Hour), other); n != 2 {
		t.Fatalf("at Delay others get %d, want 2", n)
	}
	if k := ev.kinds(); k != "begun,promoted" || !strings.Contains(ev.last().Why, "Delay 24h0m0s has passed") {
		t.Errorf("events %s, last %s", k, ev.last())
	}
	// Delay 0 never promotes by time.
	p := policy()
	p.Delay = 0
	r, _, _ = begun(t, p)
	if n := r.Choose(t0.Add(365*24*time.Hour), other); n != 1 {
		t.Errorf("with Delay 0, a year later others get %d, want 1", n)
	}
}

// TestHalt: a ring failing above HaltPercent, once it has MinReports
// reports, halts the rollout, in the pilot phase and after promotion.
func TestHalt(t *testing.T) {
	for _, tc := range []struct {
		name       string
		promote    bool
		client     func(int) Client
		ok, failed int
		halted     bool
		ring       string
	}{
		{"pilot ring 25% of 4 reports", false, pilotClient, 3, 1, false, ""}, // below MinReports
		{"pilot ring at rate", false, pilotClient, 4, 1, false, ""},          // 20%, not above
		{"pilot ring above rate", false, pilotClient, 7, 2, true, "pilot"},   // 22%
		{"everyone ring after promotion", true, othersClient, 7, 2, true, "everyone"},
		{"everyone ring at rate", true, othersClient, 8, 2, false, ""},
		{"below MinReports", false, pilotClient, 0, 4, false, ""},
		{"at MinReports", false, pilotClient, 0, 5, true, "pilot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, ev, _ := begun(t, policy())
			if tc.promote {
				must(t, r.Promote(t0))
			}
			i := 0
			for range tc.ok {
				r.Report(t0, tc.client(i), 2, true)
				i++
			}
			for range tc.failed {
				r.Report(t0, tc.client(i), 2, false)
				i++
			}
			s := r.Status(t0)
			if (s.Phase == PhaseHalted) != tc.halted {
				t.Fatalf("phase %s, want halted %v\n%s", s.Phase, tc.halted, s)
			}
			if !tc.halted {
				return
			}
			last := ev.last()
			if last.Kind != EventHalted || last.Ring != tc.ring || last.Failures == 0 || last.Rate <= 20 ||
				!strings.Contains(last.String(), "clients without it are served release 1") {
				t.Errorf("last event %+v: %s", last, last)
			}
			if n := r.Choose(t0, tc.client(1000)); n != 1 {
				t.Errorf("halted, a client without the release gets %d, want 1", n)
			}
		})
	}
}

// TestMinReports: a ring's rate is weighed only from MinReports reports.
func TestMinReports(t *testing.T) {
	p := policy()
	p.MinReports = 1
	r, _, _ := begun(t, p)
	r.Report(t0, pilotClient(1), 2, false)
	if s := r.Status(t0); s.Phase != PhaseHalted {
		t.Errorf("MinReports 1: one failure of one leaves phase %s, want halted", s.Phase)
	}
	r, _, _ = begun(t, policy())
	r.Report(t0, pilotClient(1), 2, false)
	if s := r.Status(t0); s.Phase != PhasePilot {
		t.Errorf("MinReports 5: one failure of one leaves phase %s, want pilot", s.Phase)
	}
}

// TestClientCountsOnce: one flaky workstation reporting the same failure
// again and again is one failure, and cannot halt the rollout alone.
func TestClientCountsOnce(t *testing.T) {
	r, _, _ := begun(t, policy())
	flaky := pilotClient(1)
	for range 100 {
		r.Report(t0, flaky, 2, false)
	}
	// By host name when the client has no id.
	for range 100 {
		r.Report(t0, Client{Host: "LAB-X"}, 2, false)
		r.Report(t0, Client{Host: "lab-x"}, 2, false)
	}
	r.Report(t0, flaky, 2, true) // and then it worked
	flaky.ID = strings.ToUpper(flaky.ID)
	r.Report(t0, flaky, 2, true) // the same id in capitals
	s := r.Status(t0)
	if s.Phase != PhasePilot || s.Pilot != (Ring{Successes: 1, Failures: 2, Clients: 2}) {
		t.Errorf("status %+v\n%s", s.Pilot, s)
	}
}

func TestAdminCommands(t *testing.T) {
	r, _ := open(t, t.TempDir(), policy())
	for name, err := range map[string]error{"halt": r.Halt(t0, ""), "resume": r.Resume(t0), "promote": r.Promote(t0)} {
		if err == nil {
			t.Errorf("%s before any rollout succeeded", name)
		}
	}
	r, ev, _ := begun(t, policy())
	if err := r.Resume(t0); err == nil || !strings.Contains(err.Error(), "not halted (pilot)") {
		t.Errorf("resume in pilot: %v", err)
	}
	for i := range 5 {
		r.Report(t0, pilotClient(i), 2, false)
	}
	if s := r.Status(t0); s.Phase != PhaseHalted || s.HaltedIn != PhasePilot {
		t.Fatalf("status %s", s)
	}
	if err := r.Halt(t0, ""); err == nil || !strings.Contains(err.Error(), "halted already") {
		t.Errorf("halt while halted: %v", err)
	}
	// Resume forgives the failures and runs the Delay again.
	t1 := t0.Add(30 * time.Hour)
	must(t, r.Resume(t1))
	s := r.Status(t1)
	if s.Phase != PhasePilot || s.Pilot.Failures != 0 || !s.PromoteAt.Equal(t1.Add(24*time.Hour)) {
		t.Errorf("after resume: %s", s)
	}
	must(t, r.Promote(t1))
	if err := r.Promote(t1); err == nil {
		t.Error("promoting twice succeeded")
	}
	must(t, r.Halt(t1, "a call from the shop"))
	if s := r.Status(t1); s.Reason != "a call from the shop" || s.HaltedIn != PhasePromoted {
		t.Errorf("after halt: %s", s)
	}
	must(t, r.Promote(t1))
	if k := ev.kinds(); k != "begun,halted,resumed,promoted,halted,promoted" {
		t.Errorf("events %s", k)
	}
	// The first release cannot be halted: there is nothing to serve instead.
	r1, _ := open(t, t.TempDir(), policy())
	must(t, r1.Begin(t0, 1, "B1", 0))
	if err := r1.Halt(t0, ""); err == nil || !strings.Contains(err.Error(), "no previous release") {
		t.Errorf("halting the first release: %v", err)
	}
}

// TestBeginWhilePiloting: a release published while the previous one is
// only piloted (or halted) replaces it, and the clients outside the pilot
// ring keep the release they had.
func TestBeginWhilePiloting(t *testing.T) {
	r, _, _ := begun(t, policy())
	must(t, r.Begin(t0.Add(time.Hour), 3, "B3", 2))
	s := r.Status(t0.Add(time.Hour))
	if s.Release != 3 || s.Previous != 1 || s.Phase != PhasePilot || s.Pilot != (Ring{}) {
		t.Errorf("status %s", s)
	}
	if got := r.Pinned(); fmt.Sprint(got) != "[3 1]" {
		t.Errorf("Pinned = %v, want [3 1]", got)
	}
	must(t, r.Begin(t0.Add(time.Hour), 3, "B3", 2)) // again: nothing changes
	if err := r.Begin(t0, 3, "B3b", 2); err == nil || !strings.Contains(err.Error(), `being rolled out as build "B3"`) {
		t.Errorf("the same release under another build: %v", err)
	}
	if err := r.Begin(t0, 2, "B2", 1); err == nil {
		t.Error("beginning an older release succeeded")
	}
	if err := r.Begin(t0, 4, "B4", 4); err == nil {
		t.Error("a previous release as new as the release was taken")
	}
	must(t, r.Promote(t0.Add(time.Hour)))
	must(t, r.Begin(t0.Add(2*time.Hour), 4, "B4", 3))
	if s := r.Status(t0.Add(2 * time.Hour)); s.Previous != 3 {
		t.Errorf("after a promoted release, previous %d, want 3", s.Previous)
	}
}

// TestRestartResumes: the state survives a restart, counts and phase.
func TestRestartResumes(t *testing.T) {
	r, _, dir := begun(t, policy())
	for i := range 4 {
		r.Report(t0.Add(time.Duration(i)*time.Second), pilotClient(i), 2, true)
	}
	r.Report(t0.Add(time.Minute), pilotClient(9), 2, false)
	must(t, r.Flush(t0.Add(time.Minute)))
	before := r.Status(t0.Add(time.Minute))

	r2, ev := open(t, dir, policy())
	after := r2.Status(t0.Add(time.Minute))
	if after.String() != before.String() || after.Pilot != (Ring{Successes: 4, Failures: 1, Clients: 5}) {
		t.Errorf("after a restart:\n%s\nbefore:\n%s", after, before)
	}
	// A client counted before the restart is not counted again.
	r2.Report(t0, pilotClient(1), 2, true)
	for i := 4; i < 10; i++ {
		r2.Report(t0, pilotClient(i), 2, true)
	}
	if s := r2.Status(t0); s.Phase != PhasePromoted || s.Pilot.Successes != 10 {
		t.Errorf("after 6 more successes: %s", s)
	}
	// And the promotion, a change of phase, is written at once.
	r3, _ := open(t, dir, policy())
	if s := r3.Status(t0); s.Phase != PhasePromoted {
		t.Errorf("after a second restart: %s", s)
	}
	if ev.kinds() != "promoted" {
		t.Errorf("events %s", ev.kinds())
	}
}

// TestCountsWrittenWithinSaveEvery: without Flush, counts reach the file
// at the first report saveEvery after the last write.
func TestCountsWrittenWithinSaveEvery(t *testing.T) {
	r, _, dir := begun(t, policy())
	r.Report(t0.Add(time.Second), pilotClient(1), 2, true)
	r2, _ := open(t, dir, policy())
	if s := r2.Status(t0); s.Pilot.Successes != 0 {
		t.Fatalf("a report a second after Begin was written at once: %+v", s.Pilot)
	}
	r.Report(t0.Add(saveEvery), pilotClient(2), 2, true)
	r3, _ := open(t, dir, policy())
	if s := r3.Status(t0); s.Pilot.Successes != 2 {
		t.Errorf("after saveEvery, the file has %d successes, want 2", s.Pilot.Successes)
	}
}

// TestDamagedStateFile: a damaged file is an error naming it, moved aside,
// and the rollout starts over with the pilot ring (the safe choice).
func TestDamagedStateFile(t *testing.T) {
	for _, tc := range []struct{ name, content, problem string }{
		{"torn", `{"format": 1, "phase": "pil`, "unexpected EOF"},
		{"not json", "garbage\n", "invalid character"},
		{"unknown phase", `{"format":1,"phase":"rolling","release":2,"previous":1}`, `unknown phase "rolling"`},
		{"unknown field", `{"format":1,"phase":"none","extra":1}`, `unknown field "extra"`},
		{"newer format", `{"format":2}`, "format 2"},
		{"previous not older", `{"format":1,"phase":"pilot","release":2,"previous":2}`, "previous release 2 is not older"},
		{"duplicate client", `{"format":1,"phase":"pilot","release":2,"previous":1,"pilot":{"succeeded":["a","a"]}}`, `client "a" twice`},
		{"two objects", `{"format":1,"phase":"none"}{}`, "data after the state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "linux.json")
			must(t, os.WriteFile(file, []byte(tc.content), 0o644))
			ev := &events{}
			r, err := Open(slog.New(slog.DiscardHandler), file, policy(), ev.add)
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), tc.problem) {
				t.Fatalf("Open: %v; want ErrDamaged naming %s and ...%s...", err, file, tc.problem)
			}
			if got, _ := os.ReadFile(file + ".damaged"); string(got) != tc.content {
				t.Errorf("the damaged file was not kept aside: %q", got)
			}
			must(t, r.Begin(t0, 2, "B2", 1))
			if n := r.Choose(t0, othersClient(1)); n != 1 {
				t.Errorf("after a damaged state, others get %d, want the previous release 1", n)
			}
		})
	}
}

func TestUnreadableStateFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "linux.json")
	must(t, os.Mkdir(file, 0o755)) // a folder where the file should be
	r, err := Open(slog.New(slog.DiscardHandler), file, policy(), nil)
	if err == nil || !strings.Contains(err.Error(), file) || r == nil {
		t.Fatalf("Open: %v, %v", r, err)
	}
	if err := r.Begin(t0, 2, "B2", 1); err == nil || !strings.Contains(err.Error(), "saving the rollout state") {
		t.Errorf("Begin with an unwritable state: %v", err)
	}
	if n := r.Choose(t0, othersClient(1)); n != 1 {
		t.Errorf("unsaved, the rollout still serves others %d, want 1", n)
	}
}

// TestSetPolicy: a reloaded policy applies at once.
func TestSetPolicy(t *testing.T) {
	r, ev, _ := begun(t, policy())
	p := policy()
	p.Pilot = nil
	r.SetPolicy(t0, p)
	if s := r.Status(t0); s.Phase != PhasePromoted || !strings.Contains(s.Reason, "no pilot ring") {
		t.Errorf("status %s", s)
	}
	r, _, _ = begun(t, policy())
	for i := range 4 {
		r.Report(t0, pilotClient(i), 2, true)
	}
	p = policy()
	p.MinSuccesses = 4
	r.SetPolicy(t0, p)
	if s := r.Status(t0); s.Phase != PhasePromoted {
		t.Errorf("MinSuccesses lowered to the successes: %s", s)
	}
	_ = ev
}

// TestConcurrentUse runs Choose, Report and Status at once, for -race.
func TestConcurrentUse(t *testing.T) {
	r, _, _ := begun(t, policy())
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				c := pilotClient(g*1000 + i)
				r.Choose(t0, c)
				r.Report(t0.Add(time.Duration(i)*time.Second), c, 2, true)
				r.Status(t0)
			}
		})
	}
	wg.Wait()
	if s := r.Status(t0); s.Phase != PhasePromoted || s.Pilot.Successes != 800 {
		t.Errorf("status %s", s)
	}
}

func TestStatusString(t *testing.T) {
	r, _, _ := begun(t, policy())
	r.Report(t0, pilotClient(1), 2, true)
	want := `release 2 (build B2): pilot since 2026-12-06 12:00:00 UTC: published: the pilot ring is served it first
  clients outside the pilot ring are served release 1
  promoted at 2026-12-07 12:00:00 UTC by Delay, or after 10 successful pilot updates
  pilot ring: 1 successes, 0 failures (0.0%) from 1 clients
  everyone else: 0 successes, 0 failures (0.0%) from 0 clients
`
	if got := r.Status(t0).String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestStatusEscapesForATerminal: a halt reason (or build label) holding an
// escape sequence reaches the terminal as text, not as a command to it.
func TestStatusEscapesForATerminal(t *testing.T) {
	r, ev := open(t, t.TempDir(), policy())
	must(t, r.Begin(t0, 2, "B2\x1b]0;owned\x07", 1))
	must(t, r.Halt(t0, "bad\x1b[2J\nrelease 9: promoted"))
	for _, text := range []string{r.Status(t0).String(), ev.last().String()} {
		if strings.ContainsAny(text, "\x1b\x07") || strings.Contains(text, "\nrelease 9") {
			t.Errorf("not escaped: %q", text)
		}
		if !strings.Contains(text, `bad\x1b[2J\x0arelease 9`) {
			t.Errorf("the reason is not shown escaped: %q", text)
		}
	}
}

// TestLongHaltReason: a long reason is cut to maxReason bytes of valid
// UTF-8, and the state with it loads after a restart.
func TestLongHaltReason(t *testing.T) {
	r, _, dir := begun(t, policy())
	must(t, r.Halt(t0, "x"+strings.Repeat("é", maxReason))) // cut in the middle of an é
	r2, _ := open(t, dir, policy())
	s := r2.Status(t0)
	if s.Phase != PhaseHalted || len(s.Reason) > maxReason || len(s.Reason) < maxReason-1 || strings.ContainsRune(s.Reason, '\uFFFD') {
		t.Errorf("reason of %d bytes after a restart, phase %s: %q...", len(s.Reason), s.Phase, s.Reason[:10])
	}
}

// TestPeekNeverMovesTheFile: Peek reads what a rollout pins; a damaged
// or unreadable file is an error naming it, and stays where it is (the
// server's, not the reader's, to move aside).
func TestPeekNeverMovesTheFile(t *testing.T) {
	r, _, dir := begun(t, policy())
	must(t, r.Flush(t0))
	file := filepath.Join(dir, "linux.json")
	if got, err := Peek(file); err != nil || fmt.Sprint(got) != "[2 1]" {
		t.Errorf("Peek of a pilot phase: %v, %v; want [2 1]", got, err)
	}
	if got, err := Peek(filepath.Join(dir, "darwin.json")); err != nil || got != nil {
		t.Errorf("Peek of no rollout: %v, %v; want none", got, err)
	}
	const torn = `{"format": 1, "phase": "pil`
	must(t, os.WriteFile(file, []byte(torn), 0o644))
	if _, err := Peek(file); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), file) {
		t.Errorf("Peek of a damaged file: %v; want ErrDamaged naming it", err)
	}
	if got, err := os.ReadFile(file); err != nil || string(got) != torn {
		t.Errorf("Peek changed the damaged file: %q, %v", got, err)
	}
	if _, err := os.Stat(file + ".damaged"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Peek moved the file aside: %v", err)
	}
	dirFile := filepath.Join(dir, "windows.json")
	must(t, os.Mkdir(dirFile, 0o755))
	if _, err := Peek(dirFile); err == nil {
		t.Error("Peek of an unreadable file succeeded")
	}
}
