package handover

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/erpupdate/smartsync/internal/pki"
	"github.com/erpupdate/smartsync/syncproto"
)

// The helper's journal: written by the old server before it starts the
// helper, and by the helper after each step, so that whichever server
// starts next at the installation's path can tell what happened (see
// Recover).
const (
	journalName    = "journal.json"
	journalVersion = 1
	// idEnv tells a server started by the helper which update started it,
	// so that it does not take the helper's journal for a dead one's.
	idEnv = "SMARTSYNC_SELFUPDATE_ID"
)

// Phases of the switch, in order, as the journal records them. Before
// PhaseSwapped the installation's path holds the old build; from
// PhaseSwapped on it holds the new one, until PhaseRevertSwapped puts the
// old one back. <install>_old, the build before the old one, is replaced
// (PhaseKept) only once the new build has answered.
const (
	PhaseHandover      = "handover"       // the old server wrote the journal and started the helper
	PhaseStopped       = "stopped"        // the old server has exited
	PhaseSwapped       = "swapped"        // <install> is the new build, <install>_new the old one; <install>_old is untouched
	PhaseAside         = "aside"          // earlier builds only: the old build was moved to <install>_old before the check
	PhaseStarted       = "started"        // the new server was started
	PhaseHealthy       = "healthy"        // it answered
	PhaseKept          = "kept"           // the old build is <install>_old, the one before it removed
	PhaseReverting     = "reverting"      // it did not; it was stopped
	PhaseRevertSwapped = "revert-swapped" // <install> is the old build again, the new one <install>_failed; <install>_old is untouched
	PhaseReverted      = "reverted"       // the old server was started again
)

// Journal is the record of a switch, kept beside the installation (see
// HelperDir): the update, the installation and how to start its server,
// and the phase the switch has reached.
type Journal struct {
	Version       int           `json:"version"`
	ID            string        `json:"id"`               // the update's ID
	Phase         string        `json:"phase"`            // the last phase done, one of the Phase constants
	Reason        string        `json:"reason,omitempty"` // why it reverted
	ServerPID     int           `json:"server_pid"`       // the server handing over
	HelperPID     int           `json:"helper_pid,omitempty"`
	Install       string        `json:"install"`  // the installation's path
	Exe           string        `json:"exe"`      // relative to Install
	Args          []string      `json:"args"`     // the server's command line, without the program
	WorkDir       string        `json:"work_dir"` // where the server is started
	Listen        string        `json:"listen"`   // where it is checked
	HealthTimeout time.Duration `json:"health_timeout"`
	StateDir      string        `json:"state_dir"` // where the outcome is recorded
	OldBuild      string        `json:"old_build"`
	NewBuild      string        `json:"new_build"`
	Source        string        `json:"source"`
	Notify        string        `json:"notify,omitempty"` // the address the outcome is mailed to
	ConfigFile    string        `json:"config_file"`      // [MAIL] is read from it, so no password is kept here
	Started       time.Time     `json:"started"`
	// Manager and Service name the service manager the server runs under
	// and its service there (see Self); "" when the helper starts and
	// watches the server itself.
	Manager string `json:"manager,omitempty"`
	Service string `json:"service,omitempty"`
}

// HelperDir is where the helper and its journal live: beside the
// installation install, never inside it, so that nothing runs from the
// folder being renamed.
func HelperDir(install string) string {
	return filepath.Join(filepath.Dir(install), "."+filepath.Base(install)+"_selfupdate")
}

// JournalPath is the journal of a switch of the installation install.
func JournalPath(install string) string { return filepath.Join(HelperDir(install), journalName) }

func (jr *Journal) save(dir string) error {
	return atomicfile.WriteJSON(filepath.Join(dir, journalName), jr, 0o600)
}

// ReadJournal reads the journal of a switch of the installation install:
// an error wrapping fs.ErrNotExist when none is under way.
func ReadJournal(install string) (*Journal, error) { return readJournal(HelperDir(install)) }

