package appserver

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/rollout"
	"github.com/erpupdate/smartsync/appserver/mail"
	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/erpupdate/smartsync/syncproto"
)

// Staged rollout ([ROLLOUT]; appserver/internal/rollout holds the policy
// and its state). Each OS whose releases are published has a rollout,
// kept in STATE/rollout/<os>.json: when a new release is first served it
// begins there, each session is served the release the rollout chooses
// for its client (the new one, or the previous one from the history), and
// each client's report counts for the release it was served. An event (a
// promotion, a halt) is logged, and a halt is mailed to [SELFUPDATE]
// Notify when [MAIL] is set.
//
// The administrator's `appserver rollout halt|resume|promote|status` runs
// beside the server: it leaves a request in its own file,
// STATE/rollout/<os>.request-<id> (the id begins with the time, so that
// the server, which takes the requests within a second, takes them in
// the order they were made), and the server answers in <os>.answer-<id>.
// Commands run at once never share a file: each removes only its own,
// and the server removes answers left over a minute (by a command that
// was killed). With no server running, the command acts on the state
// file itself.

// rolloutDir is the folder of the rollouts' state under a state folder.
func rolloutDir(state string) string { return filepath.Join(state, "rollout") }

// rollouts keeps the rollout of each OS.
type rollouts struct {
	dir  string
	log  *slog.Logger
	mail func(subject, body string)

	mu     sync.Mutex
	policy rollout.Policy
	byOS   map[string]*rollout.Rollout
}

func newRollouts(state string, log *slog.Logger, policy rollout.Policy, mail func(subject, body string)) *rollouts {
	return &rollouts{dir: rolloutDir(state), log: log, mail: mail, policy: policy, byOS: map[string]*rollout.Rollout{}}
}

// of returns the rollout of osName, opening it at the first call.
func (rs *rollouts) of(osName string) *rollout.Rollout {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if r := rs.byOS[osName]; r != nil {
		return r
	}
	log := rs.log.With("os", osName)
	r, err := rollout.Open(log, filepath.Join(rs.dir, osName+".json"), rs.policy, func(ev rollout.Event) { rs.tell(osName, ev) })
	if err != nil {
		log.Error("reading the staged rollout's state", "err", err)
	}
	rs.byOS[osName] = r
	return r
}

// setPolicy gives every rollout a new policy (a reloaded [ROLLOUT]).
func (rs *rollouts) setPolicy(p rollout.Policy) {
	rs.mu.Lock()
	rs.policy = p
	byOS := maps.Clone(rs.byOS)
	rs.mu.Unlock()
	for _, r := range byOS {
		r.SetPolicy(time.Now(), p)
	}
}

// tell logs an event, and mails a halt.
func (rs *rollouts) tell(osName string, ev rollout.Event) {
	level := slog.LevelInfo
	if ev.Kind == rollout.EventHalted {
		level = slog.LevelError
	}
	rs.log.Log(context.Background(), level, ev.String(), "os", osName, "release", ev.Release, "phase", string(ev.Phase), "event", string(ev.Kind))
	if ev.Kind == rollout.EventHalted && rs.mail != nil {
		host, _ := os.Hostname()
		subject := fmt.Sprintf("appserver on %s: rollout of release %d for %s halted", host, ev.Release, osName)
		body := ev.String() + "\n\n" + rs.of(osName).Status(time.Now()).String() +
			"\n\nSee \"When a rollout halts\" in the README: appserver rollout status, then publish a fixed release, or appserver rollout resume|promote.\n"
		go rs.mail(subject, body)
	}
}

// begin starts the rollout of release n (build) of osName when it is new
// to the rollout. folderServed says that everyone was served the update
// folder rather than a stored release (nothing published yet, or the
// folder edited by hand): there is then nothing to fall back to, and n
// goes to everyone at once.
//
// sameFiles reports whether release n has the build and files of an
// older release: then it is that release signed anew, and goes to
// everyone.
func (rs *rollouts) begin(osName string, n uint64, build string, folderServed bool, sameFiles func(uint64) bool) {
	r := rs.of(osName)
	now := time.Now()
	st := r.Status(now)
	if st.Release == n {
		return
	}
	// The fallback is what the rollout served everyone: its release
	// (Begin keeps the older fallback when that one had not reached
	// everyone yet). With no rollout state yet (a history from before
	// staged rollouts), n is what everyone is given.
	var previous uint64
	if !folderServed {
		previous = st.Release
	}
	if previous != 0 && sameFiles != nil && sameFiles(previous) {
		rs.log.Info("the release is the one everyone is served, signed anew: it goes to everyone at once", "os", osName, "release", n, "previous", previous)
		previous = 0
	}
	if err := r.Begin(now, n, build, previous); err != nil {
		rs.log.Error("beginning the staged rollout", "os", osName, "release", n, "err", err)
	}
}

