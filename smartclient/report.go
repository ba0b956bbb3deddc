package smartclient

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
	"unicode/utf8"

	"github.com/erpupdate/smartsync/smartclient/internal/fetch"
	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/journal"
	"github.com/erpupdate/smartsync/smartclient/internal/pending"
	"github.com/erpupdate/smartsync/smartclient/internal/session"
	"github.com/erpupdate/smartsync/smartclient/internal/state"
	"github.com/erpupdate/smartsync/syncproto"
)

// Every sync ends with a report to the server, whatever its outcome (see
// syncproto's "Reports"): the attempt sends it on its session where it
// can (see attempt.report); a sync that ends with an error before one was
// sent reports at its end (see reportEnd); and a report the server does
// not take is kept in .smartclient (internal/pending) and sent at the next
// session (see attempt.sendEarlier).

// The steps of a sync, as reports name them.
const (
	stepConnect   = "connect"
	stepConfirm   = "confirm"
	stepManifest  = "manifest"
	stepPlan      = "plan"
	stepPreflight = "preflight"
	stepFetch     = "fetch"
	stepVerify    = "verify"
	stepBackup    = "backup"
	stepInstall   = "install" // the switch, undone if it failed (journal.ErrRolledBack)
	stepPost      = "post-install"
	// Before a sync can start: the recovery of a switch a crash cut
	// short, and the reading of the client's state.
	stepRecover = "recover"
	stepState   = "state"
)

// reporting follows one sync, every attempt of it, to its report.
type reporting struct {
	start time.Time
	id    uint64 // the sync's Report.ID, never 0
	step  string // the step under way
	done  bool   // the sync's report was sent, or kept to send later
	sent  bool   // the reports kept from earlier syncs were sent
	store *pending.Store
	log   *slog.Logger
}

// newReporting follows the sync of o that started at start; a check
// keeps nothing (it writes nothing in the install).
func newReporting(o Options, start time.Time) *reporting {
	rp := &reporting{start: start, id: reportID(), step: stepConnect, log: o.Log}
	if !o.CheckOnly {
		rp.store = pending.At(filepath.Join(o.Dir, install.MetaDir), o.Log)
	}
	return rp
}

// again readies rp for a second attempt of the sync, whose report is
// its own (the first one's was sent): a new id, or the server would take
// it for the first sent again.
func (rp *reporting) again() {
	rp.done, rp.id = false, reportID()
}

// at records that the sync is at step.
func (rp *reporting) at(step string) {
	if rp != nil {
		rp.step = step
	}
}

// reportID is a sync's Report.ID: random, never 0.
func reportID() uint64 {
	for {
		if id := rand.Uint64(); id != 0 {
			return id
		}
	}
}

// fill completes r: the sync's ID, the step of a failure, the sync's
// duration, and texts cut to the protocol's limits.
func (rp *reporting) fill(r syncproto.Report) syncproto.Report {
	if rp == nil {
		return r
	}
	if r.ID == 0 {
		r.ID = rp.id
	}
	if r.Step == "" && (r.Outcome == syncproto.OutcomeFailed || r.Outcome == syncproto.OutcomeInterrupted) {
		r.Step = rp.step
	}
	r.Duration = uint32(min(time.Since(rp.start).Milliseconds(), math.MaxUint32))
	r.Message = cut(r.Message, syncproto.MaxMessage)
	r.Step = cut(r.Step, syncproto.MaxShortString)
	r.Build = cut(r.Build, syncproto.MaxShortString)
	return r
}

// cut cuts s to at most n bytes, on a rune's boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// deliver sends r on c and marks the sync reported; a report c does not
// take is kept for the next session.
func (rp *reporting) deliver(c *conn, r syncproto.Report) {
	r = rp.fill(r)
	c.Report(rp.logger(), r)
	if rp == nil {
		return
	}
	rp.done = true
	if !c.Acked() {
		rp.keep(r)
	}
}

func (rp *reporting) logger() *slog.Logger {
	if rp == nil || rp.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return rp.log
}

// keep keeps r, filled, to send at the next session. A check keeps
// nothing.
func (rp *reporting) keep(r syncproto.Report) {
	if rp == nil {
		return
	}
	rp.done = true
	if rp.store == nil {
		return
	}
	if r.At == 0 {
		r.At = time.Now().Unix()
	}
	if err := rp.store.Add(r); err != nil {
		rp.log.Warn("keeping the report of the sync to send later", "err", err)
		return
	}
	rp.log.Info("the server did not take the report of the sync; it is kept and sent at the next session",
		"outcome", r.Outcome.String(), "step", r.Step)
}