func readJournal(dir string) (*Journal, error) {
	var jr Journal
	if err := atomicfile.ReadJSON(filepath.Join(dir, journalName), &jr); err != nil {
		return nil, err
	}
	if jr.Version != journalVersion || jr.Install == "" || jr.Exe == "" {
		return nil, fmt.Errorf("%s: not a journal this build knows (version %d)", filepath.Join(dir, journalName), jr.Version)
	}
	return &jr, nil
}

// Notify mails the outcome st of an update to the address to, with the
// [MAIL] settings of the server's configuration file configFile, which the
// helper and recovery read there rather than keep a password in the
// journal. It logs a failure and nothing more: mail never holds up or
// undoes an update.
type Notify func(log *slog.Logger, configFile, to string, st syncproto.UpdateStatus)

// RunHelper is the helper, in a process of its own started by Start with
// the journal at journalPath. It waits for the server handing over to
// exit, swaps the installations, starts the new server and checks it,
// reverts to the old one if it fails, records the outcome and mails it
// with notify.
func RunHelper(ctx context.Context, log *slog.Logger, journalPath string, notify Notify) error {
	dir := filepath.Dir(journalPath)
	jr, err := readJournal(dir)
	if err != nil {
		return fmt.Errorf("reading the journal: %w", err)
	}
	h := &helper{log: log, dir: dir, jr: jr, notify: notify, mgr: managerFor(jr)}
	return h.run(ctx)
}

type helper struct {
	log    *slog.Logger
	dir    string
	jr     *Journal
	notify Notify
	mgr    Manager // the service's manager; nil when the server is not a service
}

// step records a phase in the journal; the journal is what a crash leaves.
func (h *helper) step(phase string) error {
	h.jr.Phase = phase
	if err := h.jr.save(h.dir); err != nil {
		return fmt.Errorf("recording phase %s: %w", phase, err)
	}
	h.log.Info("phase", "phase", phase, "id", h.jr.ID)
	CrashPoint("helper:" + phase)
	return nil
}

func (h *helper) run(ctx context.Context) error {
	jr := h.jr
	jr.HelperPID = os.Getpid()
	if err := h.step(PhaseHandover); err != nil {
		return err
	}
	if h.mgr != nil {
		// The old server has stopped serving and exits by itself; the
		// stop through the manager makes sure, and tells the manager the
		// service is stopped on purpose, so that it does not restart it
		// from the path being swapped.
		h.log.Info("stopping the old server through the service manager", "service", h.mgr.String())
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		if err := h.mgr.Stop(sctx); err != nil {
			h.log.Error("stopping the old server through the service manager", "err", err)
		}
		cancel()
	}
	h.log.Info("waiting for the old server to exit", "pid", jr.ServerPID)
	if !waitExit(ctx, jr.ServerPID, time.Minute) {
		h.log.Error("the old server did not exit within a minute; stopping it", "pid", jr.ServerPID)
		if p, err := os.FindProcess(jr.ServerPID); err == nil {
			p.Kill()
		}
		if !waitExit(ctx, jr.ServerPID, 10*time.Second) {
			return h.abandon("the old server did not exit")
		}
	}
	if err := h.step(PhaseStopped); err != nil {
		return err
	}
	// The old build waits at <install>_new, where the exchange leaves it,
	// until the new one has answered: <install>_old, the build before it
	// (the way back from the last good update), is replaced only then, so
	// that a failed attempt loses neither.
	old, newDir := jr.Install+"_old", jr.Install+"_new"
	if err := retryRename(func() error { return exchange(jr.Install, newDir) }); err != nil {
		return h.abandon(fmt.Sprintf("putting the new installation in place: %v", err))
	}
	syncDir(h.log, filepath.Dir(jr.Install))
	if err := h.step(PhaseSwapped); err != nil {
		return err
	}
	reason := h.startAndCheck(ctx, "new")
	if reason == "" {
		if err := h.step(PhaseHealthy); err != nil {
			return err
		}
		h.keepOld()
		if err := h.step(PhaseKept); err != nil {
			return err
		}
		h.finish(syncproto.StateDone, "")
		return nil
	}
	h.log.Error("the new server failed its check; putting the old one back", "reason", reason)
	jr.Reason = reason
	if err := h.step(PhaseReverting); err != nil {
		return err
	}
	failed := jr.Install + "_failed"
	if err := retryRename(func() error { return exchange(jr.Install, newDir) }); err != nil {
		h.log.Error("putting the old installation back", "err", err)
		// The old build must not stay at _new, which the next update
		// clears: it goes to _old, the way back the README names.
		h.keepOld()
		h.finish(syncproto.StateFailed, reason+"; putting the old installation back failed too: "+err.Error()+"; the old build is "+old)
		return err
	}
	if err := os.RemoveAll(failed); err != nil {
		h.log.Error("removing the earlier _failed", "dir", failed, "err", err)
	}
	if err := os.Rename(newDir, failed); err != nil {
		h.log.Error("keeping the failed installation as _failed", "err", err)
	}
	syncDir(h.log, filepath.Dir(jr.Install))
	if err := h.step(PhaseRevertSwapped); err != nil {
		return err
	}
	if r := h.startAndCheck(ctx, "old"); r != "" {
		h.log.Error("the old server does not answer either", "reason", r)
		reason += "; the old server, put back, does not answer either: " + r
	}
	if err := h.step(PhaseReverted); err != nil {
		return err
	}
	h.finish(syncproto.StateReverted, reason)
	return nil
}

