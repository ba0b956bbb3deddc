package appserver

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/certs"
	"github.com/erpupdate/smartsync/appserver/internal/clientdb"
	"github.com/erpupdate/smartsync/appserver/internal/console"
	"github.com/erpupdate/smartsync/appserver/internal/handover"
	"github.com/erpupdate/smartsync/appserver/internal/index"
	"github.com/erpupdate/smartsync/appserver/internal/releases"
	"github.com/erpupdate/smartsync/appserver/internal/throttle"
	"github.com/erpupdate/smartsync/internal/cdc"
	"github.com/erpupdate/smartsync/internal/version"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"
)

// Server serves the update folders of one AppServer.ini.
type Server struct {
	// cur is what the server serves: its configuration and the index of
	// each update folder, swapped whole by Reload (see reload.go). Read
	// it with conf, or hold it (see hold) for a session.
	cur   atomic.Pointer[serving]
	log   *slog.Logger
	state string // the state folder
	// reloadMu serialises reloads; proc is what a reload changes in the
	// process (nil unless RunServer runs the server).
	reloadMu sync.Mutex
	proc     *procHooks

	// id is the server's TLS identity, and tlsConfig the configuration
	// every TLS session is served with (see secure).
	id        *certs.Identity
	tlsConfig *tls.Config

	// Deadlines. A client gets HandshakeTimeout to say hello, IdleTimeout
	// between messages, and WriteTimeout for every chunk it is sent (a
	// client that stops reading is dropped). Grace is how long transfers
	// may run on after shutdown begins.
	HandshakeTimeout time.Duration
	IdleTimeout      time.Duration
	WriteTimeout     time.Duration
	Grace            time.Duration

	// Limits, from [LIMITS] (see LimitsConfig and limits.go), read when
	// Serve starts. MaxConnections and MaxPerAddress cap the connections
	// held in total and from one client address; MaxStaySessions caps the
	// sessions kept open by Stay; Heartbeat is how often a staying session
	// is sent a heartbeat.
	MaxConnections  int
	MaxPerAddress   int
	MaxStaySessions int
	Heartbeat       time.Duration
	limits          *limits // set by Serve, with mu held

	// Admission of transfers, from [UPDATE] (see admission.go), read
	// when Serve starts. MaxTransfers is the transfers under way at once
	// (0: defaultMaxTransfers; fewer where MaxBytesPerSecond would give
	// each less than minSlotBytesPerSecond); TransferWait how long a
	// session waits for a slot before it is told busy; MaxBytesPerSecond
	// and MaxClientBytesPerSecond limit the bytes sent a second by the
	// whole server and by one session (0: no limit).
	MaxTransfers            int
	TransferWait            time.Duration
	MaxBytesPerSecond       int64
	MaxClientBytesPerSecond int64
	// The bounds of a session that holds a transfer slot. Its writes
	// must average TransferMinRate bytes a second over each
	// TransferRateWindow of the time spent writing (see watchProgress),
	// and it waits RequestWait in all for the client's messages (its
	// requests); past either, the session is closed and the slot goes to
	// the next client. 0 or less: no such bound.
	TransferMinRate    int64
	TransferRateWindow time.Duration
	RequestWait        time.Duration
	transfers          *transfers // set by Serve and Reload, with mu held (see admission)

	draining atomic.Bool
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	admins   map[net.Conn]bool // administrators' sessions, kept open through a countdown
	chunks   *index.ChunkCache
	signed   signedReleases // the folders' signed releases (see signed.go)
	pub      *published     // the published releases (see published.go)
	patches  *patcher       // patches from history (see patches.go)
	rollouts *rollouts      // staged rollouts (see rollout.go)
	metrics  *metrics       // the Prometheus metrics (see metrics.go)
	// records is the client records while Serve runs (see records.go),
	// nil otherwise.
	records atomic.Pointer[clientdb.DB]
	// recordsOptions tune the client records (tests: a quick retry).
	recordsOptions clientdb.Options
	// console is the web console once made (its logins end when
	// [ADMIN] changes).
	console atomic.Pointer[console.Console]
	// consoleAddr is where the web console listens, once it does.
	consoleAddr atomic.Value // string

	self       Self
	upd        *updater
	feed       *feedChecker // the vendor's release feed (see feed.go)
	logins     throttle.Logins
	tokens     adminTokens   // administrators' session tokens (see adminsession.go)
	stopping   chan struct{} // closed when the server begins to stop
	stopOnce   sync.Once
	stopServe  context.CancelFunc
	handedOver atomic.Bool
	ids        identities // the host each client id was seen from (see checkIdentity)
	// outcomes is handed the outcome of every sync (see outcome.go):
	// recordSync, the client records, unless a test says otherwise; nil:
	// none. cuts are the sessions cut without a report.
	outcomes func(outcomeRecord)
	cuts     outcomeCuts
	// reports are the ids of the latest reports taken (see
	// recentReports).
	reports recentReports
}

// SetSelf tells the server about its own installation, which a
// self-update replaces (Run does it from the command line).
func (s *Server) SetSelf(self Self) {
	s.self = self
	if self.StateDir != "" {
		s.upd.dir = filepath.Join(self.StateDir, "selfupdate")
	}
}

// HandedOver reports whether the server stopped to let the update helper
// switch its installation.
func (s *Server) HandedOver() bool { return s.handedOver.Load() }

// handoff stops serving for the switch of a self-update.
func (s *Server) handoff() {
	s.handedOver.Store(true)
	s.mu.Lock()
	stop := s.stopServe
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
}

func (s *Server) beginStopping() {
	s.stopOnce.Do(func() {
		close(s.stopping)
		s.upd.wakeStayers()
	})
}

