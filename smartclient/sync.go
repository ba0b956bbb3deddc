package smartclient

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/erpupdate/smartsync/internal/releasemeta"
	"github.com/erpupdate/smartsync/internal/version"
	"github.com/erpupdate/smartsync/smartclient/internal/backup"
	"github.com/erpupdate/smartsync/smartclient/internal/fetch"
	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/journal"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest"
	"github.com/erpupdate/smartsync/smartclient/internal/servertrust"
	"github.com/erpupdate/smartsync/smartclient/internal/session"
	"github.com/erpupdate/smartsync/smartclient/internal/state"
	"github.com/erpupdate/smartsync/syncproto"
)

// conn is the client's side of one session with the server.
type conn = session.Conn

// Options configure one sync.
type Options struct {
	Dir       string // install folder
	Server    string // HOST:PORT of the appserver
	OS        string // "windows", "linux" or "darwin"
	Yes       bool   // accept an incompatible (full) update without asking
	CheckOnly bool   // say whether an update is available; change nothing
	Stats     bool   // the command prints byte counts at the end
	List      bool   // with CheckOnly: list what would change in Result.Planned
	// Confirm asks the user a yes/no question; nil means there is nobody
	// to ask (no terminal), and an incompatible update is then declined
	// unless Yes is set.
	Confirm  func(question string) (bool, error)
	Progress Progress // nil: no progress output
	Log      *slog.Logger
	Out      io.Writer     // messages for the user
	Timeout  time.Duration // dial and per-message timeout; default 30 s
	// Compress is CompressAuto (""), CompressYes or CompressNo: whether
	// file data travels zstd-compressed.
	Compress string
	// RetryFor bounds how long a server that turns the session away for
	// a while (updating itself, busy, stopping), at the hello or at the
	// request for the manifest, is tried again: after its Retry plus a
	// random time up to as much again (see retryWait), or, when that
	// would outlast RetryFor, once more as RetryFor ends; 0 means 15
	// minutes, a negative value not at all.
	RetryFor time.Duration
	// ConnectRetryFor bounds how long a server that cannot be reached,
	// or whose connection fails or times out before its welcome
	// (refused, reset, unreachable, a TLS handshake that times out), is
	// tried again, with exponential backoff and full jitter (a random
	// wait up to 1 s, doubling to 30 s). 0 or a negative value means not
	// at all, so that a library caller hears at once; the smartclient
	// command sets DefaultConnectRetryFor, or --connect-retry, or
	// smartclient.ini [UPDATE] ConnectRetry. An integrity failure (a
	// server key that is not the trusted one, a bad certificate, a
	// protocol error, hostile data) is never tried again.
	ConnectRetryFor time.Duration
	// Fingerprint, CAFile and AllowPlaintext are smartclient.ini's [SSL]
	// keys: which server key the client trusts (see servertrust), and
	// whether it connects over plain TCP. With neither Fingerprint nor
	// CAFile, the key of the first server seen is recorded in the
	// install's .smartclient folder and required from then on.
	Fingerprint    string
	CAFile         string
	AllowPlaintext bool
	// PublisherKeys are the publisher keys ("ed25519:BASE64") a first
	// install trusts ([UPDATE] PublisherKey); ignored once the install
	// has recorded its trusted keys (see trust.go).
	PublisherKeys []string
	// AllowUnsigned accepts a server with no signed release, with a
	// warning ([UPDATE] AllowUnsigned=1).
	AllowUnsigned bool
	// StopGrace is how long the program of 'run' has to end after it is
	// asked to (the server restarts, or smartclient is interrupted)
	// before it is killed; 0 means 10 s.
	StopGrace time.Duration
	// MinRate is the minimum average rate of the file transfer, in
	// bytes a second, over each RateWindow after the first (the grace of
	// a transfer that starts); 0 means DefaultMinRate (32 KiB/s, a
	// quarter of a 1 Mbit/s line), a negative value no minimum. Timeout
	// bounds each message; this bounds the progress of them all, so that
	// a server that trickles cannot hold a sync (and 'run') for ever.
	MinRate int64
	// RateWindow is the span MinRate is averaged over; 0 means 60 s.
	RateWindow time.Duration
	// Deadline bounds the whole file transfer. 0 means the time the bytes
	// to fetch take at MinRate plus 10 minutes (a 200 MB full install:
	// 1 h 57 min, where a 1 Mbit/s line takes 27 min): a bound that
	// grows with the release, as a fixed cap cannot for both a patch and
	// a first install. A negative value means none. The manifest, whose
	// size is not known before it comes, is held to Deadline when it is
	// set, else to 10 minutes (20,000 entries take 20 s at 1 Mbit/s).
	Deadline time.Duration
	// Host and User name the workstation and its user in the hello; ""
	// means the OS's host name and the current user (tests set them).
	Host, User string

	// retryUntil is when RetryFor ends, for every attempt of the sync.
	retryUntil time.Time
	// turnedAway counts the server's refusals waited out (see
	// Result.TurnedAway).
	turnedAway *int
	// confirmed is set once the user has said yes to a full update: the
	// attempts after a busy server's refusal do not ask again.
	confirmed *bool
	// keep, when set ('run', through Application.Keep), is handed the
	// session instead of its being closed, if it ended with the server's
	// ReportAck: it has sent Stay, and the server's notices follow on it.
	keep func(*conn)
	// seen is the key of a server this sync met for the first time,
	// recorded once the sync has succeeded (see servertrust.Learn).
	seen *servertrust.Seen
	// noBlocks fetches no file by block sums: the second attempt of a
	// sync whose file built that way failed its check (see Sync).
	noBlocks bool
	// rep follows the sync to its report (see report.go).
	rep *reporting
}