// keepOld makes the old build, at <install>_new since the swap, the
// installation's <install>_old, replacing the one before it: once the new
// build has answered, or when the old one could not be put back. A failure
// is logged and leaves the old build at _new (Recover moves it).
func (h *helper) keepOld() {
	old, newDir := h.jr.Install+"_old", h.jr.Install+"_new"
	if err := os.RemoveAll(old); err != nil {
		h.log.Error("removing the earlier _old", "dir", old, "err", err)
		return
	}
	if err := os.Rename(newDir, old); err != nil {
		h.log.Error("keeping the old installation as _old", "dir", newDir, "err", err)
	}
	syncDir(h.log, filepath.Dir(h.jr.Install))
}

// abandon ends an update that could not switch: the old installation is
// still in place, and is started again.
func (h *helper) abandon(reason string) error {
	h.log.Error("abandoning the update", "reason", reason)
	os.RemoveAll(h.jr.Install + "_new")
	if r := h.startAndCheck(context.Background(), "old"); r != "" {
		reason += "; the old server does not answer: " + r
	}
	h.finish(syncproto.StateFailed, reason)
	return errors.New(reason)
}

// startAndCheck starts the server at the installation's path and waits for
// it to answer; it returns why it did not, or "". A server that fails is
// stopped.
func (h *helper) startAndCheck(ctx context.Context, which string) string {
	if h.mgr != nil {
		return h.startAndCheckService(ctx, which)
	}
	jr := h.jr
	cmd := exec.Command(filepath.Join(jr.Install, jr.Exe), jr.Args...)
	cmd.Dir = jr.WorkDir
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	// A test's crash point is for this update only, not the next.
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(v string) bool { return strings.HasPrefix(v, CrashPointEnv+"=") }),
		idEnv+"="+jr.ID)
	detach(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Sprintf("the %s server did not start: %v", which, err)
	}
	if which == "new" {
		if err := h.step(PhaseStarted); err != nil {
			h.log.Error("recording the start", "err", err)
		}
	}
	// exited is closed when the server exits, waitErr then holds how:
	// a closed channel tells every reader, the check and the stop below
	// alike (a value sent once was taken by the check, and the stop then
	// waited its whole 10 s for a second one).
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	reason := checkHealth(ctx, healthAddr(jr.Listen), jr.HealthTimeout, exited, func() error { return waitErr })
	if reason != "" {
		killTree(cmd.Process)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
		return fmt.Sprintf("the %s server %s", which, reason)
	}
	h.log.Info("server answers", "which", which, "pid", cmd.Process.Pid, "addr", healthAddr(jr.Listen))
	return ""
}