// New validates the update folders of cfg and indexes each one, using and
// refreshing the hash caches in stateDir.
func New(ctx context.Context, log *slog.Logger, cfg *Config, stateDir string) (*Server, error) {
	s := &Server{
		log: log, state: stateDir,
		HandshakeTimeout:        cmp.Or(cfg.Limits.HelloTimeout, defaultHelloTimeout),
		IdleTimeout:             cmp.Or(cfg.Limits.IdleTimeout, defaultIdleTimeout),
		WriteTimeout:            cmp.Or(cfg.Limits.WriteTimeout, defaultWriteTimeout),
		Grace:                   30 * time.Second,
		MaxConnections:          cfg.Limits.MaxConnections,
		MaxPerAddress:           cfg.Limits.MaxPerAddress,
		MaxStaySessions:         cfg.Limits.MaxStaySessions,
		Heartbeat:               cfg.Limits.Heartbeat,
		MaxTransfers:            cfg.MaxTransfers,
		TransferWait:            defaultTransferWait,
		MaxBytesPerSecond:       cfg.MaxBytesPerSecond,
		MaxClientBytesPerSecond: cfg.MaxClientBytesPerSecond,
		TransferMinRate:         defaultTransferMinRate,
		TransferRateWindow:      defaultTransferRateWindow,
		RequestWait:             defaultRequestWait,
		conns:                   map[net.Conn]struct{}{},
		admins:                  map[net.Conn]bool{},
		chunks:                  index.NewChunkCache(stateDir, log),
		pub:                     &published{store: releases.At(stateDir)},
		stopping:                make(chan struct{}),
	}
	s.patches = newPatcher(s.pub.store, log)
	s.rollouts = newRollouts(stateDir, log, cfg.Rollout.Policy(), nil)
	s.rollouts.mail = s.mailAdmin
	if cfg.Limits.MaxConnections == 0 { // a Config not made by ParseConfig
		s.MaxConnections, s.MaxPerAddress = defaultMaxConnections, defaultMaxPerAddress
		s.MaxStaySessions, s.Heartbeat = defaultMaxStaySessions, defaultHeartbeat
	}
	s.upd = newUpdater(s)
	s.feed = &feedChecker{s: s, kick: make(chan struct{}, 1)}
	s.metrics = newMetrics(s)
	s.SetClientCounts(s.clientCounts)
	s.outcomes = s.recordSync
	if abs, err := filepath.Abs(stateDir); err == nil {
		s.upd.dir = filepath.Join(abs, "selfupdate")
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating state folder: %w", err)
	}
	id, err := certs.Open(log, cfg.TLS.CertFile, cfg.TLS.KeyFile, stateDir)
	if err != nil {
		return nil, err
	}
	s.id, s.tlsConfig = id, id.TLSConfig()
	if id.Made() {
		cert, _ := id.Files()
		log.Info("made the server's TLS key and self-signed certificate; clients trust it on first use, or pin it with [SSL] Fingerprint in smartclient.ini", "fingerprint", id.Fingerprint(), "certificate", cert)
	}
	sv, err := s.openServing(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	s.cur.Store(sv)
	return s, nil
}

// Fingerprint returns the fingerprint of the server's TLS key, which
// clients pin.
func (s *Server) Fingerprint() string { return s.id.Fingerprint() }

// Indexes returns the index of every served OS folder, by OS name, under
// the configuration now in force.
func (s *Server) Indexes() map[string]*index.Index { return s.cur.Load().indexes }

// Close releases the update folders.
func (s *Server) Close() error {
	s.pub.close()
	for _, ix := range s.cur.Load().indexes {
		ix.Close()
	}
	return nil
}

// Serve accepts connections on ln until ctx is cancelled, or ln fails
// for good (its error is returned then; see maxOddAcceptErrors), then
// stops accepting, lets running sessions finish for up to Grace, closes
// the rest and returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	// hard ends every session: it is cancelled after the grace period.
	hard, stopHard := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHard()
	// A self-update's handoff stops the server as a signal would.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	s.stopServe = cancel
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		s.draining.Store(true)
		s.beginStopping()
		ln.Close()
	})
	defer stop()
	s.upd.start(ctx)
	s.feed.start(ctx)
	// The published releases are loaded now, and looked for every 2 s,
	// rather than at the next client only, so that the log says at once
	// what a publish changed and their patches are made before clients
	// come. The first look is made before a client is let in, so that
	// none is served the folder while the published release loads.
	s.lookPublished(ctx)
	s.wg.Go(func() { s.watchPublished(ctx, 2*time.Second) })
	s.wg.Go(func() { s.patches.run(ctx) })
	records := s.openRecords(ctx)
	s.wg.Go(func() { s.rememberReports(ctx, records) })
	s.wg.Go(func() {
		s.rollouts.serveRequests(ctx, func() []string { return slices.Sorted(maps.Keys(s.Indexes())) })
		s.rollouts.flush()
	})
	s.mu.Lock()
	s.limits = newLimits(s.log, s.MaxConnections, s.MaxPerAddress)
	s.transfers = newTransfers(s.log, s.MaxTransfers, s.TransferWait, s.MaxBytesPerSecond, s.MaxClientBytesPerSecond)
	t, serverBPS, clientBPS := s.transfers, s.MaxBytesPerSecond, s.MaxClientBytesPerSecond
	s.mu.Unlock()
	cfg := s.conf()
	s.log.Info("listening", "addr", ln.Addr().String(), "build", cfg.Build.String(), "updates", cfg.Enable,
		"tls_fingerprint", s.id.Fingerprint(), "plaintext_allowed", cfg.TLS.AllowPlaintext,
		"max_transfers", t.max, "max_transfers_set", t.configured,
		"max_bytes_per_second", serverBPS, "max_client_bytes_per_second", clientBPS)
	t.logFewer(s.log, serverBPS)
	var acceptErr error
	var retries acceptRetries
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				// Out of descriptors or memory: the sessions held end
				// and give them back. Running out slows the server
				// down; it never stops it. An error not known to pass
				// (Wine's AcceptEx has failed once with "Overlapped
				// I/O incomplete") is given a few tries too.
				wait, logIt, ok := retries.after(err)
				if ok {
					if logIt {
						s.log.Warn("accepting connections failed; trying again", "err", err, "retry_in", wait,
							"odd_errors", retries.odd, "odd_errors_tried", maxOddAcceptErrors)
					}
					select {
					case <-time.After(wait):
					case <-ctx.Done():
					}
					continue
				}
				acceptErr = fmt.Errorf("accepting connections (%d tries): %w", retries.odd, err)
			} else if ctx.Err() == nil {
				acceptErr = fmt.Errorf("accepting connections: %w", err)
			}
			break
		}
		retries.accepted()
		s.track(conn, true)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.track(conn, false)
			s.serveConn(hard, conn)
		}()
	}
	// The loop ends with ctx, or with an Accept that failed for good:
	// then too the server's own goroutines (the watch of the published
	// releases, the patches, the rollout requests) must end, or Serve
	// would wait for them forever, serving nothing.
	cancel()
	s.draining.Store(true)
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.Grace):
		s.log.Warn("grace period over; closing remaining sessions", "grace", s.Grace)
		stopHard()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		<-done
	}
	// An update's goroutine ends with the server's context (and has
	// handed over, if it got that far).
	s.upd.running.Wait()
	// An outcome mail already on its way is let go (it has its own
	// timeout), so that a stop does not lose it.
	s.upd.mails.Wait()
	s.feed.running.Wait()
	s.closeRecords(records)
	s.log.Info("stopped")
	return acceptErr
}