// Result says what a sync did.
type Result struct {
	Outcome      syncproto.Outcome
	Build        string // server's build
	Compatible   bool
	Fetched      int   // files downloaded
	FetchedBytes int64 // their size
	WireBytes    int64 // file data received on the wire
	Received     int64 // every byte received from the server, frames included
	Sent         int64 // every byte sent to it
	Touched      int   // files whose mtime alone was fixed
	Linked       int   // symbolic links made
	Folders      int   // empty folders made
	Removed      int
	Reused       int    // files a failed sync had already downloaded
	Copied       int64  // bytes of fetched files taken from their installed versions (deltas)
	Patched      int    // files received as patches from their installed versions (their patches count in WireBytes)
	Kept         int    // preserved files left as they were
	Backup       string // backup folder made, if any
	Message      string // for Disabled: the server's reason
	Installed    string // the build installed before the sync, "" for none
	Planned      []Change
	// TurnedAway is how many times the server turned the sync away for a
	// while (busy, updating, stopping) before it served it; a load test
	// counts the clients told busy and then served by it.
	TurnedAway int
}

// Change is one thing a sync would do to the install, as Options.List
// asks: Kind is "fetch", "patch" (fetch as a patch from the installed
// version), "link", "mkdir", "retime" or "remove".
type Change struct {
	Kind, Path string
}

// Changes is the number of files a checked sync would fetch, link, retime
// or remove, and of folders it would make: 0 means up to date.
func (r *Result) Changes() int {
	return r.Fetched + r.Linked + r.Folders + r.Touched + r.Removed
}

// Errors that decide the exit code.
var (
	ErrDeclined = errors.New("smartclient: update declined")
	ErrDisabled = errors.New("smartclient: updates are disabled on the server")
)

// IncompatiblePrompt is the question asked before a full update.
const IncompatiblePrompt = "SmartClient and AppServer builds are incompatible. Update now? [Y/n]"

// firstInstallPrompt asks before a first install: the folder holds no
// build, so the builds are not incompatible, only absent.
func firstInstallPrompt(build string) string {
	return fmt.Sprintf("No build installed yet. Install build %s now? [Y/n]", build)
}

// Sync brings the install folder to the server's release: see the
// package documentation for the steps. On any failure the install folder
// is left as it was.
func Sync(ctx context.Context, o Options) (*Result, error) {
	start := time.Now()
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
	if o.RetryFor == 0 {
		o.RetryFor = 15 * time.Minute
	}
	o.retryUntil = time.Now().Add(max(o.RetryFor, 0))
	o.seen = &servertrust.Seen{}
	o.turnedAway = new(int)
	o.confirmed = new(bool)
	if !o.CheckOnly {
		// Mkdir, not MkdirAll: a folder whose parent is missing is a
		// typo, not a place to install a client made up on the spot.
		if err := os.Mkdir(o.Dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("creating install folder: %w", err)
		}
	}
	r, err := os.OpenRoot(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("opening install folder: %w", err)
	}
	defer r.Close()
	root := newDisk(r)
	defer root.CloseCache()
	if !o.CheckOnly {
		if err := install.ReclaimMeta(r); err != nil {
			return nil, err
		}
		unlock, err := install.Lock(root.Root)
		if err != nil {
			return nil, err
		}
		defer unlock()
		if err := journal.Recover(root, o.Log); err != nil {
			reportBroken(ctx, r, o, start, stepRecover, err)
			return nil, err
		}
	}
	// The files stay encoded until a plan needs them: a no-op check
	// walks them as they are.
	st, err := state.Read(o.Dir)
	if err != nil {
		reportBroken(ctx, r, o, start, stepState, err)
		return nil, err
	}
	defer st.Release()
	sizeMemory(st.Count())
	id, err := clientID(r, o.Dir, st.ClientID, !o.CheckOnly)
	if err != nil {
		return nil, err
	}
	st.ClientID = id
	o.rep = newReporting(o, start)
	if st.Legacy() && !o.CheckOnly {
		// The state of an earlier build is rewritten in the binary
		// format once, so that from the next sync on (a no-op check
		// writes nothing) it is quick to read.
		if err := st.Save(root); err != nil {
			o.Log.Warn("rewriting the client state in the new format", "err", err)
		}
	}
	// The id file alone (see clientID) is no bookkeeping yet.
	hadMeta := hasMeta(root)
	res, err := syncRetrying(ctx, root, st, o)
	if errors.Is(err, fetch.ErrBlockMismatch) && !o.noBlocks {
		// Block sums are 64 bits: a block of the new file may match
		// one of the installed version's that is not the same, and it
		// would again, since both are what they are. rsync sends such a
		// file a second time; this sync starts again without block sums
		// (files already verified are reused from resume), once.
		o.Log.Warn("a file built from the installed version's blocks failed its check; syncing again without block sums", "err", err)
		st.Release()
		id := st.ClientID // renewed, perhaps, by the first attempt
		if st, err = state.Read(o.Dir); err != nil {
			return nil, err
		}
		defer st.Release()
		st.ClientID = id
		o.noBlocks = true
		o.rep.again() // the second attempt reports too, as a sync of its own
		res, err = syncRetrying(ctx, root, st, o)
	}
	// A sync that ended before it reported reports now, or keeps its
	// report for the next session.
	reportEnd(ctx, st, o, err)
	if err != nil && !hadMeta && !root.Exists(journal.File) && !root.Exists(fetch.ResumeDir) {
		// A first sync that did not happen leaves no trace but the
		// client's id, which stays so that the server knows the
		// workstation by one id from its first attempt on: in the
		// install folder (which it may have created) only
		// .smartclient/client-id.
		forgetAllButID(root)
	}
	if err == nil && !o.CheckOnly {
		// Trust on first use: the server's key is the one this install
		// came from, and is required from now on.
		if rerr := o.trust().Record(); rerr != nil {
			o.Log.Warn("recording the server's key", "err", rerr)
		}
	}
	if err != nil && !o.CheckOnly && st.FromDisk() && !errors.Is(err, ErrDeclined) && !errors.Is(err, ErrDisabled) {
		// Record the failure for 'status'; the install is untouched.
		st.LastSync, st.LastOutcome, st.LastMessage, st.Server = time.Now().UTC(), "failed", err.Error(), o.Server
		if serr := st.Save(root); serr != nil {
			o.Log.Warn("recording the failed sync", "err", serr)
		}
	}
	if res != nil {
		res.TurnedAway = *o.turnedAway
	}
	return res, err
}

