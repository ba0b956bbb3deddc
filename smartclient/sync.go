package smartclient

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/erpupdate/smartsync/syncproto"
)

// Options configure one sync.
type Options struct {
	Dir       string // install folder
	Server    string // HOST:PORT of the appserver
	OS        string // "windows", "linux" or "darwin"
	Yes       bool   // accept an incompatible (full) update without asking
	CheckOnly bool   // say whether an update is available; change nothing
	// Confirm asks the user a yes/no question; nil means there is nobody
	// to ask (no terminal), and an incompatible update is then declined
	// unless Yes is set.
	Confirm  func(question string) (bool, error)
	Progress Progress // nil: no progress output
	Log      *slog.Logger
	Out      io.Writer     // messages for the user
	Timeout  time.Duration // dial and per-message timeout; default 30 s
}

// Result says what a sync did.
type Result struct {
	Outcome      syncproto.Outcome
	Build        string // server's build
	Compatible   bool
	Fetched      int   // files downloaded
	FetchedBytes int64 // their size
	WireBytes    int64 // file data received on the wire
	Touched      int   // files whose mtime alone was fixed
	Removed      int
	Kept         int    // preserved files left as they were
	Backup       string // backup folder made, if any
	Message      string // for Disabled: the server's reason
}

// Errors that decide the exit code.
var (
	ErrDeclined = errors.New("smartclient: update declined")
	ErrDisabled = errors.New("smartclient: updates are disabled on the server")
)

// IncompatiblePrompt is the question asked before a full update.
const IncompatiblePrompt = "SmartClient and AppServer builds are incompatible. Update now? [Y/n]"