func (s *Server) track(c net.Conn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
		delete(s.admins, c)
	}
}

// helloBufferSize is the size of a session's buffers until its hello is
// accepted: a hello, an AdminKey or an Error fits, and a larger frame is
// read through it all the same.
const helloBufferSize = 512

// session is the state of one client connection, kept for its log line.
type session struct {
	// lateReports counts the reports of earlier syncs the session sent.
	lateReports int
	conn        net.Conn // TLS, or plain where allowed
	raw         net.Conn // the TCP connection under conn, as the server tracks it
	r           *syncproto.Reader
	w           *syncproto.Writer
	hello       syncproto.Hello
	outcome     string
	files       int
	fileByte    int64
	patched     int // files sent as patches
	// release is the published release the session was served (of
	// build releaseBuild), 0 for an update folder; its report counts for
	// it in a staged rollout when the session fetched files.
	release      uint64
	releaseBuild string
	fetched      bool
	// offers are the patches offered with the manifest, by index and
	// base; nil when none were (the client did not ask).
	offers *manifestOffers
	// folders opens the files this session sends (see sendFolders).
	folders *sendFolders
	// blockData holds the file being sent as a block delta.
	blockData []byte
	// adminOnly marks a session let in over a cap on the reserve kept
	// for administrators (see admission).
	adminOnly bool
	// transfer gives back the session's transfer slot (see
	// admission.go); nil when it holds none.
	transfer func()
	// tc limits and meters the session's writes while it holds a slot.
	tc *transferConn
	// transfers are the transfer slots and limits the session takes
	// from: those in force when it was accepted (see Reload).
	transfers *transfers
	// stopWatch ends the watch of the slot's progress floor; nil when
	// none runs. readLeft is what is left of RequestWait, the time the
	// session may wait for the client's messages while it holds a slot.
	stopWatch func()
	readLeft  time.Duration
	// takenBack is why the server closed the session to take its slot
	// back (see takeBack); nil when it did not.
	takenBack atomic.Pointer[syncproto.Error]
}

// startTransfer gives the session the slot release stands for: its
// writes are limited and metered, and held to the progress floor.
func (s *Server) startTransfer(ss *session, release func()) {
	ss.transfer = release
	ss.readLeft = s.RequestWait
	m := ss.tc.start(ss.transfers)
	if s.TransferMinRate > 0 && s.TransferRateWindow > 0 {
		ss.stopWatch = watchProgress(m, s.TransferMinRate, s.TransferRateWindow, func(sent int64, over time.Duration) {
			rate := int64(float64(sent) / over.Seconds())
			s.takeBack(ss, fmt.Sprintf("the client took %d bytes in the last %s the server spent writing to it (%d bytes/s), below the %d bytes/s a transfer slot must keep",
				sent, over.Round(time.Millisecond), rate, s.TransferMinRate),
				"sent", sent, "over", over.Round(time.Millisecond), "bytes_per_second", rate, "min_bytes_per_second", s.TransferMinRate)
			// The session is stuck in a write the client does not
			// take: closing is what ends it.
			ss.raw.Close()
		})
	}
}

// endTransfer gives back the session's transfer slot, if it holds one.
func (s *Server) endTransfer(ss *session) {
	if ss.transfer == nil {
		return
	}
	if ss.stopWatch != nil {
		ss.stopWatch()
		ss.stopWatch = nil
	}
	ss.tc.end()
	ss.transfer()
	ss.transfer = nil
}

// takeBack closes a session that holds a transfer slot without making
// progress, so that the slot goes to the next client, and logs who it
// was and why. It is safe to call from another goroutine than the
// session's (the watch of the floor); the session's error becomes
// Error{CodeBusy, "the server closed the transfer: ..."}, which the
// client is sent if the connection still takes it.
func (s *Server) takeBack(ss *session, why string, attrs ...any) *syncproto.Error {
	pe := &syncproto.Error{Code: syncproto.CodeBusy, Message: "the server closed the transfer to give its slot to another client: " + why}
	if !ss.takenBack.CompareAndSwap(nil, pe) {
		return ss.takenBack.Load()
	}
	s.log.Warn("closing a session that holds a transfer slot without progress", append([]any{
		"client", ss.raw.RemoteAddr().String(), "id", ss.hello.ClientID, "host", ss.hello.Host, "user", ss.hello.User,
		"why", why}, attrs...)...)
	return pe
}