// checkHealth waits until a server answers a hello at addr, for at most
// timeout; it returns why it did not, or "". exited is closed when the
// server exits, and waitErr then tells how: an exit, whatever its code
// (0 included), before the server answered fails the check at once, not
// at the timeout.
func checkHealth(ctx context.Context, addr string, timeout time.Duration, exited <-chan struct{}, waitErr func() error) string {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A hello under way is cut short by the exit too.
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	go func() {
		select {
		case <-exited:
			hcancel()
		case <-hctx.Done():
		}
	}()
	exitReason := func() string {
		if err := waitErr(); err != nil {
			return fmt.Sprintf("exited at start, before it answered: %v", err)
		}
		return "exited at start, before it answered (exit status 0)"
	}
	last := "was never reachable"
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-exited:
			return exitReason()
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Sprintf("did not answer within %v (%s)", timeout, last)
			}
			return "was not checked: " + ctx.Err().Error()
		case <-retry.C:
		}
		err := Hello(hctx, addr)
		select {
		case <-exited:
			// An answer and an exit together: the server is gone, the
			// answer is not worth trusting.
			return exitReason()
		default:
		}
		if err == nil {
			return ""
		}
		last = err.Error()
		retry.Reset(200 * time.Millisecond)
	}
}

// The Hello of the health check: an OS no server serves, which the server
// answers with an error (any answer will do) and logs at debug level only,
// since a check at every start is no news.
const (
	HealthCheckOS = "healthcheck"
	HealthCheckID = "selfupdate-health-check"
)

// Hello asks the server at addr for a Welcome: nil when it answers as a
// server that works. Any well-formed answer, an Error included, shows a
// server that works; "updating" does not.
func Hello(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: time.Second}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(2 * time.Second))
	// Any key will do: the check asks whether the server answers, and
	// sends nothing that needs keeping from anyone.
	host, _, _ := net.SplitHostPort(addr)
	c := tls.Client(raw, pki.ClientConfig(host, func(tls.ConnectionState) error { return nil }))
	if err := c.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	w := syncproto.NewWriter(c)
	if err := w.Write(syncproto.Hello{OS: HealthCheckOS, ClientID: HealthCheckID}); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	m, err := syncproto.NewReader(c).Read()
	var pe *syncproto.Error
	switch {
	case errors.As(err, &pe) && pe.Code == syncproto.CodeUpdating:
		return fmt.Errorf("still says it is updating")
	case errors.As(err, &pe):
		return nil
	case err != nil:
		return fmt.Errorf("no answer to hello: %w", err)
	case m.Type() != syncproto.MsgWelcome:
		return fmt.Errorf("answered hello with %v", m.Type())
	}
	return nil
}

// finish records the outcome where the server at the installation's path
// reads it, mails it, and removes the journal.
func (h *helper) finish(state syncproto.UpdateState, reason string) {
	writeOutcome(h.log, h.jr, state, reason)
	h.mail(state, reason)
	if err := os.Remove(filepath.Join(h.dir, journalName)); err != nil {
		h.log.Error("removing the journal", "err", err)
	}
	// The helper's own program goes too where the OS lets a running
	// program be removed; elsewhere the next server start removes it.
	os.RemoveAll(h.dir)
}

func outcomeStatus(jr *Journal, state syncproto.UpdateState, reason string) syncproto.UpdateStatus {
	return syncproto.UpdateStatus{State: state, ID: jr.ID, OldBuild: jr.OldBuild, NewBuild: jr.NewBuild,
		When: time.Now().Unix(), Source: jr.Source, Message: reason}
}

