package appserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/handover"
	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/spf13/pflag"
)

// Self describes the running server's own installation: what a self-update
// replaces and how the new server is started. Run fills it in from the
// executable's path and the command line. It is the handover's, which
// writes it into the helper's journal.
type Self = handover.Self

// Countdown limits of an update (the 1 to 10 minutes).
const (
	MinCountdown     = time.Minute
	MaxCountdown     = 10 * time.Minute
	DefaultCountdown = 2 * time.Minute
	// restartAllowance is added to the countdown in the Retry a refused
	// session is given: the switch and the new server's start take a
	// little while after the deadline.
	restartAllowance = 30 * time.Second
)

// missedSchedule is how late a scheduled update may still start after a
// restart; later, it is dropped as missed.
const missedSchedule = 10 * time.Minute

// TestShortCountdownEnv, set to 1, lets an update count down for less than
// MinCountdown, so that tests need not wait minutes. It is for tests only.
const TestShortCountdownEnv = "SMARTSYNC_TEST_SHORT_COUNTDOWN"

// CheckCountdown checks an update's countdown against the limits.
func CheckCountdown(d time.Duration) error {
	min := MinCountdown
	if os.Getenv(TestShortCountdownEnv) == "1" {
		min = time.Second
	}
	if d < min || d > MaxCountdown {
		return fmt.Errorf("countdown %v: must be between %v and %v", d, min, MaxCountdown)
	}
	return nil
}

// updateRequest is an administrator's request to update the server; a
// scheduled one is kept in the state folder across restarts.
type updateRequest struct {
	ID             string        `json:"id"`
	Source         string        `json:"source"`
	Countdown      time.Duration `json:"countdown"`
	At             time.Time     `json:"at,omitzero"`
	Notify         string        `json:"notify,omitempty"`
	AllowDowngrade bool          `json:"allow_downgrade,omitempty"`
	User           string        `json:"user"`
	From           string        `json:"from"`
	Requested      time.Time     `json:"requested"`
	// FeedBuild, FeedSize and FeedSHA256 are the feed's entry of a release
	// taken from the vendor's feed (no --from): the archive fetched must
	// be that build and have that size and digest (hex).
	FeedBuild  string `json:"feed_build,omitempty"`
	FeedSize   int64  `json:"feed_size,omitempty"`
	FeedSHA256 string `json:"feed_sha256,omitempty"`
}

// job is the one update scheduled or under way.
type job struct {
	req    updateRequest
	cancel context.CancelFunc
	status syncproto.UpdateStatus
	// pastCountdown is set once sessions are closed: the update can no
	// longer be cancelled.
	pastCountdown bool
	cancelled     bool // by an administrator
	newDir        string
	done          chan struct{} // closed when the job ends, whatever its end
	// cfg is the configuration the update runs with, from its start
	// (see execute): a reload meanwhile applies to the next update.
	cfg *Config
}

// updater runs the server's self-updates: one at a time, scheduled or now.
type updater struct {
	s   *Server
	log *slog.Logger
	dir string // <state>/selfupdate

	mu  sync.Mutex
	job *job
	// refuseUntil is set from the countdown's start until the update ends:
	// new sessions are told to come back then.
	refuseUntil time.Time
	subs        map[chan string]struct{}
	stayers     map[*stayer]struct{}
	running     sync.WaitGroup  // the job's goroutine
	mails       sync.WaitGroup  // outcome mails being sent
	ctx         context.Context // Serve's: a job ends with the server
	// testHook, when set, is called at each step of an update (tests).
	testHook func(step string)
}

func newUpdater(s *Server) *updater {
	return &updater{s: s, log: s.log, subs: map[chan string]struct{}{}, stayers: map[*stayer]struct{}{}}
}

// Files of the updater in its state folder, besides handover.RunningFile
// (the request under way, to report it if the server dies) and
// handover.LastFile (the outcome of the last update).
const scheduledFile = "scheduled.json" // a request waiting for its time