func (s *Server) serveConn(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	adm := s.limits.admit(conn.RemoteAddr())
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	start := time.Now()
	raw := conn
	if adm.release == nil {
		// Over a cap: the answer goes inside TLS like any other (a
		// client believes no plain word), after a handshake held to
		// the short time a refusal is given; and only so many at once,
		// since a refused connection is counted nowhere else: past
		// that, a flood is closed without a word.
		s.metrics.refused(busyConnections)
		if !s.limits.busySlot() {
			return
		}
		defer s.limits.busyDone()
		if conn, err := s.secure(ctx, conn, busyHandshakeTimeout); err == nil {
			refuseBusy(conn, adm.retry)
			conn.Close()
		}
		return
	}
	defer adm.release()
	timeout := s.HandshakeTimeout
	if adm.adminOnly {
		// On the administrator's reserve: a slow handshake must not
		// hold it.
		timeout = reservedHelloTimeout
	}
	conn, err := s.secure(ctx, conn, timeout)
	if err != nil {
		s.limits.handshakeFailed(raw.RemoteAddr(), err)
		return
	}
	defer conn.Close()
	// Small buffers until the hello is accepted (see converse): a
	// connection that never says hello costs little.
	t := s.admission()
	conn, tc := newTransferConn(ctx, conn, t)
	ss := &session{conn: conn, raw: raw, r: syncproto.NewReaderSize(conn, helloBufferSize), w: syncproto.NewWriterSize(conn, helloBufferSize), outcome: "disconnected", adminOnly: adm.adminOnly,
		tc: tc, transfers: t}
	err = s.converse(ctx, ss)
	s.endTransfer(ss)
	if pe := ss.takenBack.Load(); pe != nil {
		err = pe
	}
	s.metrics.ended(ss)
	s.sessionCut(ss, err)
	if ss.outcome == outcomeBusy {
		s.sendError(ss, err) // logged by limits, at a bounded rate
		return
	}
	attrs := []any{
		"client", conn.RemoteAddr().String(), "id", ss.hello.ClientID, "host", ss.hello.Host, "user", ss.hello.User,
		"build", ss.hello.ClientBuild,
		"os", ss.hello.OS, "outcome", ss.outcome, "files", ss.files, "file_bytes", ss.fileByte, "patched", ss.patched,
		"sent", ss.w.N, "received", ss.r.N, "took", time.Since(start).Round(time.Millisecond),
	}
	if err != nil {
		level := slog.LevelWarn
		if ss.hello.OS == handover.HealthCheckOS && ss.hello.ClientID == handover.HealthCheckID {
			level = slog.LevelDebug // the check of a start or of an update
		}
		s.log.Log(ctx, level, "session", append(attrs, "err", err)...)
		s.sendError(ss, err)
		return
	}
	s.log.Info("session", attrs...)
}

// sendError tells the client, in one place, which wire code an error maps
// to. It is best effort: the connection may already be gone.
func (s *Server) sendError(ss *session, err error) {
	var pe *syncproto.Error
	switch {
	case errors.Is(err, errFromClient):
		return // the client's own final word is never answered
	case errors.As(err, &pe):
	case errors.Is(err, syncproto.ErrVersion):
		pe = &syncproto.Error{Code: syncproto.CodeVersion, Message: fmt.Sprintf("this server speaks protocol version %d", syncproto.Version)}
	case errors.Is(err, syncproto.ErrBadMagic), errors.Is(err, syncproto.ErrMalformed),
		errors.Is(err, syncproto.ErrUnknownType), errors.Is(err, syncproto.ErrTooLarge),
		errors.Is(err, syncproto.ErrUnexpected):
		pe = &syncproto.Error{Code: syncproto.CodeProtocol, Message: err.Error()}
	default:
		return // network errors: nobody to tell
	}
	ss.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if ss.w.Write(pe) == nil {
		ss.w.Flush()
	}
}

