// Package rollout decides which release of one OS each client is served
// while a new release is rolled out in stages, as Sparkle's phased
// rollout, Chrome's staged rollout and WSUS approval groups do.
//
// # Model
//
// The clients fall in two rings: the pilot ring, named by [Policy.Pilot]
// (host name patterns such as "lab-*" and client ids), and everyone else.
// When a release is published, [Rollout.Begin] starts its rollout in the
// pilot phase: the pilot ring is served the new release, everyone else the
// previous one. The rollout is promoted (everyone is served the new release)
//
//   - when the pilot ring has reported [Policy.MinSuccesses] successful
//     updates of the new release (0: successes never promote),
//   - when [Policy.Delay] has passed since the pilot phase began (0: time
//     never promotes; evaluated whenever the rollout is consulted, so no
//     goroutine is needed),
//   - or when the administrator says so ([Rollout.Promote]).
//
// A ring whose failure rate is above [Policy.HaltPercent], once it has at
// least [Policy.MinReports] reports, halts the rollout, in the pilot phase
// and after the promotion alike; the administrator can halt it too
// ([Rollout.Halt]). A halted rollout serves the previous release to every
// client that does not have the new one yet, pilot clients included.
// Clients that already installed the new release keep it: they are not
// rolled back (the clients refuse an older signed release anyway), they are
// served the new one and so find themselves up to date.
// [Rollout.Resume] returns to the phase the rollout was halted in and
// forgives the failures counted so far; [Rollout.Promote] of a halted
// rollout serves the new release to everyone.
//
// A client counts once per release per outcome: the same workstation
// reporting the same failure ten times (a user retrying) is one failure,
// so that one flaky machine cannot halt a rollout alone. A client that
// failed and then succeeded counts once in each. The rate of a ring is
// failures / (failures + successes).
//
// Without a pilot ring there is no staging: a release is served to everyone
// at once and the rollout is in the complete phase, where reports are
// counted for the status but never halt anything; the administrator can
// still halt by hand. The first release of an OS (no previous release) is
// complete at once too: there is nothing to fall back to.
//
// When a release is published while the previous one is still in its pilot
// phase, or halted, the new release replaces it and the clients outside the
// pilot ring keep the release they were getting: a release that was only
// ever piloted never reaches everyone by being superseded.
//
// # State
//
// Each OS's rollout is kept in a JSON file of its own, rewritten atomically
// (internal/atomicfile) on every change of phase at once, and on a change
// of the counts at most every few seconds ([Rollout.Flush] at shutdown), so
// that a restart resumes where the rollout was. A damaged file is moved
// aside (FILE.damaged) and reported with an error naming it; the rollout
// then starts again from nothing, so that the next Begin starts a pilot
// phase: the safe choice, the previous release for everyone outside the
// pilot ring.
//
// Membership of the pilot ring rests on the host name and id a client
// reports about itself: it is no security boundary, only an order. Every
// release served is signed by the publisher either way.
package rollout