// Sync brings the install folder to the server's release: see the
// package documentation for the steps. On any failure the install folder
// is left as it was.
func Sync(ctx context.Context, o Options) (*Result, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Progress == nil {
		o.Progress = nopProgress{}
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	created := false
	if !o.CheckOnly {
		if _, err := os.Stat(o.Dir); errors.Is(err, fs.ErrNotExist) {
			created = true
		}
		if err := os.MkdirAll(o.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating install folder: %w", err)
		}
	}
	root, err := os.OpenRoot(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("opening install folder: %w", err)
	}
	defer root.Close()
	if !o.CheckOnly {
		unlock, err := lockInstall(root)
		if err != nil {
			return nil, err
		}
		defer unlock()
		if err := recoverJournal(root, o.Dir, o.Log); err != nil {
			return nil, err
		}
	}
	st, err := loadState(o.Dir)
	if err != nil {
		return nil, err
	}
	res, err := syncWith(ctx, root, st, o)
	if err != nil && created {
		// A fresh install that did not happen leaves no empty folder.
		os.Remove(o.Dir)
	}
	if err != nil && !o.CheckOnly && st.exists {
		// Record the failure for 'status'; the install is untouched.
		st.LastSync, st.LastOutcome, st.LastMessage, st.Server = time.Now().UTC(), "failed", err.Error(), o.Server
		if serr := st.save(o.Dir); serr != nil {
			o.Log.Warn("recording the failed sync", "err", serr)
		}
	}
	return res, err
}

func syncWith(ctx context.Context, root *os.Root, st *State, o Options) (*Result, error) {
	c, err := dial(ctx, o.Server, o.Timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.send(syncproto.Hello{ClientBuild: st.Build, OS: o.OS, ClientID: st.ClientID}); err != nil {
		return nil, fmt.Errorf("sending hello: %w", err)
	}
	m, err := c.expect(syncproto.MsgWelcome)
	if err != nil {
		return nil, fmt.Errorf("waiting for the server's welcome: %w", err)
	}
	w := m.(syncproto.Welcome)
	res := &Result{Build: w.ServerBuild, Compatible: w.Compatible, Message: w.Message}
	o.Log.Info("connected", "server", o.Server, "server_build", w.ServerBuild, "installed_build", st.Build,
		"compatible", w.Compatible, "updates", w.UpdatesEnabled)

	report := func(r syncproto.Report) {
		// The outcome is for the administrator's log; the sync's
		// result does not depend on it reaching the server.
		r.Build = st.Build
		if err := c.send(r); err == nil {
			_, err = c.expect(syncproto.MsgReportAck)
		}
		if err != nil {
			o.Log.Warn("reporting the outcome to the server", "err", err)
		}
	}
	if !w.UpdatesEnabled {
		res.Outcome = syncproto.OutcomeUpToDate
		report(syncproto.Report{Outcome: syncproto.OutcomeUpToDate, Message: "updates disabled"})
		return res, fmt.Errorf("%w: %s", ErrDisabled, w.Message)
	}
	full := !w.Compatible
	if full && !o.CheckOnly && !o.Yes {
		ok := false
		if o.Confirm != nil {
			if ok, err = o.Confirm(IncompatiblePrompt); err != nil {
				return nil, fmt.Errorf("asking to update: %w", err)
			}
		} else {
			fmt.Fprintf(o.Out, "SmartClient and AppServer builds are incompatible (%s); not updating without a terminal to ask on: run with --yes to accept.\n", w.Message)
		}
		if !ok {
			res.Outcome = syncproto.OutcomeDeclined
			report(syncproto.Report{Outcome: syncproto.OutcomeDeclined})
			return res, ErrDeclined
		}
	}

	if err := c.send(syncproto.GetManifest{}); err != nil {
		return nil, fmt.Errorf("asking for the manifest: %w", err)
	}
	man, err := readManifest(c.r)
	if err != nil {
		return nil, err
	}
	p, err := makePlan(root, st, man, full)
	if err != nil {
		return nil, err
	}
	res.Touched, res.Removed, res.Kept = len(p.touch), len(p.remove), len(p.kept)
	if o.CheckOnly {
		res.Outcome = syncproto.OutcomeChecked
		res.Fetched, res.FetchedBytes = len(p.fetch), p.fetchBytes
		if err := c.request(nil); err != nil {
			return nil, err
		}
		report(syncproto.Report{Outcome: syncproto.OutcomeChecked})
		return res, nil
	}

	fail := func(err error) (*Result, error) {
		report(syncproto.Report{Outcome: syncproto.OutcomeFailed, Message: err.Error()})
		root.RemoveAll(stagingDir)
		return nil, err
	}
	if err := c.request(p.fetch); err != nil {
		return nil, fmt.Errorf("requesting files: %w", err)
	}
	o.Progress.Start(len(p.fetch), p.fetchBytes)
	fe := &fetcher{c: c, root: root, man: man, progress: o.Progress}
	err = fe.fetchAll(ctx, p.fetch)
	o.Progress.Finish()
	if err != nil {
		var pe *syncproto.Error
		if errors.As(err, &pe) {
			// The server's final word: nothing to report back.
			root.RemoveAll(stagingDir)
			return nil, fmt.Errorf("the server stopped the transfer: %w", err)
		}
		return fail(err)
	}
	res.Fetched, res.FetchedBytes, res.WireBytes = len(p.fetch), p.fetchBytes, fe.wire

	if !p.empty() {
		// Every file is staged and verified: only now is the install
		// touched, first by backing it up.
		res.Backup, err = backup(root, o.Dir)
		if err != nil {
			return fail(err)
		}
	}
	next := nextState(st, man, p, o)
	j := &journal{Remove: p.remove, State: next}
	for _, i := range p.fetch {
		j.Install = append(j.Install, man.Files[i].Path)
	}
	for _, i := range p.touch {
		j.Touch = append(j.Touch, touchStep{Path: man.Files[i].Path, MtimeNs: man.Files[i].MtimeNs})
	}
	if err := commit(root, o.Dir, j, o.Log); err != nil {
		return fail(fmt.Errorf("applying the update: %w", err))
	}
	*st = *next
	res.Outcome = syncproto.OutcomeUpToDate
	if !p.empty() {
		res.Outcome = syncproto.OutcomeUpdated
	}
	report(syncproto.Report{Outcome: res.Outcome, Files: uint32(res.Fetched), Bytes: uint64(res.WireBytes)})
	return res, nil
}

// nextState is the state after the plan is applied: every listed file
// the client installed or found identical, with its server hash.
func nextState(st *State, man *manifest, p *plan, o Options) *State {
	next := &State{
		Version: stateVersion, ClientID: st.ClientID, Build: man.Build, OS: o.OS, Server: o.Server,
		LastSync: time.Now().UTC(), LastOutcome: "updated", Files: make(map[string]FileState, len(man.Files)),
	}
	if p.empty() {
		next.LastOutcome = "up-to-date"
	}
	record := func(idx []int) {
		for _, i := range idx {
			f := man.Files[i]
			next.Files[f.Path] = FileState{Size: f.Size, MtimeNs: f.MtimeNs, Hash: hex.EncodeToString(f.Hash[:])}
		}
	}
	record(p.fetch)
	record(p.touch)
	record(p.current)
	// A preserved file the user kept stays the client's to remove
	// later only if an earlier sync installed it.
	for _, i := range p.kept {
		if k, ok := st.Files[man.Files[i].Path]; ok {
			next.Files[man.Files[i].Path] = k
		}
	}
	return next
}