// next reads the next message within timeout; step names what the session
// was waiting for, for the error.
//
// While the session holds a transfer slot, its waits for the client come
// out of RequestWait: past it, the slot is taken back (see takeBack).
func (s *Server) next(ss *session, timeout time.Duration, step string) (syncproto.Message, error) {
	held := ss.transfer != nil && s.RequestWait > 0
	bounded := held && ss.readLeft < timeout
	if bounded {
		timeout = max(ss.readLeft, 0)
	}
	start := time.Now()
	ss.conn.SetReadDeadline(start.Add(timeout))
	m, err := ss.r.Read()
	if held {
		ss.readLeft -= time.Since(start)
	}
	var ne net.Error
	if bounded && errors.As(err, &ne) && ne.Timeout() {
		return nil, s.takeBack(ss, fmt.Sprintf("the client took more than %s in all to send its %s", s.RequestWait, step),
			"request_wait", s.RequestWait)
	}
	var pe *syncproto.Error
	if errors.As(err, &pe) {
		return nil, fmt.Errorf("reading %s: %w: %w", step, errFromClient, err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", step, err)
	}
	return m, nil
}

// errFromClient marks an Error message the client sent.
var errFromClient = errors.New("the client sent an error")

func (s *Server) send(ss *session, msgs ...syncproto.Message) error {
	ss.conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
	for _, m := range msgs {
		if err := ss.w.Write(m); err != nil {
			return err
		}
	}
	return ss.w.Flush()
}

// converse runs the protocol of one session (see syncproto's doc).
func (s *Server) converse(ctx context.Context, ss *session) error {
	timeout := s.HandshakeTimeout
	if ss.adminOnly {
		timeout = min(timeout, reservedHelloTimeout)
	}
	m, err := s.next(ss, timeout, "hello")
	if err != nil {
		return err
	}
	if key, ok := m.(syncproto.AdminKey); ok {
		return s.admin(ctx, ss, key)
	}
	if ss.adminOnly {
		s.limits.refuse(ss.conn.RemoteAddr(), "the caps, and not an administrator")
		ss.outcome = outcomeBusy
		return busyError(busyRetry + rand.N(busyRetry))
	}
	hello, ok := m.(syncproto.Hello)
	if !ok {
		return fmt.Errorf("got %v instead of Hello: %w", m.Type(), syncproto.ErrUnexpected)
	}
	ss.hello = hello
	if wait := s.upd.refusing(); wait > 0 {
		ss.outcome = outcomeUpdating
		secs := uint16(min((wait+time.Second-1)/time.Second, 65535))
		return &syncproto.Error{Code: syncproto.CodeUpdating, Retry: secs,
			Message: fmt.Sprintf("server is updating, retry in %d s", secs)}
	}
	// The session serves one configuration from its hello to its
	// report, whatever a reload does meanwhile (see Reload).
	sv := s.hold()
	release := sync.OnceFunc(sv.release)
	defer release()
	welcome, ix, err := s.gate(sv.cfg, sv.indexes, ss.hello)
	if err != nil {
		return err
	}
	// The session is on: it gets the buffers a transfer wants.
	ss.r.Grow(syncproto.BufferSize)
	if err := ss.w.Grow(syncproto.BufferSize); err != nil {
		return err
	}
	if s.checkIdentity(ss) {
		welcome.Flags |= syncproto.WelcomeRenewID
	}
	if err := s.send(ss, welcome); err != nil {
		return err
	}
	ss.outcome = "welcomed"
	for {
		m, err := s.next(ss, s.IdleTimeout, "request")
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case syncproto.GetManifest:
			if ix == nil {
				return fmt.Errorf("manifest asked for while updates are disabled: %w", syncproto.ErrUnexpected)
			}
			if err := s.serveManifest(ctx, ss, ix, m); err != nil {
				return err
			}
		case syncproto.Report:
			if m.At != 0 {
				// An earlier sync's, sent late: the requests go on.
				if ss.lateReports++; ss.lateReports > maxLateReports {
					return fmt.Errorf("more than %d reports of earlier syncs: %w", maxLateReports, syncproto.ErrUnexpected)
				}
				s.recordOutcome(ss, m, time.Now())
				if err := s.send(ss, syncproto.ReportAck{}); err != nil {
					return err
				}
				continue
			}
			// The transfer is over, whatever its outcome.
			s.endTransfer(ss)
			ss.outcome = m.Outcome.String()
			// A staged rollout counts the outcome of a session that
			// fetched the release it was served: a report without a
			// transfer, or of another build, could promote or halt it
			// for any client that says so.
			if ss.release != 0 && ss.fetched && (m.Outcome != syncproto.OutcomeUpdated || m.Build == ss.releaseBuild) {
				s.rollouts.report(ss.hello.OS, ss.hello, ss.release, m.Outcome)
			}
			s.recordOutcome(ss, m, time.Now())
			if err := s.send(ss, syncproto.ReportAck{}); err != nil {
				return err
			}
			// smartclient run stays to hear of a restart; others leave.
			// A client that neither stays nor leaves within the handshake
			// time is closed without complaint: it has had its answer.
			after, err := s.next(ss, s.HandshakeTimeout, "stay")
			var ne net.Error
			if errors.Is(err, io.EOF) || errors.As(err, &ne) && ne.Timeout() {
				return nil
			}
			if err != nil {
				return err
			}
			if _, ok := after.(syncproto.Stay); !ok {
				return fmt.Errorf("got %v after ReportAck: %w", after.Type(), syncproto.ErrUnexpected)
			}
			// A staying session may last for days: it does not hold
			// the update folders of its configuration.
			release()
			return s.stay(ctx, ss)
		default:
			return fmt.Errorf("got %v after Welcome: %w", m.Type(), syncproto.ErrUnexpected)
		}
	}
}

// gate decides what the client may do: the compatibility check of the
// design, made from the client's build and MinClientBuild.
func (s *Server) gate(cfg *Config, indexes map[string]*index.Index, h syncproto.Hello) (syncproto.Welcome, *index.Index, error) {
	w := syncproto.Welcome{ServerBuild: cfg.Build.String(), UpdatesEnabled: cfg.Enable}
	if !cfg.Enable {
		w.Message = "automatic updates are disabled on this server ([UPDATE] Enable=0)"
		return w, nil, nil
	}
	ix, ok := indexes[h.OS]
	if !ok {
		return w, nil, &syncproto.Error{Code: syncproto.CodeUnknownOS,
			Message: fmt.Sprintf("this server has no update folder for OS %q (AppServer.ini [UPDATE] %s is not set)", h.OS, pathKeyFor(h.OS))}
	}
	// The build this OS is served: its published release's, or the
	// folder's ([UPDATE] Build).
	if man, _, n, err := s.servedManifest(context.Background(), ix, true, &h); err == nil && man != nil && n != 0 {
		w.ServerBuild = man.Build
	}
	switch {
	case h.ClientBuild == "":
		w.Message = "no SmartClient build is installed yet"
	default:
		b, err := version.Parse(h.ClientBuild)
		switch {
		case err != nil:
			w.Message = fmt.Sprintf("client build %q is not a build this server knows", h.ClientBuild)
		case !b.SameScheme(cfg.MinClientBuild):
			// An order between two schemes would be made up: the client
			// takes the whole release, as one too old would.
			w.Message = fmt.Sprintf("client build %s is a %s, the oldest compatible build %s a %s", b, b.Scheme(), cfg.MinClientBuild, cfg.MinClientBuild.Scheme())
		case !cfg.MinClientBuild.IsZero() && b.Compare(cfg.MinClientBuild) < 0:
			w.Message = fmt.Sprintf("client build %s is older than the oldest compatible build %s", b, cfg.MinClientBuild)
		default:
			w.Compatible = true
		}
	}
	return w, ix, nil
}