// choose returns the release number the rollout of osName serves the
// client of hello, 0 for the newest.
func (rs *rollouts) choose(osName string, h syncproto.Hello) uint64 {
	return rs.of(osName).Choose(time.Now(), rollout.Client{ID: h.ClientID, Host: h.Host, Build: h.ClientBuild})
}

// report counts a client's outcome for the release it was served.
func (rs *rollouts) report(osName string, h syncproto.Hello, n uint64, outcome syncproto.Outcome) {
	var ok bool
	switch outcome {
	case syncproto.OutcomeUpdated:
		ok = true
	case syncproto.OutcomeFailed:
	default:
		return // up to date, declined, checked: no outcome of an update
	}
	rs.of(osName).Report(time.Now(), rollout.Client{ID: h.ClientID, Host: h.Host, Build: h.ClientBuild}, n, ok)
}

// pinned returns the releases of osName a rollout still serves.
func (rs *rollouts) pinned(osName string) []uint64 { return rs.of(osName).Pinned() }

// flush writes every rollout's counts.
func (rs *rollouts) flush() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for osName, r := range rs.byOS {
		if err := r.Flush(time.Now()); err != nil {
			rs.log.Warn("saving the staged rollout's state", "os", osName, "err", err)
		}
	}
}

// RolloutRequest is what `appserver rollout` asks the server.
type RolloutRequest struct {
	ID     string `json:"id"`
	Op     string `json:"op"` // status, halt, resume, promote
	Reason string `json:"reason,omitempty"`
}

// RolloutAnswer is the server's answer to a RolloutRequest.
type RolloutAnswer struct {
	ID     string `json:"id"`
	Error  string `json:"error,omitempty"`
	Status string `json:"status"`
}

// apply carries out one administrator's request on osName's rollout.
func (rs *rollouts) apply(osName string, req RolloutRequest) RolloutAnswer {
	r := rs.of(osName)
	now := time.Now()
	var err error
	switch req.Op {
	case "status":
	case "halt":
		reason := req.Reason
		if reason == "" {
			reason = "halted by the administrator"
		}
		err = r.Halt(now, reason)
	case "resume":
		err = r.Resume(now)
	case "promote":
		err = r.Promote(now)
	default:
		err = fmt.Errorf("unknown operation %q", req.Op)
	}
	if err == nil && req.Op != "status" {
		err = r.Flush(now)
	}
	a := RolloutAnswer{ID: req.ID, Status: r.Status(now).String()}
	if err != nil {
		a.Error = err.Error()
	}
	return a
}

// requestPrefix and answerPrefix begin the names of the request and
// answer files of osName, which end with the request's id.
func requestPrefix(osName string) string { return osName + ".request-" }
func answerPrefix(osName string) string  { return osName + ".answer-" }

func rolloutRequestFile(dir, osName, id string) string {
	return filepath.Join(dir, requestPrefix(osName)+id)
}
func answerFile(dir, osName, id string) string {
	return filepath.Join(dir, answerPrefix(osName)+id)
}

// answerKeep is how long an answer no command took is kept.
const answerKeep = time.Minute

// rolloutWait is how long RolloutCommand waits for the server's answer.
var rolloutWait = 15 * time.Second

// newRequestID returns a request's id: the time in nanoseconds, so that
// ids sort in the order they were made, and random text, so that two
// made at once differ. It has no dot, slash or backslash.
func newRequestID(now time.Time) string {
	return fmt.Sprintf("%020d-%s", now.UnixNano(), rand.Text())
}

// validRequestID says whether id can be a file name's end.
func validRequestID(id string) bool {
	return id != "" && len(id) <= 100 && !strings.ContainsAny(id, `/\.:`)
}