// hello opens a session: it connects, says hello and reads the welcome.
// A server that turns the session away for a while and says when to come
// back (Error.Retry) is tried again then, plus jitter, so that the clients
// it turned away do not all come back in the same second; for up to
// o.RetryFor in all, the last time as it ends (see waitWithin), after
// which its refusal is the error. A connection
// that fails before the welcome (see transportFailure) is tried again
// with backoff for up to o.ConnectRetryFor.
func hello(ctx context.Context, st *state.State, o Options) (*conn, syncproto.Welcome, error) {
	giveUp := o.retryUntil
	if giveUp.IsZero() {
		giveUp = time.Now().Add(o.RetryFor)
	}
	var failing time.Time // when connections began to fail; zero while they do not
	var backoff time.Duration
	for attempt := 1; ; attempt++ {
		c, w, err := session.Open(ctx, o.Server, o.Timeout, o.trust(), helloOf(st, o))
		if err == nil {
			if err := checkServerBuild(w); err != nil {
				c.Close()
				return nil, syncproto.Welcome{}, err
			}
			return c, w, nil
		}
		var wait time.Duration
		if pe, ok := laterRefusal(err, o); ok {
			failing, backoff = time.Time{}, 0
			var last bool
			if wait, last = waitWithin(pe, giveUp); wait <= 0 {
				return nil, w, err
			}
			sayRetry(o, pe, wait, attempt, last)
		} else if o.ConnectRetryFor > 0 && transportFailure(err) {
			if failing.IsZero() {
				failing = time.Now()
			}
			backoff = connectBackoff(backoff)
			wait = max(rand.N(backoff+1), connectRetryMin)
			if tried := time.Since(failing); tried+wait > o.ConnectRetryFor {
				return nil, w, fmt.Errorf("%w (tried %d times over %s)", err, attempt, tried.Round(time.Second))
			}
			fmt.Fprintf(o.Out, "Cannot connect to the update server %s; retrying in %d s.\n", o.Server, secondsOf(wait))
			o.Log.Info("the connection to the server failed; trying again", "server", o.Server, "err", err, "attempt", attempt, "wait", wait)
		} else {
			return nil, w, err
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, w, err
		}
	}
}

// Backoff of the connections that fail: a random wait up to
// connectRetryFirst, doubling to connectRetryMax (full jitter), and never
// less than connectRetryMin.
const (
	connectRetryFirst = time.Second
	connectRetryMax   = 30 * time.Second
	connectRetryMin   = 100 * time.Millisecond
)

// DefaultConnectRetryFor is how long the smartclient command tries a
// server it cannot reach (see Options.ConnectRetryFor): long enough to
// ride out a server's restart or a network's blip at 8 a.m., short enough
// that a user is told of a server that is down.
const DefaultConnectRetryFor = 2 * time.Minute

// connectBackoff is the cap of the next wait after one of prev.
func connectBackoff(prev time.Duration) time.Duration {
	if prev == 0 {
		return connectRetryFirst
	}
	return min(2*prev, connectRetryMax)
}

// laterRefusal returns the server's refusal in err when it is one the
// client waits out (updating, busy, stopping, with a time) and o lets it.
func laterRefusal(err error, o Options) (*syncproto.Error, bool) {
	var pe *syncproto.Error
	if o.RetryFor < 0 || !errors.As(err, &pe) || pe.Retry == 0 || retryWhy[pe.Code] == "" {
		return nil, false
	}
	return pe, true
}

// sayRetry tells the user, on the progress line, that the server turned
// the sync away and when it is tried again.
func sayRetry(o Options, pe *syncproto.Error, wait time.Duration, attempt int, last bool) {
	if o.turnedAway != nil {
		*o.turnedAway++
	}
	fmt.Fprintf(o.Out, "Server %s, retrying in %d s.\n", retryWhy[pe.Code], secondsOf(wait))
	o.Log.Info("the server asks to come back later", "code", pe.Code, "message", pe.Message, "attempt", attempt, "wait", wait,
		"last_attempt", last)
}

// waitWithin is how long to wait before trying again a server that
// turned the sync away with pe: its time plus jitter (see retryWait),
// cut to what is left until giveUp, so that the last attempt is made as
// the time runs out rather than given up for a wait that would outlast
// it; last says it was cut. It is 0 once giveUp has passed: the refusal
// of that last attempt is the sync's error.
func waitWithin(pe *syncproto.Error, giveUp time.Time) (wait time.Duration, last bool) {
	left := time.Until(giveUp)
	if left <= 0 {
		return 0, false
	}
	wait = retryWait(time.Duration(pe.Retry) * time.Second)
	if wait >= left {
		return left, true
	}
	return wait, false
}

// secondsOf is d in whole seconds, rounded up: a user told "1 s" never
// waits longer.
func secondsOf(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }

// atManifest marks an error of the request for the manifest, before the
// sync changed anything: a refusal there is waited out (see
// syncRetrying). It is transparent to errors.Is and errors.As.
type atManifest struct{ error }

func (e atManifest) Unwrap() error { return e.error }

// sleep waits d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("waiting to try the update server again: %w", ctx.Err())
	case <-t.C:
		return nil
	}
}