// stepOf is the step a sync at step failed at with err: the error may
// say more than the step under way.
func stepOf(step string, err error) string {
	switch {
	case errors.Is(err, fetch.ErrVerify), errors.Is(err, fetch.ErrBlockMismatch):
		return stepVerify
	case errors.Is(err, journal.ErrPostInstall):
		return stepPost
	}
	return step
}

// sendEarlier sends, on the session just welcomed, the reports kept from
// earlier syncs, and forgets those the server took.
func (a *attempt) sendEarlier() {
	rp := a.o.rep
	if rp == nil || rp.store == nil || rp.sent {
		return
	}
	rp.sent = true
	reports := rp.store.Load()
	if len(reports) == 0 {
		return
	}
	n := 0
	for _, r := range reports {
		if err := a.c.ReportEarlier(r); err != nil {
			a.o.Log.Info("could not send the reports of earlier syncs", "err", err, "sent", n, "kept", len(reports)-n)
			break
		}
		n++
	}
	if err := rp.store.Save(reports[n:]); err != nil {
		a.o.Log.Warn("forgetting the reports the server took", "err", err)
	}
	if n > 0 {
		a.o.Log.Info("sent the reports of earlier syncs", "reports", n)
	}
}

// endOutcome is the outcome of a sync that ended with err at step:
// declined, interrupted (the user stopped it, or the connection was lost
// after the welcome), or failed.
func endOutcome(ctx context.Context, step string, err error) syncproto.Outcome {
	switch {
	case errors.Is(err, ErrDeclined):
		return syncproto.OutcomeDeclined
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		return syncproto.OutcomeInterrupted
	case step != stepConnect && lostConnection(err):
		return syncproto.OutcomeInterrupted
	}
	return syncproto.OutcomeFailed
}

// reportEnd reports a sync that ended with err before it reported: on a
// session of its own, unless the server could not be reached, the
// connection was lost or the user stopped the sync; a report that cannot
// be sent is kept for the next session.
func reportEnd(ctx context.Context, st *state.State, o Options, err error) {
	rp := o.rep
	if rp == nil || rp.done || err == nil || errors.Is(err, ErrDisabled) {
		return
	}
	step := stepOf(rp.step, err)
	r := rp.fill(syncproto.Report{Outcome: endOutcome(ctx, rp.step, err), Build: st.Build, Step: step, Message: err.Error()})
	if r.Outcome == syncproto.OutcomeDeclined {
		r.Step = ""
	}
	if ctx.Err() != nil || rp.step == stepConnect || lostConnection(err) {
		// Nobody to tell now: the next session will.
		rp.keep(r)
		return
	}
	ro := o
	ro.Timeout = min(o.Timeout, session.ReportTimeout)
	rc, _, oerr := session.Open(ctx, ro.Server, ro.Timeout, ro.trust(), helloOf(st, ro))
	if oerr != nil {
		o.Log.Info("could not report the outcome to the server", "err", oerr)
		rp.keep(r)
		return
	}
	defer rc.Close()
	rc.Report(o.Log, r)
	rp.done = true
	if !rc.Acked() {
		rp.keep(r)
	}
}

// reportBroken reports a sync that could not start, at step, because the
// install is in a state the client cannot go on from (a recovery that
// failed, a state file it cannot read): every sync of the workstation
// fails so until someone mends it, and the administrator must hear of it.
// The build installed is not known then: the report names none, and the
// server keeps the one it knew.
func reportBroken(ctx context.Context, root *os.Root, o Options, start time.Time, step string, err error) {
	// The id the workstation is known by, never a new one: that would
	// be a client of its own in the server's records.
	id := readClientID(root)
	if id == "" {
		o.Log.Info("no report of the failure: the install keeps no client id outside its state")
		return
	}
	o.rep = newReporting(o, start)
	o.rep.at(step)
	reportEnd(ctx, &state.State{ClientID: id}, o, err)
}

// stepNow is the step under way.
func (rp *reporting) stepNow() string {
	if rp == nil {
		return ""
	}
	return rp.step
}