// start arms a scheduled update kept from before a restart, and reports
// one that was under way when the server stopped.
func (u *updater) start(ctx context.Context) {
	u.mu.Lock()
	u.ctx = ctx
	u.mu.Unlock()
	if u.dir == "" {
		return
	}
	var run updateRequest
	_, jerr := handover.ReadJournal(u.s.self.InstallDir)
	if jerr != nil && atomicfile.ReadJSON(filepath.Join(u.dir, handover.RunningFile), &run) == nil {
		// The server stopped (killed, crashed) in the middle of an update
		// it was running itself, before the helper took over.
		u.cleanNew()
		u.finish(run, syncproto.UpdateStatus{State: syncproto.StateFailed,
			Message: "the server stopped during the update, before the switch; nothing was changed"}, "")
		os.Remove(filepath.Join(u.dir, handover.RunningFile))
	}
	var req updateRequest
	err := atomicfile.ReadJSON(filepath.Join(u.dir, scheduledFile), &req)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		u.log.Error("self-update: dropping an unreadable scheduled update", "file", filepath.Join(u.dir, scheduledFile), "err", err)
		os.Remove(filepath.Join(u.dir, scheduledFile))
		return
	}
	if late := time.Since(req.At); late > missedSchedule {
		// The server was down at the time: an update that would now start
		// in business hours is dropped, not run late.
		os.Remove(filepath.Join(u.dir, scheduledFile))
		u.finish(req, syncproto.UpdateStatus{State: syncproto.StateFailed,
			Message: fmt.Sprintf("missed: the server was not running at the scheduled time %s; nothing was changed", req.At.Format("2006-01-02 15:04"))}, "")
		return
	}
	u.log.Info("self-update: scheduled update kept from before the restart", "id", req.ID, "at", req.At, "source", req.Source)
	u.mu.Lock()
	u.launch(ctx, req)
	u.mu.Unlock()
}

// cleanNew removes an unfinished new installation left beside ours.
func (u *updater) cleanNew() {
	if u.s.self.InstallDir == "" {
		return
	}
	if err := os.RemoveAll(u.s.self.InstallDir + "_new"); err != nil {
		u.log.Warn("self-update: removing an unfinished new installation", "err", err)
	}
}

// underway returns the ID of the update that has started (is past its
// schedule), or "" when none has.
func (u *updater) underway() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.job == nil || u.job.cfg == nil {
		return ""
	}
	return u.job.req.ID
}

// refusing returns how long a new session should wait, or 0 when sessions
// are welcome.
func (u *updater) refusing() time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.refuseUntil.IsZero() {
		return 0
	}
	return max(time.Until(u.refuseUntil), time.Second)
}