// syncRetrying makes attempts at the sync while the server turns it away
// at its request for the manifest (a busy server answers there, so that
// a no-op check is never queued; see syncproto's doc): nothing has
// changed in the install then, and the next attempt starts afresh, within
// the sync's RetryFor.
func syncRetrying(ctx context.Context, root *install.Disk, st *state.State, o Options) (*Result, error) {
	for attempt := 1; ; attempt++ {
		res, err := syncWith(ctx, root, st, o)
		var am atManifest
		if !errors.As(err, &am) {
			return res, err
		}
		pe, ok := laterRefusal(err, o)
		if !ok || res != nil {
			return res, err
		}
		wait, last := waitWithin(pe, o.retryUntil)
		if wait <= 0 {
			return res, err
		}
		sayRetry(o, pe, wait, attempt, last)
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// ErrServerBuild marks a server whose build is not a build: it is never
// stored, shown or installed.
var ErrServerBuild = errors.New("smartclient: the server's build is not a build")

// checkServerBuild validates the build a server announces before anything
// stores or shows it: a server with updates disabled may have none.
func checkServerBuild(w syncproto.Welcome) error {
	if w.ServerBuild == "" && !w.UpdatesEnabled {
		return nil
	}
	if _, err := version.Parse(w.ServerBuild); err != nil {
		// The session escaped it already; version's own %q would
		// escape it twice.
		return fmt.Errorf("%w: %s", ErrServerBuild, w.ServerBuild)
	}
	return nil
}

// trust is what the sync trusts of the server (see servertrust): a check
// changes nothing, so it records no server's key.
func (o Options) trust() servertrust.Config {
	t := servertrust.Config{Fingerprint: o.Fingerprint, CAFile: o.CAFile, Plaintext: o.AllowPlaintext,
		KnownFile: filepath.Join(o.Dir, install.MetaDir, servertrust.KnownName), Seen: o.seen}
	if o.CheckOnly {
		t.Unknown = servertrust.Accept
	}
	return t
}

// helloOf is the client's hello.
func helloOf(st *state.State, o Options) syncproto.Hello {
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		dir = o.Dir
	}
	return syncproto.Hello{ClientBuild: st.Build, OS: o.OS, ClientID: st.ClientID, Host: hostName(o), User: userName(o),
		Path: cut(dir, syncproto.MaxPath)}
}

// retryWhy is what the user is told of the codes that are retried.
var retryWhy = map[syncproto.Code]string{
	syncproto.CodeUpdating:     "updating",
	syncproto.CodeBusy:         "busy",
	syncproto.CodeShuttingDown: "stopping",
}

// maxJitter caps the time added to the server's Retry.
const maxJitter = 5 * time.Minute

// retryWait is how long to wait before trying again when the server says
// retry: its time N, plus full jitter, a random time up to N more (at most
// maxJitter), so that the clients a busy server turned away at once come
// back spread over N to 2N and the queue it counted on drains.
func retryWait(retry time.Duration) time.Duration {
	return retry + rand.N(min(retry, maxJitter)+1)
}

// attempt is one attempt at a sync, from the hello to the report: a
// struct whose methods are its steps, in the order run takes them. Sync
// makes a second attempt, without block sums, when a file built from
// them failed its check.
type attempt struct {
	ctx  context.Context
	root *install.Disk
	st   *state.State
	o    Options
	res  *Result

	c    *conn // the session; a report on a session of its own replaces it
	w    syncproto.Welcome
	full bool // the builds are incompatible: every file is fetched
	// awaitRequests is set while the server waits for the requests of
	// the manifest it sent: a report then follows an empty RequestEnd.
	awaitRequests bool

	// The no-op check of the install, under way while the server
	// answers GetManifest (see startCheck).
	get       syncproto.GetManifest
	isIntact  chan state.Checked // nil when no check runs
	found     state.Checked      // what the check found, once it ended
	stopCheck context.CancelFunc
	cache     *manifest.Cache // the kept manifest (see readManifest)

	man *manifest.Manifest
	p   *plan
	// The backup of the install, made beside the plan and the download
	// (see plan and preflight).
	free       space
	bkp        *backup.Job
	backupCtx  context.Context
	stopBackup context.CancelFunc
	deltas     map[int]*fetch.Delta
	// offers are the server's patches from history that the client can
	// use (see fetch.ReadOffers).
	offers fetch.Offers

	// The publisher's signed release (see trust.go): what the client
	// trusts, and what it verified of this release (nil: unsigned).
	trust          trustRecord
	hasTrust       bool
	rel            *releasemeta.Verified
	warnedUnsigned bool
}

// syncWith makes one attempt at a sync of the install folder root, whose
// state is st.
func syncWith(ctx context.Context, root *install.Disk, st *state.State, o Options) (*Result, error) {
	a := &attempt{ctx: ctx, root: root, st: st, o: o}
	var err error
	if a.trust, a.hasTrust, err = readTrust(o.Dir); err != nil {
		return nil, err
	}
	return a.run()
}

// run takes the steps of one sync in turn (see the package
// documentation); an early return is a sync that ends there.
func (a *attempt) run() (res *Result, err error) {
	if err := a.connect(); err != nil {
		return nil, err
	}
	defer a.endSession()
	if !a.w.UpdatesEnabled {
		a.res.Outcome = syncproto.OutcomeUpToDate
		a.report(syncproto.Report{Outcome: syncproto.OutcomeUpToDate, Message: "updates disabled"})
		if err := frozen(a.o.Dir, a.w.Message, time.Now()); err != nil {
			return a.res, err
		}
		return a.res, fmt.Errorf("%w: %s", ErrDisabled, a.w.Message)
	}
	if a.full && !a.o.CheckOnly && !a.o.Yes && (a.o.confirmed == nil || !*a.o.confirmed) {
		if declined, err := a.confirmFull(); err != nil {
			return nil, err
		} else if declined {
			a.res.Outcome = syncproto.OutcomeDeclined
			return a.res, ErrDeclined
		}
	}
	a.startCheck()
	defer a.stopCheck()
	defer a.checked(true)
	// The manifest received is kept once the sync has succeeded: a
	// failed one leaves the install as it was, .smartclient included.
	defer func() { a.cache.Commit(err == nil) }()
	a.o.rep.at(stepManifest)
	if err := a.readManifestBounded(); errors.Is(err, manifest.ErrUpToDate) {
		return a.upToDate(), nil
	} else if err != nil {
		return nil, atManifest{err}
	}
	a.awaitRequests = true
	a.backupCtx, a.stopBackup = context.WithCancel(a.ctx)
	defer a.stopBackup()
	a.o.rep.at(stepPlan)
	if err := a.plan(); err != nil {
		return nil, err
	}
	if a.o.CheckOnly {
		return a.checkOnly()
	}
	a.o.rep.at(stepPreflight)
	if err := a.preflight(); err != nil {
		return nil, err
	}
	a.o.rep.at(stepFetch)
	if err := a.download(); err != nil {
		return a.fail(err)
	}
	a.o.rep.at(stepInstall)
	if err := a.apply(); err != nil {
		return a.fail(err)
	}
	if err := a.recordTrust(trustInstalled); err != nil {
		// The switch is done: the record is written again by the next
		// sync that verifies this release.
		a.o.Log.Warn("recording the installed release", "err", err)
	}
	a.res.Outcome = syncproto.OutcomeUpToDate
	if !a.p.empty() {
		a.res.Outcome = syncproto.OutcomeUpdated
	}
	a.report(syncproto.Report{Outcome: a.res.Outcome, Files: uint32(a.res.Fetched), Bytes: uint64(a.res.WireBytes)})
	a.res.Received, a.res.Sent = a.c.Received(), a.c.Sent()
	return a.res, nil
}

// connect opens the session and reads the server's welcome.
func (a *attempt) connect() error {
	a.o.rep.at(stepConnect)
	c, w, err := hello(a.ctx, a.st, a.o)
	if err != nil {
		return err
	}
	a.c, a.w, a.full = c, w, !w.Compatible
	if a.o.AllowPlaintext {
		fmt.Fprintf(a.o.Out, "Warning: connected to %s over plain TCP (smartclient.ini [SSL] AllowPlaintext=1): anyone on the network can read and change what is sent.\n", a.o.Server)
		a.o.Log.Warn("connected without TLS", "server", a.o.Server)
	}
	a.renewID()
	a.sendEarlier()
	a.res = &Result{Build: w.ServerBuild, Compatible: w.Compatible, Message: w.Message, Installed: a.st.Build}
	a.o.Log.Info("connected", "server", a.o.Server, "server_build", w.ServerBuild, "installed_build", a.st.Build,
		"compatible", w.Compatible, "updates", w.UpdatesEnabled)
	return nil
}

// endSession closes the session, or hands it to 'run': a session that
// ended well may stay open, whatever the sync's outcome, so that the
// server can warn the user.
func (a *attempt) endSession() {
	if a.o.keep != nil && a.c.Acked() && a.c.Stay(a.o.Log) {
		a.o.keep(a.c)
		return
	}
	a.c.Close()
}

// report tells the server how the sync ended.
//
// Where the server waits for the requests of the manifest it sent, an
// empty RequestEnd goes first. A report the server does not take is kept
// for the next session (see report.go).
func (a *attempt) report(r syncproto.Report) {
	r.Build = a.st.Build
	if !a.c.OutOfStep() {
		if a.awaitRequests {
			a.awaitRequests = false
			if err := fetch.Request(a.c, nil, nil); err != nil {
				a.o.Log.Info("ending the requests before the report", "err", err)
			}
		}
		a.o.rep.deliver(a.c, r)
		return
	}
	r = a.o.rep.fill(r)
	// What the server still sends on c could take long to read (the
	// rest of a 1 GB transfer that a full disk cut short): c goes, and
	// the report takes a session of its own.
	a.c.Close()
	ro := a.o
	ro.Timeout = min(a.o.Timeout, session.ReportTimeout)
	rc, _, err := session.Open(a.ctx, ro.Server, ro.Timeout, ro.trust(), helloOf(a.st, ro))
	if err != nil {
		a.o.Log.Info("could not report the outcome to the server", "err", err)
		a.o.rep.keep(r)
		return
	}
	rc.SetTimeout(a.o.Timeout)
	a.o.rep.deliver(rc, r)
	a.c = rc // closed when the sync ends, or kept by 'run' as c would be
}

// confirmFull asks whether to go ahead with a full update, and opens a
// new session if so: a person may take longer to answer than the server
// waits, so the session that asked was closed.
func (a *attempt) confirmFull() (declined bool, err error) {
	a.o.rep.at(stepConfirm)
	ok, err := confirm(a.ctx, a.c, a.o, a.w, a.st.Build)
	if err != nil || !ok {
		return !ok, err
	}
	if a.o.confirmed != nil {
		// The answer holds for the rest of the sync: a retry after the
		// server said busy does not ask again.
		*a.o.confirmed = true
	}
	a.o.rep.at(stepConnect)
	c, w, err := hello(a.ctx, a.st, a.o)
	if err != nil {
		// A failed hello opens no session; a.c keeps the first one
		// (closed by confirm) for endSession.
		return false, err
	}
	a.c, a.w = c, w
	a.renewID()
	a.sendEarlier()
	a.full = !w.Compatible
	a.res.Build, a.res.Compatible = w.ServerBuild, w.Compatible
	return false, nil
}

// startCheck starts the no-op check when the state names the manifest
// the install came from: the digest goes out at once, and the install is
// checked while the server answers. An "up to date" needs the check's
// result, and a manifest's plan uses what it found.
func (a *attempt) startCheck() {
	if wantRaw(a.o.Compress, a.c.RemoteAddr()) {
		a.get.Flags |= syncproto.GetRaw
	}
	var checkCtx context.Context
	checkCtx, a.stopCheck = context.WithCancel(a.ctx)
	if have, err := hex.DecodeString(a.st.Manifest); err == nil && len(have) == len(a.get.Have) && !a.full {
		copy(a.get.Have[:], have)
		a.isIntact = make(chan state.Checked, 1)
		files := a.st.Encoded()
		go func() { a.isIntact <- state.Check(checkCtx, a.root.Root, files) }()
	}
}

// checked waits for the check, so that nothing looks at the install
// behind the sync's back, and returns what it found; stop cancels it
// first.
func (a *attempt) checked(stop bool) state.Checked {
	if a.isIntact != nil {
		if stop {
			a.stopCheck()
		}
		a.found = <-a.isIntact
		a.isIntact = nil
	}
	return a.found
}

// askManifest sends GetManifest and reads the manifest, or the server's
// "up to date" (manifest.ErrUpToDate). The manifest kept from the last
// one received, if any, names its entries so that only the others are
// sent (see manifest.Cache).
func (a *attempt) askManifest() (*manifest.Manifest, error) {
	a.cache.Commit(false)
	a.cache = manifest.OpenCache(a.root.Root, !a.o.CheckOnly, a.o.Log)
	a.get.Flags &^= syncproto.GetSketch
	if a.cache.Sketching() {
		a.get.Flags |= syncproto.GetSketch
	}
	// The server follows the manifest with the patches it holds from
	// older releases (syncproto's doc, "Patches from history").
	a.get.Flags |= syncproto.GetPatches
	// And it sends the manifest's entries compressed (syncproto's doc,
	// "Manifests compressed").
	a.get.Flags |= syncproto.GetZManifest
	if err := a.c.Send(a.get); err != nil {
		a.cache.Close()
		return nil, fmt.Errorf("asking for the manifest: %w", err)
	}
	src, err := a.verifyRelease()
	if err != nil {
		a.cache.Close()
		return nil, err
	}
	// The count is at most syncproto.MaxFiles; a hostile one makes the
	// collector lazier, no worse.
	man, err := manifest.Read(src, manifest.Options{Cache: a.cache, Send: a.c.Send, Count: sizeMemory, Compressed: true})
	if err == nil {
		// The offers are kept only for the files the state records
		// (see fetch.ReadOffers): its files are needed now, not at the
		// plan. A state that cannot be read keeps none, and fails the
		// plan.
		a.st.LoadFiles()
		a.offers, err = fetch.ReadOffers(a.c, man, a.st)
	}
	if err == nil {
		err = a.checkRelease(man)
	}
	return man, err
}

// readManifest gets the manifest, unless the install is as the current
// manifest says (manifest.ErrUpToDate); the check has ended either way.
func (a *attempt) readManifest() error {
	named := a.isIntact != nil
	man, err := a.askManifest()
	switch {
	case errors.Is(err, manifest.ErrUpToDate):
		if !named {
			// A server that says "up to date" to a client that
			// named no manifest is lying.
			return fmt.Errorf("reading manifest: the server says the install is up to date, but the client named no manifest: %w", syncproto.ErrUnexpected)
		}
		// Waiting for the check is right here: only a finished check
		// can say the install is intact (a cancelled one says no).
		if !a.checked(false).OK || !a.installedCurrent() {
			// The release has not changed, but the install has: the
			// manifest after all, to repair it. Or the release is
			// signed and the client did not record installing it: the
			// manifest, to check it against the signed digest.
			a.get.Have = [32]byte{}
			if man, err = a.askManifest(); errors.Is(err, manifest.ErrUpToDate) {
				return fmt.Errorf("reading manifest: the server says the install is up to date, but the client named no manifest: %w", syncproto.ErrUnexpected)
			}
		}
	case err == nil:
		// A manifest came: the check finishes, and the plan looks up
		// only the files it did not find as recorded.
		a.checked(false)
	default:
		a.checked(true)
	}
	a.man = man
	return err
}

// upToDate ends a sync whose install is as the current manifest says:
// nothing to do, nothing to write but the time of the check.
func (a *attempt) upToDate() *Result {
	a.res.Outcome = syncproto.OutcomeUpToDate
	if a.o.CheckOnly {
		a.res.Outcome = syncproto.OutcomeChecked
	} else {
		// Two records, each worth keeping without the other.
		if err := recordCheck(a.root.Root, lastCheck{When: time.Now().UTC(), Server: a.o.Server, Build: a.st.Build}); err != nil {
			a.o.Log.Info("recording the time of the check", "err", err)
		}
		// The server says the install holds the current release, and
		// readManifest checked that it is the signed one recorded.
		if err := a.recordTrust(trustConfirmed); err != nil {
			a.o.Log.Warn("recording the trusted publisher", "err", err)
		}
	}
	a.report(syncproto.Report{Outcome: a.res.Outcome})
	a.res.Received, a.res.Sent = a.c.Received(), a.c.Sent()
	return a.res
}

// plan compares the manifest with the install. A manifest came: the
// release is not what the install holds. The backup of the install
// starts now, beside the plan, the checks and the download: it only reads
// the install and writes .smartclient/bkp_new, which nothing else
// touches, and it is not used before the switch. The free space is
// measured first, as it was before the backup took some. Where the file
// system cannot link, the backup copies every file: it waits for the
// checks (see preflight).
func (a *attempt) plan() error {
	if !a.o.CheckOnly {
		a.free = measureSpace(a.root)
		if a.free.links {
			a.bkp = backup.Start(a.backupCtx, a.root)
		}
	}
	if err := a.st.LoadFiles(); err != nil {
		a.dropBackup()
		return fmt.Errorf("reading client state: %w", err)
	}
	p, err := makePlan(a.root.Root, a.st, a.man, a.full, a.found.Same(), a.o.Log)
	a.found = state.Checked{}
	// Nothing reads the encoded files any more: their mapping goes now,
	// rather than count in the memory of the whole download.
	a.st.Release()
	if err != nil {
		a.dropBackup()
		return err
	}
	if !p.changesContent() {
		// Only times to set, or files to remove: the switch replaces
		// no content and keeps no backup.
		a.dropBackup()
	}
	a.p = p
	a.res.Touched, a.res.Removed, a.res.Kept, a.res.Folders = len(p.touch), len(p.remove), len(p.kept), len(p.dirs)
	return nil
}

// dropBackup stops a backup that the sync will not use and removes what
// it made: no journal exists before the switch, so nothing needs it as a
// snapshot.
func (a *attempt) dropBackup() {
	if a.bkp == nil {
		return
	}
	a.stopBackup()
	a.bkp.Wait()
	a.bkp = nil
	if err := a.root.RemoveAll(install.NewBackupDir); err != nil {
		a.o.Log.Warn("removing an unused backup", "folder", install.NewBackupDir, "err", err)
	}
}

// checkOnly ends a sync that only says whether an update is available.
func (a *attempt) checkOnly() (*Result, error) {
	a.res.Outcome = syncproto.OutcomeChecked
	a.res.Fetched, a.res.FetchedBytes = len(a.p.fetch), a.p.fetchBytes
	a.res.Linked = len(a.p.links)
	if a.o.List {
		a.res.Planned = a.p.changes(a.man)
		// A file the sync would ask for as a patch is listed so.
		patch := map[string]bool{}
		for _, i := range a.p.fetch {
			if fetch.PatchPlanned(a.root, a.st, a.man, i, a.offers) {
				patch[a.man.File(i).Path] = true
			}
		}
		for k, c := range a.res.Planned {
			if c.Kind == "fetch" && patch[c.Path] {
				a.res.Planned[k].Kind = "patch"
			}
		}
	}
	a.awaitRequests = false
	if err := fetch.Request(a.c, nil, nil); err != nil {
		return nil, fmt.Errorf("ending the check: %w", err)
	}
	a.report(syncproto.Report{Outcome: syncproto.OutcomeChecked})
	a.res.Received, a.res.Sent = a.c.Received(), a.c.Sent()
	return a.res, nil
}

// preflight checks that the update can be applied here, and chooses the
// deltas: both only read the install, so both at once. The backup starts
// now if it waited for the checks.
func (a *attempt) preflight() error {
	pre := make(chan error, 1)
	go func() { pre <- preflight(a.root, a.man, a.p, a.free) }()
	// Files the last attempt left whole are taken out of the deltas
	// when they are moved back to staging (see download).
	a.deltas = fetch.PlanDeltas(a.root, a.st, a.man, a.p.fetch, a.offers, !a.o.noBlocks, a.o.Log)
	if err := <-pre; err != nil {
		a.dropBackup()
		a.report(syncproto.Report{Outcome: syncproto.OutcomeFailed, Message: err.Error()})
		return err
	}
	if a.bkp == nil && a.p.changesContent() {
		a.bkp = backup.Start(a.backupCtx, a.root)
	}
	return nil
}

// download fetches what the plan fetches into staging, less what the
// last attempt received whole, and makes the links and empty folders.
func (a *attempt) download() error {
	download, reused, reusedBytes := fetch.ReuseDownloads(a.root, a.man, a.p.fetch)
	a.res.Reused = reused
	if reused > 0 {
		keep := make(map[int]bool, len(download))
		for _, i := range download {
			keep[i] = true
		}
		maps.DeleteFunc(a.deltas, func(i int, _ *fetch.Delta) bool { return !keep[i] })
	}
	a.awaitRequests = false
	if err := fetch.Request(a.c, download, a.deltas); err != nil {
		// Files reused from the last attempt are in staging now: fail
		// keeps them for the next one.
		a.c.SetOutOfStep()
		return fmt.Errorf("requesting files: %w", err)
	}
	a.o.Progress.Start(len(download), a.p.fetchBytes-reusedBytes)
	guard := startGuard(boundsOf(a.o, a.p.fetchBytes-reusedBytes), a.c.Interrupt)
	fe := fetch.New(a.c, a.root, a.man, a.deltas, guardedProgress{a.o.Progress, guard}, a.o.Log)
	err := a.endGuard(guard, fe.Fetch(a.ctx, download), "receiving files")
	a.o.Progress.Finish()
	if err != nil {
		a.c.SetOutOfStep()
		var pe *syncproto.Error
		if errors.As(err, &pe) {
			err = fmt.Errorf("the server stopped the transfer: %w", err)
		}
		return err
	}
	a.res.Fetched, a.res.FetchedBytes, a.res.WireBytes, a.res.Copied = len(download), a.p.fetchBytes-reusedBytes, fe.Wire(), fe.Copied()
	a.res.Patched = fe.Patched()
	if err := fetch.StageLinks(a.root, a.man, a.p.links); err != nil {
		return err
	}
	return fetch.StageDirs(a.root, a.man, a.p.dirs)
}

// apply backs up and switches: every file is staged and verified, and
// only now is the install touched, after a last chance to stop. Once the
// switch is committed the update stands.
func (a *attempt) apply() error {
	if err := a.ctx.Err(); err != nil {
		return err
	}
	p, man := a.p, a.man
	j := &journal.Journal{Remove: p.remove, State: nextState(a.st, man, p, a.o)}
	p.known = nil // in the new state now
	if p.changesContent() {
		var err error
		a.o.rep.at(stepBackup)
		if j.Backup, err = a.bkp.Wait(); err != nil {
			return err
		}
		a.o.rep.at(stepInstall)
		if path, timeout := man.PostInstall(); path != "" {
			j.PostInstall = &journal.PostInstallStep{Path: path, Timeout: timeout}
		}
	}
	installs := p.installs()
	j.Install, j.Hashes = make([]string, 0, len(installs)), make(map[string]string, len(installs))
	for _, i := range installs {
		f := man.File(i)
		j.Install = append(j.Install, f.Path)
		// A file's hash is the string its new state holds already: a
		// cold sync of 20,000 files would otherwise spell each again
		// when memory peaks, as the journal is written.
		if k, ok := j.State.Files[f.Path]; ok && f.Target == "" {
			j.Hashes[f.Path] = k.Hash
		} else {
			j.Hashes[f.Path] = installHash(f)
		}
	}
	for _, i := range p.touch {
		j.Touch = append(j.Touch, journal.TouchStep{Path: man.File(i).Path, MtimeNs: man.File(i).MtimeNs})
	}
	if err := journal.Commit(a.ctx, a.root, j, a.o.Log); err != nil {
		return fmt.Errorf("applying the update: %w", err)
	}
	if j.Backup {
		a.res.Backup = backup.Newest(a.root)
	}
	*a.st = *j.State
	fetch.PruneLists(a.root, a.st)
	return nil
}

// fail ends a sync that failed once the plan was made.
func (a *attempt) fail(err error) (*Result, error) {
	// The backup is of no use now: it stops, and journal.Tidy removes
	// what it made.
	a.stopBackup()
	a.bkp.Wait()
	// A lost connection, or the server's own final word, leaves nobody
	// to report to.
	var pe *syncproto.Error
	if !lostConnection(err) && !errors.As(err, &pe) && a.ctx.Err() == nil {
		a.report(syncproto.Report{Outcome: syncproto.OutcomeFailed, Step: stepOf(a.o.rep.stepNow(), err), Message: err.Error()})
	}
	if !a.root.Exists(journal.File) {
		// Nothing of the update is in the install. What was received
		// and verified is kept for the next sync; a kept journal keeps
		// its staged files for the next start to finish or undo.
		fetch.KeepForResume(a.root, a.o.Log)
		journal.Tidy(a.root, a.o.Log)
	}
	return nil, err
}

// confirm asks whether to go ahead with a full update. The session is
// told the answer and closed first when the answer is no.
func confirm(ctx context.Context, c *conn, o Options, w syncproto.Welcome, installed string) (bool, error) {
	if o.Confirm == nil {
		if installed == "" {
			fmt.Fprintf(o.Out, "No build installed yet; not installing build %s without a terminal to ask on: run with --yes to accept.\n", w.ServerBuild)
		} else {
			fmt.Fprintf(o.Out, "SmartClient and AppServer builds are incompatible (%s); not updating without a terminal to ask on: run with --yes to accept.\n", w.Message)
		}
		o.rep.deliver(c, syncproto.Report{Outcome: syncproto.OutcomeDeclined, Build: installed, Message: "no terminal to ask on"})
		return false, nil
	}
	c.Close()
	// The answer is read aside so that an interrupt is not held up by a
	// prompt nobody answers.
	type answer struct {
		ok  bool
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		q := IncompatiblePrompt
		if installed == "" {
			q = firstInstallPrompt(w.ServerBuild)
		}
		ok, err := o.Confirm(q)
		ch <- answer{ok, err}
	}()
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case a := <-ch:
		if a.err != nil {
			return false, fmt.Errorf("asking to update: %w", a.err)
		}
		return a.ok, nil
	}
}