func pathKeyFor(osName string) string {
	switch osName {
	case "windows":
		return "PathWindows"
	case "linux":
		return "PathLinux"
	case "darwin":
		return "PathMacOSX"
	}
	return "Path" + osName
}

func (s *Server) serveManifest(ctx context.Context, ss *session, ix *index.Index, get syncproto.GetManifest) error {
	if s.draining.Load() {
		return &syncproto.Error{Code: syncproto.CodeShuttingDown, Message: "server is stopping, retry in 30 s", Retry: 30}
	}
	man, signed, number, err := s.servedManifest(ctx, ix, false, &ss.hello)
	if err != nil {
		s.log.Error("indexing update folder", "os", ix.OS, "err", err)
		return &syncproto.Error{Code: syncproto.CodeInternal, Message: "the server cannot read its update folder; retry later"}
	}
	ss.release, ss.releaseBuild = number, man.Build
	wire := man.Wire()
	if get.Have != wire.Digest && ss.transfer == nil {
		// The client will fetch: it takes a transfer slot before the
		// manifest goes, and holds it until its last file is sent
		// (see endTransfer). A no-op check (Have is the current
		// digest) takes none and is never queued.
		release, busy := ss.transfers.acquire(ctx, s.stopping, ss.conn.RemoteAddr())
		if busy != nil {
			if busy.Code == syncproto.CodeBusy {
				ss.outcome = outcomeBusy // logged by transfers, at a bounded rate
			}
			return busy
		}
		s.startTransfer(ss, release)
	}
	ss.conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
	if r := signed; r.meta != nil {
		// Before the answer, whatever it is: the client verifies the
		// release before it believes an "up to date" (see syncproto's
		// "Signed releases").
		if err := ss.w.Write(syncproto.Release{Meta: r.meta}); err != nil {
			return err
		}
	}
	if get.Have == wire.Digest {
		ss.outcome = "up to date"
		return s.send(ss, syncproto.UpToDate{Build: man.Build})
	}
	z := get.Flags&syncproto.GetZManifest != 0
	if get.Flags&syncproto.GetSketch != 0 {
		if err := s.sendBySketch(ss, man, z); err != nil {
			return err
		}
	} else if err := s.sendWhole(ss, man, z); err != nil {
		return err
	}
	if get.Flags&syncproto.GetPatches != 0 {
		ss.offers = s.patches.offers(man)
		if err := s.sendOffers(ss, ss.offers); err != nil {
			return err
		}
	}
	if err := ss.w.Flush(); err != nil {
		return err
	}
	ss.outcome = "manifest sent"

	// Read every request first (see syncproto's doc: no write/write lock).
	want, err := s.readRequests(ss, man)
	if err != nil {
		return err
	}
	if len(want) == 0 {
		s.endTransfer(ss) // a check, or nothing to fetch: no transfer
		return nil
	}
	ss.fetched = true
	ss.outcome = "sending"
	defer s.metrics.sentSince(ss.w, ss.w.N)
	var enc *zstd.Encoder // nil: raw, as the client asked
	if get.Flags&syncproto.GetRaw == 0 {
		enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		if err != nil {
			return fmt.Errorf("starting compressor: %w", err)
		}
		defer enc.Close()
	}
	buf := make([]byte, syncproto.MaxChunk)
	ss.folders = &sendFolders{man: man}
	defer ss.folders.close()
	for _, w := range want {
		switch {
		case w.delta != nil:
			err = s.sendDelta(ctx, ss, man, w.index, w.delta, enc, buf)
		case w.blocks != nil:
			err = s.sendBlocks(ctx, ss, man, w.index, w.blocks, enc)
		case w.patch != nil:
			err = s.sendPatch(ctx, ss, man, w.index, *w.patch, enc, buf)
		default:
			err = s.sendFile(ctx, ss, man, w.index, enc, buf)
		}
		if err != nil {
			return err
		}
	}
	ss.conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
	if err := ss.w.Flush(); err != nil {
		return err
	}
	// Every file is sent: the slot goes to the next client while this
	// one installs, which may take minutes (a backup, a post-install
	// step) before its Report.
	s.endTransfer(ss)
	return nil
}

// wanted is one requested file: whole, or as a delta from the client's
// base named by chunks or by blocks.
type wanted struct {
	index  uint32
	delta  *syncproto.DeltaRequest // Chunks gathered from all its frames
	blocks *syncproto.BlockRequest
	patch  *releases.Hash // the base of an offered patch
}