// request validates an administrator's update request and starts it (now
// or at its time).
func (u *updater) request(req updateRequest) (*job, error) {
	if req.Source == "" {
		return nil, refused("no release source given")
	}
	// Refused before it is logged or recorded anywhere.
	if u, err := url.Parse(req.Source); err == nil && u.User != nil {
		return nil, refused("the release URL holds a user name or password; give a URL without them")
	}
	if err := CheckCountdown(req.Countdown); err != nil {
		return nil, refused("%v", err)
	}
	if req.Notify != "" {
		if _, err := parseMailAddress(req.Notify); err != nil {
			return nil, refused("--notify %q: %v", req.Notify, err)
		}
	}
	if !req.At.IsZero() && time.Until(req.At) < 0 {
		return nil, refused("the time %s is past", req.At.Format(time.RFC3339))
	}
	if u.s.self.InstallDir == "" {
		return nil, refused("this server does not know its installation folder, so it cannot update itself")
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.job != nil {
		return nil, refused("update %s is already %s (from %s); cancel it first", u.job.status.ID, u.job.status.State, u.job.req.Source)
	}
	if req.ID == "" {
		req.ID = newUpdateID()
	}
	req.Requested = time.Now()
	if !req.At.IsZero() {
		if err := atomicfile.WriteJSON(filepath.Join(u.dir, scheduledFile), req, 0o600); err != nil {
			return nil, fmt.Errorf("keeping the scheduled update: %w", err)
		}
	}
	if u.ctx == nil {
		return nil, refused("the server is not serving")
	}
	return u.launch(u.ctx, req), nil
}

// launch starts the job of req; u.mu is held.
func (u *updater) launch(ctx context.Context, req updateRequest) *job {
	jctx, cancel := context.WithCancel(ctx)
	j := &job{req: req, cancel: cancel, done: make(chan struct{})}
	j.status = syncproto.UpdateStatus{ID: req.ID, OldBuild: u.s.self.Build, Source: req.Source}
	if req.At.IsZero() {
		j.status.State = syncproto.StatePreparing
	} else {
		j.status.State = syncproto.StateScheduled
		j.status.When = req.At.Unix()
	}
	u.job = j
	u.running.Add(1)
	go func() {
		defer u.running.Done()
		u.run(jctx, j)
	}()
	return j
}

// cancelJob withdraws the update not yet past its countdown.
func (u *updater) cancelJob(who string) (syncproto.UpdateStatus, error) {
	u.mu.Lock()
	j := u.job
	if j == nil {
		u.mu.Unlock()
		return syncproto.UpdateStatus{}, refused("no update is scheduled or under way")
	}
	if j.pastCountdown {
		u.mu.Unlock()
		return syncproto.UpdateStatus{}, refused("update %s is past its countdown; it can no longer be cancelled", j.status.ID)
	}
	j.cancelled = true
	u.mu.Unlock()
	u.log.Warn("self-update: cancelled by the administrator", "id", j.req.ID, "by", who)
	j.cancel()
	<-j.done
	return u.status(), nil
}

// status reports the update scheduled or under way, or the last one.
func (u *updater) status() syncproto.UpdateStatus {
	u.mu.Lock()
	j := u.job
	var st syncproto.UpdateStatus
	if j != nil {
		st = j.status
	}
	u.mu.Unlock()
	if j == nil {
		// Read each time: the helper writes the outcome of a switch after
		// the new server has started.
		jr, err := handover.ReadJournal(u.s.self.InstallDir)
		if err == nil && !jr.HelperAlive() {
			// The helper died after starting this server: finish its
			// record now rather than at the next start.
			if err := handover.RecoverRunning(u.log, u.s.self, mailOutcome); err != nil {
				u.log.Error("self-update: recovering", "err", err)
			}
			jr, err = handover.ReadJournal(u.s.self.InstallDir)
		}
		if err == nil {
			st = syncproto.UpdateStatus{State: syncproto.StateSwitching, ID: jr.ID, OldBuild: jr.OldBuild,
				NewBuild: jr.NewBuild, Source: jr.Source, Message: "the update helper is checking the new server"}
		} else if atomicfile.ReadJSON(filepath.Join(u.dir, handover.LastFile), &st) != nil {
			st = syncproto.UpdateStatus{State: syncproto.StateNone}
		}
	}
	st.RunningBuild = u.s.self.Build
	return st
}

// subscribe returns a channel of the update's progress lines; unsubscribe
// with the returned function.
func (u *updater) subscribe() (chan string, func()) {
	ch := make(chan string, 64)
	u.mu.Lock()
	u.subs[ch] = struct{}{}
	u.mu.Unlock()
	return ch, func() {
		u.mu.Lock()
		delete(u.subs, ch)
		u.mu.Unlock()
	}
}

// event logs one step of an update and tells the watching administrators.
func (u *updater) event(format string, args ...any) {
	text := fmt.Sprintf(format, args...)
	u.log.Info("self-update: " + text)
	u.mu.Lock()
	defer u.mu.Unlock()
	for ch := range u.subs {
		select {
		case ch <- text:
		default: // A stalled administrator's client misses lines, not the update.
		}
	}
}

func (u *updater) setState(j *job, st syncproto.UpdateState, when time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	j.status.State = st
	if !when.IsZero() {
		j.status.When = when.Unix()
	}
}

func (u *updater) hook(step string) {
	if u.testHook != nil {
		u.testHook(step)
	}
	handover.CrashPoint("server:" + step)
}

// run is one update from its start to its end.
func (u *updater) run(ctx context.Context, j *job) {
	defer close(j.done)
	if !j.req.At.IsZero() {
		t := time.NewTimer(time.Until(j.req.At))
		select {
		case <-ctx.Done():
			t.Stop()
			u.mu.Lock()
			cancelled := j.cancelled
			u.mu.Unlock()
			if cancelled {
				os.Remove(filepath.Join(u.dir, scheduledFile))
				u.end(j, syncproto.UpdateStatus{State: syncproto.StateCancelled, Message: "cancelled by the administrator before its time"})
			} else {
				// The server stops; the schedule is kept for its next start.
				u.mu.Lock()
				u.job = nil
				u.mu.Unlock()
			}
			return
		case <-t.C:
		}
		u.setState(j, syncproto.StatePreparing, time.Time{})
	}
	// From here the request is under way: it is not started again after a
	// restart, and a restart reports it as interrupted.
	if err := atomicfile.WriteJSON(filepath.Join(u.dir, handover.RunningFile), j.req, 0o600); err != nil {
		u.end(j, syncproto.UpdateStatus{State: syncproto.StateFailed, Message: fmt.Sprintf("recording the update: %v", err)})
		return
	}
	os.Remove(filepath.Join(u.dir, scheduledFile))
	handed, err := u.execute(ctx, j)
	if handed {
		// The helper owns the rest; running.json stays until the new
		// server (or the old one, reverted) reports the outcome.
		return
	}
	os.Remove(filepath.Join(u.dir, handover.RunningFile))
	u.cleanNew()
	u.mu.Lock()
	cancelled := j.cancelled
	u.mu.Unlock()
	if j.status.State == syncproto.StateCountdown {
		u.broadcast(syncproto.Notice{Kind: syncproto.NoticeCancelled, Message: "The server restart was cancelled."})
	}
	switch {
	case cancelled:
		u.end(j, syncproto.UpdateStatus{State: syncproto.StateCancelled, Message: "cancelled by the administrator"})
	case ctx.Err() != nil:
		u.end(j, syncproto.UpdateStatus{State: syncproto.StateFailed, Message: "the server was stopped during the update; nothing was changed"})
	default:
		u.end(j, syncproto.UpdateStatus{State: syncproto.StateFailed, Message: reasonOf(err)})
	}
}

// end records a job's final state, lifts the refusals and mails the
// outcome.
func (u *updater) end(j *job, st syncproto.UpdateStatus) {
	u.mu.Lock()
	st.NewBuild = j.status.NewBuild
	u.refuseUntil = time.Time{}
	u.mu.Unlock()
	final := u.finish(j.req, st, j.status.NewBuild)
	u.mu.Lock()
	j.status = final
	u.job = nil
	u.mu.Unlock()
	if st.State == syncproto.StateCancelled {
		u.event("update %s cancelled", j.req.ID)
	} else {
		u.event("update %s %s: %s", j.req.ID, st.State, st.Message)
	}
}

// finish writes the outcome of req to last.json and mails it.
func (u *updater) finish(req updateRequest, st syncproto.UpdateStatus, newBuild string) syncproto.UpdateStatus {
	st.ID, st.Source = req.ID, req.Source
	if st.OldBuild == "" {
		st.OldBuild = u.s.self.Build
	}
	if st.NewBuild == "" {
		st.NewBuild = newBuild
	}
	if st.When == 0 {
		st.When = time.Now().Unix()
	}
	if err := atomicfile.WriteJSON(filepath.Join(u.dir, handover.LastFile), st, 0o600); err != nil {
		u.log.Error("self-update: recording the outcome", "err", err)
	}
	u.log.Warn("self-update: outcome", "id", st.ID, "state", st.State.String(), "old", st.OldBuild, "new", st.NewBuild, "message", st.Message)
	if req.Notify != "" {
		u.mails.Add(1)
		go func() {
			defer u.mails.Done()
			sendOutcome(context.Background(), u.log, u.s.conf().Mail, req.Notify, st)
		}()
	}
	return st
}

// execute fetches and checks the release, counts down, closes the
// sessions, backs up and carries the data and hands over to the helper. It
// returns true once the helper has taken over.
func (u *updater) execute(ctx context.Context, j *job) (bool, error) {
	cfg := u.s.conf()
	u.mu.Lock()
	j.cfg = cfg
	u.mu.Unlock()
	u.hook("start")
	u.event("update %s: fetching %s", j.req.ID, j.req.Source)
	hr := handover.Request{ID: j.req.ID, Source: j.req.Source, AllowDowngrade: j.req.AllowDowngrade,
		Build: j.req.FeedBuild, Size: j.req.FeedSize}
	if j.req.FeedSHA256 != "" {
		if _, err := hex.Decode(hr.SHA256[:], []byte(j.req.FeedSHA256)); err != nil {
			return false, fmt.Errorf("the feed's SHA-256 %q of the release: %w", j.req.FeedSHA256, err)
		}
	}
	if hr.Build != "" {
		u.event("update %s: build %s from the release feed (%d bytes, SHA-256 %s)", j.req.ID, hr.Build, hr.Size, j.req.FeedSHA256)
	}
	p, err := handover.Prepare(ctx, u.s.self, hr,
		cfg.SelfUpdate.PublicKeys, filepath.Join(u.dir, "download"), u.event)
	if err != nil {
		return false, err
	}
	u.mu.Lock()
	j.status.NewBuild = p.Build
	j.newDir = p.Dir
	u.mu.Unlock()
	u.hook("prepared")
	if err := u.countdown(ctx, j); err != nil {
		return false, err
	}
	u.hook("closed")
	if err := u.switchOver(ctx, j, p); err != nil {
		return false, err
	}
	return true, nil
}

// countdown warns every staying session until the deadline, refusing new
// sessions meanwhile, and then closes every session but the
// administrators'.
func (u *updater) countdown(ctx context.Context, j *job) error {
	deadline := time.Now().Add(j.req.Countdown)
	u.mu.Lock()
	u.refuseUntil = deadline.Add(restartAllowance)
	j.status.State = syncproto.StateCountdown
	j.status.When = deadline.Unix()
	n := len(u.stayers)
	u.mu.Unlock()
	u.event("countdown of %v started: %d connected sessions warned; new sessions are asked to come back after the restart", j.req.Countdown, n)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		secs := uint32((left + time.Second/2) / time.Second)
		u.broadcast(syncproto.Notice{Kind: syncproto.NoticeCountdown, Seconds: secs, Message: countdownMessage(secs)})
		u.hook("countdown")
		wait := left - nextNotice(left)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	u.mu.Lock()
	if j.cancelled || ctx.Err() != nil {
		u.mu.Unlock()
		return context.Canceled
	}
	j.pastCountdown = true
	j.status.State = syncproto.StateSwitching
	u.mu.Unlock()
	u.mu.Lock()
	staying := len(u.stayers)
	u.mu.Unlock()
	closed := u.s.closeSessions()
	u.event("deadline reached: %d running applications told to stop, %d other sessions closed", staying, closed)
	return nil
}

// nextNotice returns the remaining time at which the next notice is due:
// every minute, then at 30, 10 and each of the last 5 seconds.
func nextNotice(left time.Duration) time.Duration {
	marks := []time.Duration{30 * time.Second, 10 * time.Second, 5 * time.Second, 4 * time.Second,
		3 * time.Second, 2 * time.Second, time.Second}
	if left > time.Minute+time.Second/2 {
		m := (left - time.Second/2) / time.Minute * time.Minute
		if m == left {
			m -= time.Minute
		}
		return m
	}
	for _, m := range marks {
		if m < left-time.Second/2 {
			return m
		}
	}
	return 0
}

// countdownMessage is what a user sees in a Notice.
func countdownMessage(secs uint32) string {
	return fmt.Sprintf("The server will restart for an update in %d:%02d. Please save your work and quit.", secs/60, secs%60)
}

// stayBufferSize is the size of a staying session's buffers: it reads
// nothing but the client's leaving, and writes heartbeats (13 bytes) and
// notices; a longer one goes past the buffer, straight to the connection.
const stayBufferSize = 64

// stayer is a session kept open by smartclient run, waiting for notices.
// It has no goroutine of its own besides the session's, which waits in a
// read of the connection (the client says nothing more: any read result
// means it is gone) with the next heartbeat as its deadline; a notice, or
// the server's stop, ends that wait early by moving the deadline to the
// past (wakeLocked). Ten thousand workstations each keep one all day.
type stayer struct {
	conn net.Conn

	mu      sync.Mutex
	pending []syncproto.Notice
	// woken says something happened since the session last looked;
	// reading, that the session waits in a read that a past deadline ends.
	woken, reading bool
}

// aLongTimeAgo is a read deadline that ends a read at once.
var aLongTimeAgo = time.Unix(1, 0)

// wakeLocked makes the session look at its notices and at the server's
// state; st.mu is held.
func (st *stayer) wakeLocked() {
	st.woken = true
	if st.reading {
		st.conn.SetReadDeadline(aLongTimeAgo)
	}
}

// broadcast queues a notice for every staying session.
func (u *updater) broadcast(n syncproto.Notice) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for st := range u.stayers {
		st.mu.Lock()
		if len(st.pending) >= 8 && n.Kind == syncproto.NoticeCountdown {
			st.pending = st.pending[1:] // A slow reader needs only the latest countdown.
		}
		st.pending = append(st.pending, n)
		st.wakeLocked()
		st.mu.Unlock()
	}
}