// writeOutcome writes last.json into the state folder at its path (the
// new installation's after a switch, the old one's after a revert) and
// removes the running mark.
func writeOutcome(log *slog.Logger, jr *Journal, state syncproto.UpdateState, reason string) {
	dir := filepath.Join(jr.StateDir, "selfupdate")
	if err := atomicfile.WriteJSON(filepath.Join(dir, LastFile), outcomeStatus(jr, state, reason), 0o600); err != nil {
		log.Error("recording the outcome", "err", err)
	}
	os.Remove(filepath.Join(dir, RunningFile))
	log.Warn("outcome", "id", jr.ID, "state", state.String(), "old", jr.OldBuild, "new", jr.NewBuild, "reason", reason)
}

func (h *helper) mail(state syncproto.UpdateState, reason string) {
	if h.jr.Notify == "" {
		return
	}
	h.notify(h.log, h.jr.ConfigFile, h.jr.Notify, outcomeStatus(h.jr, state, reason))
}

// HelperAlive reports whether the journal's helper (or, before the helper
// has recorded itself, the server that wrote the journal) is still at
// work.
func (jr *Journal) HelperAlive() bool {
	if jr.HelperPID != 0 {
		return ProcessAlive(jr.HelperPID)
	}
	return jr.ServerPID != os.Getpid() && ProcessAlive(jr.ServerPID)
}