// installHash is what recovery checks a file to install against: its
// BLAKE3, for a link its target, and for an empty folder state.DirHash.
func installHash(f manifest.File) string {
	if f.Dir {
		return state.DirHash
	}
	if f.Target != "" {
		return journal.LinkPrefix + f.Target
	}
	return hex.EncodeToString(f.Hash[:])
}

// nextState is the state after the plan is applied: every listed file
// the client installed or found identical, with its server hash. The
// mtimes of fetched and retimed files are filled in from the disk once
// they are in place.
func nextState(st *state.State, man *manifest.Manifest, p *plan, o Options) *state.State {
	next := &state.State{
		Version: state.Version, ClientID: st.ClientID, Build: man.Build(), OS: o.OS, Server: o.Server,
		LastSync: time.Now().UTC(), LastOutcome: "updated", Files: make(map[string]state.FileState, man.Len()),
	}
	if p.empty() {
		next.LastOutcome = "up-to-date"
	}
	defer func() {
		// Only a state that records every listed file can vouch for
		// the whole manifest in the next no-op check.
		if len(next.Files) == man.Len() {
			digest := man.Digest()
			next.Manifest = hex.EncodeToString(digest[:])
		}
	}()
	for _, i := range slices.Concat(p.installs(), p.touch) {
		f := man.File(i)
		if f.Dir {
			next.Files[f.Path] = state.FileState{Hash: state.DirHash}
			continue
		}
		next.Files[f.Path] = state.FileState{Size: f.Size, MtimeNs: f.MtimeNs, Hash: hex.EncodeToString(f.Hash[:]),
			ServerMtimeNs: f.MtimeNs, Preserve: f.Preserve}
	}
	for _, i := range p.current {
		f := man.File(i)
		k := p.known[f.Path]
		k.Preserve = f.Preserve
		next.Files[f.Path] = k
	}
	// A preserved file the user kept stays recorded only if an earlier
	// sync installed it; it is the workstation's own now.
	for _, i := range p.kept {
		if k, ok := st.Files[man.File(i).Path]; ok {
			k.Preserve = true
			next.Files[man.File(i).Path] = k
		}
	}
	return next
}