// wakeStayers makes every staying session look at the server's state: it
// is stopping.
func (u *updater) wakeStayers() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for st := range u.stayers {
		st.mu.Lock()
		st.wakeLocked()
		st.mu.Unlock()
	}
}

// stay keeps a session open after its sync, sending the notices of an
// update until the client leaves, the server stops or the deadline closes
// it.
func (s *Server) stay(ctx context.Context, ss *session) error {
	// A staying session is held all day, by every workstation at once: it
	// gives back the buffers its sync wanted (128 KiB a session, 1.2 GB of
	// heap for 10,000 sessions in make load) and keeps small ones.
	ss.r.Shrink(stayBufferSize)
	ss.blockData = nil
	if err := ss.w.Shrink(stayBufferSize); err != nil {
		return fmt.Errorf("flushing before staying: %w", err)
	}
	st := &stayer{conn: ss.conn}
	u := s.upd
	u.mu.Lock()
	if capacity := s.MaxStaySessions; len(u.stayers) >= capacity {
		u.mu.Unlock()
		// The client runs its program all the same; it only will not
		// hear of a restart.
		ss.outcome = outcomeStayFull
		return s.send(ss, &syncproto.Error{Code: syncproto.CodeBusy,
			Message: fmt.Sprintf("the server keeps no more than %d sessions open; this one will not hear of a server restart", capacity)})
	}
	if j := u.job; j != nil && j.status.State == syncproto.StateCountdown {
		left := time.Until(time.Unix(j.status.When, 0))
		secs := uint32(max(left, 0) / time.Second)
		st.pending = append(st.pending, syncproto.Notice{Kind: syncproto.NoticeCountdown, Seconds: secs, Message: countdownMessage(secs)})
	}
	u.stayers[st] = struct{}{}
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		delete(u.stayers, st)
		u.mu.Unlock()
	}()
	ss.outcome = "stayed"
	// A heartbeat at once, which tells the client the interval, then one
	// every interval: a session that cannot take one within the interval
	// is dropped, and a client that hears nothing for three intervals
	// takes the server as gone.
	heartbeat := syncproto.Notice{Kind: syncproto.NoticeHeartbeat, Seconds: uint32((s.Heartbeat + time.Second - 1) / time.Second)}
	sendBeat := func() error {
		ss.conn.SetWriteDeadline(time.Now().Add(min(s.Heartbeat, s.WriteTimeout)))
		if err := ss.w.Write(heartbeat); err != nil {
			return fmt.Errorf("sending a heartbeat: %w", err)
		}
		if err := ss.w.Flush(); err != nil {
			ss.outcome = "dropped: took no heartbeat"
			return fmt.Errorf("sending a heartbeat: %w", err)
		}
		return nil
	}
	nextBeat := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.stopping:
			return nil
		default:
		}
		st.mu.Lock()
		ns := st.pending
		st.pending, st.woken = nil, false
		st.mu.Unlock()
		for _, n := range ns {
			if err := s.send(ss, n); err != nil {
				return fmt.Errorf("sending a notice: %w", err)
			}
			if n.Kind == syncproto.NoticeClosing {
				ss.outcome = "closed for an update"
				return nil
			}
		}
		if !time.Now().Before(nextBeat) {
			if err := sendBeat(); err != nil {
				return err
			}
			nextBeat = time.Now().Add(s.Heartbeat)
		}
		// Wait in a read until the next heartbeat, unless woken since
		// the notices were taken: a wake from now on ends the read.
		st.mu.Lock()
		if st.woken {
			st.mu.Unlock()
			continue
		}
		st.reading = true
		ss.conn.SetReadDeadline(nextBeat)
		st.mu.Unlock()
		m, err := ss.r.Read()
		st.mu.Lock()
		st.reading = false
		st.mu.Unlock()
		var ne net.Error
		switch {
		case err == nil:
			return fmt.Errorf("got %v while staying: %w", m.Type(), syncproto.ErrUnexpected)
		case errors.As(err, &ne) && ne.Timeout():
			// The heartbeat is due, or the session was woken. A
			// timeout in crypto/tls and bufio is not sticky: the next
			// read goes on.
		default:
			return nil // the client is gone
		}
	}
}