// serveRequests takes the administrators' requests every second until
// ctx is done.
func (rs *rollouts) serveRequests(ctx context.Context, oses func() []string) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		rs.takeRequests(oses(), time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// takeRequests answers the requests waiting, of each OS in the order of
// their names, and removes the answers left since before now-answerKeep.
func (rs *rollouts) takeRequests(oses []string, now time.Time) {
	ents, err := os.ReadDir(rs.dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			rs.log.Warn("listing the rollout requests", "dir", rs.dir, "err", err)
		}
		return
	}
	for _, o := range oses {
		for _, e := range ents { // ReadDir sorts by name
			id, ok := strings.CutPrefix(e.Name(), requestPrefix(o))
			if !ok {
				continue
			}
			path := filepath.Join(rs.dir, e.Name())
			var req RolloutRequest
			err := atomicfile.ReadJSON(path, &req)
			if errors.Is(err, fs.ErrNotExist) {
				continue // its command gave up
			}
			os.Remove(path)
			if err == nil && (req.ID != id || !validRequestID(id)) {
				err = fmt.Errorf("its id %q is not its name's", req.ID)
			}
			if err != nil {
				rs.log.Warn("ignoring a damaged rollout request", "file", path, "err", err)
				continue
			}
			a := rs.apply(o, req)
			rs.log.Info("rollout request", "os", o, "op", req.Op, "error", a.Error)
			if err := atomicfile.WriteJSON(answerFile(rs.dir, o, req.ID), a, 0o644); err != nil {
				rs.log.Warn("answering a rollout request", "os", o, "err", err)
			}
		}
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), answerPrefix(o)) {
				continue
			}
			if fi, err := e.Info(); err == nil && fi.ModTime().Before(now.Add(-answerKeep)) {
				os.Remove(filepath.Join(rs.dir, e.Name()))
			}
		}
	}
}

// RolloutCommand is `appserver rollout OP --os OS`: it asks the server
// running on state, or with none running acts on the rollout's state file
// itself. The answer's Status is the rollout after the request.
func RolloutCommand(ctx context.Context, cfg *Config, state, osName string, req RolloutRequest) (RolloutAnswer, error) {
	if _, ok := cfg.Folders[osName]; !ok {
		return RolloutAnswer{}, fmt.Errorf("%w: %s has no update folder for %q ([UPDATE] %s)", ErrUsage, cfg.File, osName, pathKeyFor(osName))
	}
	dir := rolloutDir(state)
	_, inUse, err := StateHolderOf(state)
	if err != nil {
		return RolloutAnswer{}, err
	}
	if !inUse {
		rs := newRollouts(state, slog.New(slog.DiscardHandler), cfg.Rollout.Policy(), nil)
		a := rs.apply(osName, req)
		return a, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return RolloutAnswer{}, err
	}
	req.ID = newRequestID(time.Now())
	reqFile := rolloutRequestFile(dir, osName, req.ID)
	if err := atomicfile.WriteJSON(reqFile, req, 0o644); err != nil {
		return RolloutAnswer{}, fmt.Errorf("asking the server: %w", err)
	}
	path := answerFile(dir, osName, req.ID)
	deadline := time.Now().Add(rolloutWait)
	for {
		var a RolloutAnswer
		err := atomicfile.ReadJSON(path, &a)
		if err == nil {
			os.Remove(path)
			return a, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return RolloutAnswer{}, fmt.Errorf("reading the server's answer: %w", err)
		}
		if time.Now().After(deadline) {
			// Only this command's request: another's is its own.
			os.Remove(reqFile)
			return RolloutAnswer{}, fmt.Errorf("the server running on %s did not answer within %s", state, rolloutWait)
		}
		select {
		case <-ctx.Done():
			os.Remove(reqFile)
			return RolloutAnswer{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// mailAdmin mails the administrators ([SELFUPDATE] Notify and [STATUS]
// Notify) with the [MAIL] settings in force when it is called; with
// neither set it only says so in the log.
func (s *Server) mailAdmin(subject, body string) {
	cfg := s.conf()
	// The administrator of self-updates, and of the estate's status
	// when that is someone else.
	s.mailTo(cfg, subject, body, cfg.SelfUpdate.Notify, cfg.Status.Notify)
}

// mailStatus mails [STATUS] Notify.
func (s *Server) mailStatus(subject, body string) {
	cfg := s.conf()
	s.mailTo(cfg, subject, body, cfg.Status.Notify)
}

// mailTo mails each address of rcpts once ("" ones are skipped) with
// cfg's [MAIL].
func (s *Server) mailTo(cfg *Config, subject, body string, rcpts ...string) {
	mc := cfg.Mail
	var to []string
	for _, a := range rcpts {
		if a != "" && !slices.Contains(to, a) {
			to = append(to, a)
		}
	}
	if mc.Host == "" || len(to) == 0 {
		s.log.Warn("no mail sent: [MAIL] Host or the Notify address is not set", "subject", subject)
		return
	}
	mcfg := mail.Config{Host: mc.Host, Port: mc.Port, From: mc.From, User: mc.User, Password: mc.Password,
		StartTLS: mc.StartTLS, Timeout: 30 * time.Second}
	for _, rcpt := range to {
		if err := mail.Send(context.Background(), mcfg, rcpt, subject, body); err != nil {
			s.log.Error("mailing the administrator failed", "to", rcpt, "subject", subject, "err", err)
			continue
		}
		s.log.Info("mailed the administrator", "to", rcpt, "subject", subject)
	}
}