// waitExit waits until process pid has exited.
func waitExit(ctx context.Context, pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for ProcessAlive(pid) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// syncDir makes a rename in dir durable; a failure is only logged, since
// the rename itself has happened.
func syncDir(log *slog.Logger, dir string) {
	if err := atomicfile.SyncDir(dir); err != nil {
		log.Warn("self-update: syncing a folder", "err", err)
	}
}

// ErrRestart is returned by Recover when, under a service manager, it put
// the old build back while the server calling it runs the new one: that
// server must exit with an error, so that the manager starts the service
// again, from the old build now at the installation's path.
var ErrRestart = errors.New("self-update: the old build was put back at the installation's path; this server, of the new build, exits so that the service manager starts the old one")

// Recover runs when a server starts: if a self-update's helper died on the
// way (killed, crashed, power lost), it completes what the journal says
// was done so that the installation's path holds one whole build, records
// the outcome, mails it with notify (in the background) and clears the way
// for a retry. A server started while a live helper is switching its
// installation refuses to run, unless the helper started it.
//
// A switch under a service manager (the journal's Manager) that the helper
// left with the new build at the path but not yet found healthy is
// reverted: the old build goes back to the path, the new one to _failed,
// and Recover returns ErrRestart (the manager restarts the service, from
// the old build). Without a service manager, nothing would start the old
// build again, so the new build, which runs, is kept (StateDone, saying it
// was not checked).
func Recover(log *slog.Logger, self Self, notify Notify) error {
	return recoverSwitch(log, self, notify, true)
}

// RecoverRunning is Recover for a server that already serves (its status
// asks): it never reverts the installation under the running server, and
// leaves a switch that needs it to the helper unit's ExecStopPost
// (RecoverService) or the next start.
func RecoverRunning(log *slog.Logger, self Self, notify Notify) error {
	if jr, err := readJournal(HelperDir(self.InstallDir)); err == nil && !jr.HelperAlive() && needsRevert(jr) {
		return nil
	}
	return recoverSwitch(log, self, notify, false)
}

// needsRevert reports whether a dead helper's switch under a service
// manager left the new build at the path unchecked (or failed, when the
// helper died putting the old one back): Recover then puts the old one
// back. The old one must be at _new, where the swap left it.
func needsRevert(jr *Journal) bool {
	switch jr.Phase {
	case PhaseHealthy, PhaseKept, PhaseAside, PhaseRevertSwapped, PhaseReverted:
		return false
	}
	if jr.Manager == "" || !holdsUpdate(jr, jr.Install) {
		return false
	}
	fi, err := os.Stat(jr.Install + "_new")
	return err == nil && fi.IsDir() && !holdsUpdate(jr, jr.Install+"_new")
}

func recoverSwitch(log *slog.Logger, self Self, notify Notify, revert bool) error {
	hd := HelperDir(self.InstallDir)
	jr, err := readJournal(hd)
	if errors.Is(err, os.ErrNotExist) {
		os.RemoveAll(hd) // a finished helper's program
		return nil
	}
	if err != nil {
		log.Error("self-update: unreadable journal; setting it aside", "err", err)
		os.Rename(filepath.Join(hd, journalName), filepath.Join(hd, journalName+".bad"))
		return nil
	}
	if jr.HelperAlive() {
		if os.Getenv(idEnv) == jr.ID || jr.ServerPID == os.Getpid() {
			return nil // the helper started this server and is checking it
		}
		if jr.Manager != "" && self.Manager == jr.Manager && self.Service == jr.Service {
			// The helper started this server through the service manager,
			// which passes it no variable of the helper's: the service's
			// own start while the helper is alive is the helper's.
			return nil
		}
		return fmt.Errorf("the update helper (pid %d, journal %s) is switching this installation (update %s, phase %s); start the server again when it is done",
			jr.HelperPID, filepath.Join(hd, journalName), jr.ID, jr.Phase)
	}
	log.Warn("self-update: the helper stopped before it finished; recovering", "id", jr.ID, "phase", jr.Phase)
	old, newDir, failed := jr.Install+"_old", jr.Install+"_new", jr.Install+"_failed"
	// The three-rename fallback of exchange, cut after its first rename,
	// left the path empty: put the installation back first.
	if _, err := os.Lstat(jr.Install); errors.Is(err, os.ErrNotExist) {
		if err := os.Rename(jr.Install+".exchange", jr.Install); err != nil {
			return fmt.Errorf("the installation's path %s is empty and %s.exchange cannot be put back: %w", jr.Install, jr.Install, err)
		}
	} else if _, err := os.Lstat(jr.Install + ".exchange"); err == nil {
		// Cut after its second rename: the path holds the other build,
		// and the third rename, .exchange to _new, is still to do.
		if _, err := os.Lstat(newDir); errors.Is(err, os.ErrNotExist) {
			if err := os.Rename(jr.Install+".exchange", newDir); err != nil {
				return fmt.Errorf("%s.exchange cannot be moved to %s: %w", jr.Install, newDir, err)
			}
		}
	}
	// The journal's phase may lag the folders by one rename (a crash
	// between a rename and its record), so the folders decide: the new
	// installation carries the update's ID.
	reverting := jr.Phase == PhaseReverting || jr.Phase == PhaseRevertSwapped || jr.Phase == PhaseReverted
	var state syncproto.UpdateState
	reason := ""
	// keepOld makes the old build, left at _new by the swap, the
	// installation's _old, replacing the build before it: the new build is
	// at the path, and the old one must not stay at _new, which the next
	// update clears.
	keepOld := func() {
		if _, err := os.Stat(newDir); err == nil && !holdsUpdate(jr, newDir) {
			os.RemoveAll(old)
			if err := os.Rename(newDir, old); err != nil {
				log.Error("self-update: keeping the old installation as _old", "err", err)
			}
		}
	}
	restart := false
	switch {
	case revert && needsRevert(jr):
		// Under a service manager, before the new build was found
		// healthy: put the old one back, as the helper would have.
		phase := jr.Phase
		if err := retryRename(func() error { return exchange(jr.Install, newDir) }); err != nil {
			// (Windows: the new build runs from the path, which it locks.)
			log.Error("self-update: putting the old installation back", "err", err)
			keepOld()
			state, reason = syncproto.StateDone, "the update helper stopped before its check, and putting the old build back failed ("+err.Error()+"); this server, started afterwards, runs the new build"
			break
		}
		os.RemoveAll(failed)
		if err := os.Rename(newDir, failed); err != nil {
			log.Error("self-update: keeping the failed installation as _failed", "err", err)
		}
		state = syncproto.StateReverted
		reason = "the update helper stopped after putting the new build in place (phase " + phase + "), before it was checked; the old build was put back, the new one kept as " + filepath.Base(failed)
		if phase == PhaseReverting {
			reason = jr.Reason + "; the update helper stopped while putting the old build back, and recovery put it back"
		}
		restart = true
	case holdsUpdate(jr, jr.Install) && !reverting:
		// The new build is in place; keep the old one as _old.
		keepOld()
		state = syncproto.StateDone
		if jr.Phase != PhaseHealthy && jr.Phase != PhaseKept {
			reason = "the update helper stopped before its check; this server, started afterwards, runs the new build"
		}
	case holdsUpdate(jr, jr.Install):
		// Stopped while putting the old build back: the failed one is at
		// the path, and this server was started from it anyway.
		keepOld()
		state, reason = syncproto.StateFailed, jr.Reason+"; the helper stopped while putting the old build back ("+filepath.Base(old)+"), and the new one was started again"
	case !reverting:
		// The path still holds the old build, and _old the one before it.
		if holdsUpdate(jr, newDir) {
			os.RemoveAll(newDir)
		}
		state, reason = syncproto.StateFailed, "the update helper stopped before the switch; nothing was changed"
	default:
		// The old build is back; the failed one is kept as _failed, at
		// _new where the swap back left it (or at _old, where a helper of
		// an earlier build left it). _old, the build before, stays.
		for _, dir := range []string{newDir, old} {
			if holdsUpdate(jr, dir) {
				os.RemoveAll(failed)
				if err := os.Rename(dir, failed); err != nil {
					log.Error("self-update: keeping the failed installation as _failed", "err", err)
				}
			}
		}
		state, reason = syncproto.StateReverted, jr.Reason
	}
	syncDir(log, filepath.Dir(jr.Install))
	writeOutcome(log, jr, state, reason)
	switch {
	case jr.Notify != "" && restart:
		// This process exits next: mail now, or never.
		notify(log, jr.ConfigFile, jr.Notify, outcomeStatus(jr, state, reason))
	case jr.Notify != "":
		// In the background: a slow mail server must not hold the start.
		go notify(log, jr.ConfigFile, jr.Notify, outcomeStatus(jr, state, reason))
	}
	if err := os.RemoveAll(hd); err != nil {
		return err
	}
	if restart {
		return ErrRestart
	}
	return nil
}

// idMarker, in a new installation, holds the ID of the update that
// unpacked it, so that recovery tells the new installation from the old
// one whatever their builds.
const idMarker = ".selfupdate-id"

// holdsUpdate reports whether dir is the new installation of jr's update:
// by its ID marker, or, for a folder without one, by its BUILD when the
// builds differ.
func holdsUpdate(jr *Journal, dir string) bool {
	if id, err := os.ReadFile(filepath.Join(dir, idMarker)); err == nil {
		return strings.TrimSpace(string(id)) == jr.ID
	}
	if jr.NewBuild == jr.OldBuild {
		return false
	}
	b, err := os.ReadFile(filepath.Join(dir, "BUILD"))
	return err == nil && strings.TrimSpace(string(b)) == jr.NewBuild
}

// The update's records in the server's state folder, <state>/selfupdate:
// the server marks the update it runs in RunningFile, and whoever ends the
// update (the server, the helper or recovery) writes its outcome to
// LastFile and removes the mark.
const (
	RunningFile = "running.json"
	LastFile    = "last.json"
)

// healthAddr turns a listening address into one a local client can dial.
func healthAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// CrashPointEnv names a step at which the process kills itself, as
// "server:STEP", "helper:PHASE" or "recover:start" (the helper unit's
// recovery, RecoverService), or several separated by commas, so that tests
// can check what a crash at that step leaves. For tests only.
const CrashPointEnv = "SMARTSYNC_TEST_CRASH_AT"

// CrashPoint kills this process, as a kill would, when CrashPointEnv names
// step.
func CrashPoint(step string) {
	if v := os.Getenv(CrashPointEnv); v != "" && slices.ContainsFunc(strings.Split(v, ","), func(s string) bool { return strings.EqualFold(s, step) }) {
		fmt.Fprintf(os.Stderr, "crash point %s: killing this process (%s)\n", step, CrashPointEnv)
		killSelf()
	}
}