// closeSessions tells staying sessions the deadline has come, gives them a
// moment to hear it, and closes every session but the administrators'. It
// returns how many it closed.
func (s *Server) closeSessions() int {
	s.upd.broadcast(syncproto.Notice{Kind: syncproto.NoticeClosing, Message: "The server is restarting for an update now."})
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		s.upd.mu.Lock()
		n := len(s.upd.stayers)
		s.upd.mu.Unlock()
		if n == 0 {
			break
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		if !s.admins[c] {
			c.Close()
			n++
		}
	}
	return n
}

// refusedError is an administrator's request the server will not carry
// out; its text says why.
type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

func refused(format string, args ...any) error {
	return &refusedError{msg: fmt.Sprintf(format, args...)}
}

func reasonOf(err error) string {
	var r *refusedError
	if errors.As(err, &r) {
		return r.msg
	}
	return err.Error()
}

func newUpdateID() string {
	var b [3]byte
	rand.Read(b[:])
	return time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// switchOver backs up the server's data, carries configuration,
// certificates, backups and [SELFUPDATE] Carry into the new installation,
// and hands over to the helper.
func (u *updater) switchOver(ctx context.Context, j *job, p *handover.Release) error {
	self := u.s.self
	if err := handover.BackUp(u.log, self, u.event); err != nil {
		return err
	}
	u.hook("backup")
	if err := ctx.Err(); err != nil {
		return err
	}
	carried, err := handover.Carry(self, j.cfg.SelfUpdate.Carry, p.Dir)
	if err != nil {
		return fmt.Errorf("carrying files into the new installation: %w", err)
	}
	u.event("carried into the new installation: %s", strings.Join(carried, ", "))
	u.hook("carried")
	if err := ctx.Err(); err != nil {
		return err
	}
	u.event("handing over to the update helper: this server stops now, the helper puts %s in place of %s and starts it, and keeps the old build as %s_old once the new one answers",
		filepath.Base(p.Dir), self.InstallDir, filepath.Base(self.InstallDir))
	if err := handOver(u.log, j.cfg, self, j, p); err != nil {
		return fmt.Errorf("starting the update helper: %w", err)
	}
	u.hook("spawned")
	u.s.handoff()
	return nil
}

// handOver starts the update helper for job j's release p, with what it
// needs of the configuration: not [MAIL], which it reads from the file.
func handOver(log *slog.Logger, cfg *Config, self Self, j *job, p *handover.Release) error {
	return handover.Start(log, self, handover.Update{ID: j.req.ID, Source: j.req.Source, Notify: j.req.Notify,
		NewBuild: p.Build, HealthTimeout: cfg.SelfUpdate.HealthTimeout})
}

// runHelper is "appserver selfupdate-helper --journal FILE", started by a
// server handing over (see handover.RunHelper).
func runHelper(ctx context.Context, args []string, stderr io.Writer) error {
	fl := pflag.NewFlagSet("appserver selfupdate-helper", pflag.ContinueOnError)
	fl.SetOutput(stderr)
	jpath := fl.String("journal", "", "the journal written by the server handing over")
	recov := fl.Bool("recover", false, "recover what a dead helper left (the helper unit's ExecStopPost)")
	if err := fl.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if *jpath == "" {
		return fmt.Errorf("%w: selfupdate-helper needs --journal", ErrUsage)
	}
	log := helperLogger(*jpath, stderr).With("component", "selfupdate-helper")
	if *recov {
		return handover.RecoverService(ctx, log.With("step", "recover"), *jpath, mailOutcome)
	}
	return handover.RunHelper(ctx, log, *jpath, mailOutcome)
}

// recoverSelfUpdate finishes, as a server starts, a self-update whose
// helper died on the way (see handover.Recover).
func recoverSelfUpdate(log *slog.Logger, self Self) error {
	return handover.Recover(log, self, mailOutcome)
}