// readRequests reads Request and DeltaRequest frames up to RequestEnd,
// checking every index against the manifest and the session's limits.
func (s *Server) readRequests(ss *session, man *index.Manifest) ([]wanted, error) {
	var want []wanted
	refs := 0
	var open *syncproto.DeltaRequest // a DeltaRequest with DeltaMore, to be continued
	bad := func(format string, args ...any) error {
		return &syncproto.Error{Code: syncproto.CodeBadRequest, Message: fmt.Sprintf(format, args...)}
	}
	// seen marks the files requested: one is sent once a session, so a
	// client cannot make the server read and send a file as often as the
	// manifest has entries.
	var seen []bool
	check := func(i uint32) error {
		if int(i) >= len(man.Files) {
			return bad("file index %d is not in the manifest of %d files", i, len(man.Files))
		}
		if seen == nil {
			seen = make([]bool, len(man.Files))
		}
		if seen[i] {
			return bad("%s (file index %d) is requested twice", man.Files[i].Path, i)
		}
		seen[i] = true
		if man.Files[i].Target != "" {
			return bad("%s is a symbolic link; links are made from the manifest, not sent", man.Files[i].Path)
		}
		if man.Files[i].Dir {
			return bad("%s is a folder; folders are made from the manifest, not sent", man.Files[i].Path)
		}
		return nil
	}
	for {
		m, err := s.next(ss, s.IdleTimeout, "file requests")
		if err != nil {
			return nil, err
		}
		if d, ok := m.(syncproto.DeltaRequest); ok && open != nil {
			switch {
			case d.Index != open.Index:
				return nil, bad("delta request for file %d interrupted by one for file %d", open.Index, d.Index)
			case d.Bits != open.Bits:
				return nil, bad("delta request for file %d continued with chunk parameter %d, begun with %d", d.Index, d.Bits, open.Bits)
			}
			if refs += len(d.Chunks); refs > syncproto.MaxSessionChunkRefs {
				return nil, bad("more than %d chunk references in one session", syncproto.MaxSessionChunkRefs)
			}
			if d.Flags&syncproto.DeltaMore != 0 && len(d.Chunks) == 0 {
				return nil, bad("delta request for file %d: an empty frame with more to come", d.Index)
			}
			open.Chunks = append(open.Chunks, d.Chunks...)
			open.Flags = open.Flags&^syncproto.DeltaMore | d.Flags&syncproto.DeltaMore
			if d.Flags&syncproto.DeltaMore == 0 {
				open = nil
			}
			continue
		}
		if open != nil {
			return nil, bad("delta request for file %d not finished before %v", open.Index, m.Type())
		}
		switch m := m.(type) {
		case syncproto.RequestEnd:
			return want, nil
		case syncproto.Request:
			for _, i := range m.Indices {
				if err := check(i); err != nil {
					return nil, err
				}
				want = append(want, wanted{index: i})
			}
		case syncproto.DeltaRequest:
			if err := check(m.Index); err != nil {
				return nil, err
			}
			if m.Bits < cdc.MinBits || m.Bits > cdc.MaxBits {
				return nil, bad("chunk parameter %d out of range %d..%d", m.Bits, cdc.MinBits, cdc.MaxBits)
			}
			if refs += len(m.Chunks); refs > syncproto.MaxSessionChunkRefs {
				return nil, bad("more than %d chunk references in one session", syncproto.MaxSessionChunkRefs)
			}
			if m.Flags&syncproto.DeltaMore != 0 && len(m.Chunks) == 0 {
				return nil, bad("delta request for file %d: an empty frame with more to come", m.Index)
			}
			d := m
			want = append(want, wanted{index: m.Index, delta: &d})
			if m.Flags&syncproto.DeltaMore != 0 {
				open = want[len(want)-1].delta
			}
		case syncproto.PatchRequest:
			if err := check(m.Index); err != nil {
				return nil, err
			}
			base := releases.Hash(m.Base)
			if _, ok := ss.offers.size(m.Index, base); !ok {
				return nil, bad("%s (file index %d): no patch from %s was offered", man.Files[m.Index].Path, m.Index, base)
			}
			want = append(want, wanted{index: m.Index, patch: &base})
		case syncproto.BlockRequest:
			if err := check(m.Index); err != nil {
				return nil, err
			}
			if f := man.Files[m.Index]; f.Size > syncproto.MaxBlockFile {
				return nil, bad("%s has %d bytes; block requests are for files of at most %d", f.Path, f.Size, syncproto.MaxBlockFile)
			}
			if refs += len(m.Sums); refs > syncproto.MaxSessionChunkRefs {
				return nil, bad("more than %d chunk references in one session", syncproto.MaxSessionChunkRefs)
			}
			want = append(want, wanted{index: m.Index, blocks: &m})
		default:
			return nil, fmt.Errorf("got %v while reading requests: %w", m.Type(), syncproto.ErrUnexpected)
		}
	}
}

// openToSend opens f of man to send it, through the session's folders. It
// returns the open file, a check that the file is still the one the
// manifest describes, and the error that refuses a file that changed; the
// file is nil when it could not be opened or has changed already.
//
// The file is the one the index hashed when it has the same inode, size,
// mtime and change time: a write, even one that puts the mtime back,
// moves the change time, and a file replaced by rename has another inode.
// Where the change time is not read (f.CtimeNs is 0), the senders hash
// what they send instead (see sendFile).
func (s *Server) openToSend(ss *session, man *index.Manifest, f index.File) (*os.File, func() bool, error) {
	changed := &syncproto.Error{Code: syncproto.CodeFileChanged,
		Message: fmt.Sprintf("%s changed in the update folder while being sent; retry", f.Path)}
	fh, err := ss.folders.open(f)
	if err != nil {
		s.log.Warn("opening file to send", "os", man.OS, "path", f.Path, "err", err)
		return nil, nil, changed
	}
	same := func() bool { return man.Unchanged(f, fh) }
	if !same() {
		fh.Close()
		return nil, nil, changed
	}
	return fh, same, changed
}

// sendFolders opens the files of one manifest for one session. A session
// is sent its files in the manifest's order, by path, so it keeps the
// folder of the last one open: opening a nested path through an os.Root
// opens and closes every folder on the way, which for a cold sync of
// 20,000 files was a quarter of the server's CPU.
type sendFolders struct {
	man  *index.Manifest
	dir  string   // the open folder, a slash path ending in "/"
	root *os.Root // dir, or nil
}

// open opens the file f of the manifest.
func (c *sendFolders) open(f index.File) (*os.File, error) {
	dir, base := path.Split(f.Path)
	if dir == "" || c.man.IsStored() {
		return c.man.OpenFile(f)
	}
	if c.root == nil || dir != c.dir {
		c.close()
		r, err := c.man.OpenRoot(filepath.FromSlash(strings.TrimSuffix(dir, "/")))
		if err != nil {
			return nil, err
		}
		c.root, c.dir = r, dir
	}
	return c.root.Open(base)
}

func (c *sendFolders) close() {
	if c.root != nil {
		c.root.Close()
		c.root = nil
	}
}

// sendDelta sends file index as the difference from the client's base:
// FileCopy for every run of the new file's chunks that the base has,
// FileData for the rest, read from the file and checked against the
// chunk list as they are sent. The client checks the whole file's hash.
func (s *Server) sendDelta(ctx context.Context, ss *session, man *index.Manifest, index uint32, req *syncproto.DeltaRequest, enc *zstd.Encoder, buf []byte) error {
	f := man.Files[index]
	fh, same, changed := s.openToSend(ss, man, f)
	if fh == nil {
		return changed
	}
	defer fh.Close()
	chunks, err := s.chunks.Get(ctx, man, f, req.Bits)
	if err != nil {
		s.log.Warn("cutting a file into chunks", "os", man.OS, "path", f.Path, "err", err)
		return changed
	}
	// The cut may have taken longer than a write deadline set before it.
	ss.conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
	if err := ss.w.Write(syncproto.FileStart{Index: index, Size: uint64(f.Size)}); err != nil {
		return err
	}
	if req.Flags&syncproto.DeltaWantList != 0 {
		for i := 0; i == 0 || i < len(chunks); i += syncproto.MaxChunkRefs {
			part := chunks[i:min(i+syncproto.MaxChunkRefs, len(chunks))]
			l := syncproto.ChunkList{Bits: req.Bits, More: i+syncproto.MaxChunkRefs < len(chunks), Chunks: make([]syncproto.ChunkRef, len(part))}
			for k, c := range part {
				l.Chunks[k] = syncproto.ChunkRef{Len: c.Len, Hash: c.Hash}
			}
			ss.conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
			if err := ss.w.Write(l); err != nil {
				return err
			}
		}
	}
	// Where each of the base's chunks is in the base.
	base := make(map[syncproto.ChunkRef]int64, len(req.Chunks))
	var off int64
	for _, r := range req.Chunks {
		if _, dup := base[r]; !dup {
			base[r] = off
		}
		off += int64(r.Len)
	}
	// Runs of copies are merged before they are sent.
	cp := s.runs(ss, 1<<31, func(off, n uint64) syncproto.Message {
		return syncproto.FileCopy{Off: off, Len: uint32(n)}
	})
	// The chunks sent are hashed only where the file's change time is
	// not read (see openToSend).
	verify := man.MustHash(f)
	h := blake3.New()
	for _, c := range chunks {
		if err := ctx.Err(); err != nil {
			return err
		}
		if at, ok := base[syncproto.ChunkRef{Len: c.Len, Hash: c.Hash}]; ok {
			if err := cp.add(uint64(at), uint64(c.Len)); err != nil {
				return err
			}
			continue
		}
		if err := cp.flush(); err != nil {
			return err
		}
		h.Reset()
		for done := int64(0); done < int64(c.Len); {
			n := int(min(int64(len(buf)), int64(c.Len)-done))
			if _, err := fh.ReadAt(buf[:n], c.Off+done); err != nil {
				s.log.Warn("reading file to send", "os", man.OS, "path", f.Path, "err", err)
				return changed
			}
			if verify {
				h.Write(buf[:n])
			}
			ss.conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
			if err := ss.w.WriteChunk(enc, buf[:n]); err != nil {
				return err
			}
			done += int64(n)
		}
		if verify && !bytes.Equal(h.Sum(nil)[:cdc.HashSize], c.Hash[:]) {
			return changed
		}
	}
	if err := cp.flush(); err != nil {
		return err
	}
	if !same() {
		return changed
	}
	ss.files++
	ss.fileByte += f.Size
	ss.conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
	return ss.w.Write(syncproto.FileEnd{Hash: f.Hash})
}

// sendfileMin is the smallest piece of a file sent with sendfile(2): below
// it, the two system calls it takes (a flush of what is buffered, then the
// copy) cost more than copying the bytes through the buffer, which a run of
// small files shares.
const sendfileMin = 64 << 10

// sendFile streams one file. A file that is no longer the one the index
// hashed (see openToSend), before or after it is read, is refused with
// CodeFileChanged instead of its FileEnd, so the client never accepts a
// file that changed under the server; where that cannot be told by the
// file's change time, what is read is hashed against the manifest. (The
// client checks every byte against the manifest's hash in any case.)
func (s *Server) sendFile(ctx context.Context, ss *session, man *index.Manifest, index uint32, enc *zstd.Encoder, buf []byte) error {
	f := man.Files[index]
	fh, same, changed := s.openToSend(ss, man, f)
	if fh == nil {
		return changed
	}
	defer fh.Close()
	if err := ss.w.Write(syncproto.FileStart{Index: index, Size: uint64(f.Size)}); err != nil {
		return err
	}
	var h *blake3.Hasher
	if man.MustHash(f) {
		h = blake3.New()
	}
	var sent int64
	for sent < f.Size {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := int(min(int64(len(buf)), f.Size-sent))
		if h == nil && enc == nil && n >= sendfileMin {
			// Raw bytes that need no hashing go from the file to the
			// connection in the kernel (see WriteFileData). A file cut
			// short while being sent leaves a broken message: the
			// connection is closed, and the client tries again.
			ss.conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
			if err := ss.w.WriteFileData(fh, n); err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) {
					s.log.Warn("file cut short while being sent; closing the session", "os", man.OS, "path", f.Path, "err", err)
				}
				return fmt.Errorf("sending %s: %w", f.Path, err)
			}
			sent += int64(n)
			continue
		}
		if _, err := io.ReadFull(fh, buf[:n]); err != nil {
			s.log.Warn("reading file to send", "os", man.OS, "path", f.Path, "err", err)
			return changed
		}
		if h != nil {
			h.Write(buf[:n])
		}
		ss.conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
		if err := ss.w.WriteChunk(enc, buf[:n]); err != nil {
			return err
		}
		sent += int64(n)
	}
	sum := f.Hash
	if h != nil {
		copy(sum[:], h.Sum(nil))
	}
	if sum != f.Hash || !same() {
		return changed
	}
	ss.files++
	ss.fileByte += f.Size
	return ss.w.Write(syncproto.FileEnd{Hash: sum})
}
