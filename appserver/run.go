package appserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/handover"
	"github.com/erpupdate/smartsync/appserver/internal/index"
	"github.com/erpupdate/smartsync/appserver/internal/service"
	"github.com/erpupdate/smartsync/internal/releasecheck"
	"github.com/erpupdate/smartsync/internal/version"
)

// ErrUsage marks errors in the configuration or options; the command
// exits 2 for them.
var ErrUsage = errors.New("usage or configuration error")

// ServeOptions are the appserver command's options.
type ServeOptions struct {
	Config string // AppServer.ini to use
	State  string // folder for the server's state; "" for appserver-state beside Config
	Listen string // address to listen on; "" for [TCP] Port on every address
	Check  bool   // validate, index every update folder, print a summary and return
	// Args is the command line the server was started with, to start the
	// next server with after a self-update.
	Args []string
	// ServiceName is the service the server runs as, from the installed
	// command line (appserver service install); "" when not given.
	ServiceName string
}

// RunServer loads the configuration and serves until ctx is cancelled, or
// with o.Check validates it and prints a summary on stdout. Errors in the
// configuration wrap ErrUsage.
func RunServer(ctx context.Context, o ServeOptions, stdout, stderr io.Writer) error {
	cfg, err := LoadConfig(o.Config)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	state := stateDir(o.Config, o.State)
	// The level can change while the server runs (see Reload).
	level := new(slog.LevelVar)
	level.Set(cfg.Log.Level)
	log, logFile, err := openLogAt(cfg, stderr, level)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	defer logFile.Close()
	var hup <-chan os.Signal
	if !o.Check {
		// At once, so that a SIGHUP while the folders are indexed is
		// kept for the reload loop rather than killing the server.
		c, stop := notifyReload()
		defer stop()
		hup = c
	}
	running := service.Detect(o.ServiceName)
	if running.Manager == service.Windows && !o.Check {
		// A Windows service's stderr goes nowhere: warnings and errors
		// go to the Event Viewer too.
		if sink, err := openEventLog(running.Name); err != nil {
			log.Warn("not logging to the Windows event log", "err", err)
		} else {
			defer sink.Close()
			log = slog.New(newEventLogHandler(log.Handler(), sink, cfg.Log, slog.LevelWarn))
		}
	}
	// The last records, for the console's "recent log lines".
	ring := newLogRing(logRingLines, slog.LevelInfo)
	log = slog.New(slog.NewMultiHandler(log.Handler(), ring.Handler()))
	addr := o.Listen
	if addr == "" {
		addr = ":" + strconv.Itoa(cfg.Port)
	}
	self, err := findSelf(o.Args, o.Config, state, addr)
	if err != nil {
		return err
	}
	self.Manager, self.Service = running.Manager, running.Name
	if !o.Check {
		// Before anything writes to the state folder: the self-update's
		// recovery, the TLS key, the hash caches. The lock goes when the
		// server returns or its process ends, so the server a self-update
		// starts takes it once this one has exited for the helper.
		lock, err := lockState(state)
		if err != nil {
			return err
		}
		defer lock.Close()
		if err := recoverSelfUpdate(log, self); err != nil {
			return err
		}
	}
	srv, err := New(ctx, log, cfg, state)
	var ce *ConfigError
	var refused *releasecheck.Error
	switch {
	case errors.As(err, &ce):
		return fmt.Errorf("%w: %w", ErrUsage, err)
	case errors.As(err, &refused):
		// An update folder clients would refuse: the error lists the
		// first problems; --check lists every one.
		if o.Check {
			for _, p := range refused.Problems {
				fmt.Fprintf(stdout, "refused  %s\n", p)
			}
		}
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if err != nil {
		return err
	}
	defer srv.Close()
	srv.pub.readOnly = o.Check
	if o.Check {
		return printSummary(stdout, cfg, srv, state, running)
	}
	srv.SetSelf(self)
	srv.proc = &procHooks{level: level, memoryLimit: setMemoryLimit}
	if mb := cfg.Limits.MemoryLimitMB; mb > 0 {
		// For the process, which is this server's alone.
		setMemoryLimit(mb)
		log.Info("memory limit", "limit_mib", mb, "from", "[LIMITS] MemoryLimitMB")
	}
	ln, err := listen(ctx, log, addr, listenRetry)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	log.Info("service", "service", running.String())
	ready := func() {}
	if running.Manager == service.Systemd {
		// Only systemd's own process: a child of a service inherits
		// NOTIFY_SOCKET, and must not tell the service it is ready.
		ready = notifyReady(ctx, log, ln.Addr())
	}
	// The administrator's console and daily digest, beside the service.
	cctx, stopConsole := context.WithCancel(ctx)
	consoleDone := srv.serveConsole(cctx, ring)
	digestsDone := make(chan struct{})
	go func() {
		defer close(digestsDone)
		srv.runDigests(cctx, srv.makeDigest, time.Now, time.After)
	}()
	defer func() {
		stopConsole()
		consoleDone()
		<-digestsDone
	}()
	// SIGHUP, or a change of the file on disk, re-reads the
	// configuration while the server serves.
	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		watchConfig(wctx, log, srv, o.Config, hup)
	}()
	err = srv.Serve(ctx, ln)
	ready()
	stopWatch()
	<-watched
	if err != nil {
		return err
	}
	if srv.HandedOver() {
		log.Warn("stopped for a self-update; the update helper takes over")
		if running.Manager == service.Launchd || running.Manager == service.Windows {
			// launchd (KeepAlive) would start an exited server again at
			// once, from the path being swapped, and the SCM has the
			// service stop when its helper says: this one waits for the
			// helper's stop through the manager, but not for a helper
			// that is gone or stuck, and then exits with an error so that
			// the manager starts it again and its recovery runs.
			if err := handover.AwaitStop(ctx, self.InstallDir); err != nil {
				log.Error("self-update: the helper did not stop this server", "err", err)
				return err
			}
		}
	}
	return nil
}

// setMemoryLimit sets the Go runtime's soft memory limit to mb MiB, or
// back to what it was before the server first set it (GOMEMLIMIT, or
// none) when mb is 0.
func setMemoryLimit(mb int) {
	memoryLimitOnce.Do(func() { memoryLimitBefore = debug.SetMemoryLimit(-1) })
	if mb > 0 {
		debug.SetMemoryLimit(int64(mb) << 20)
	} else {
		debug.SetMemoryLimit(memoryLimitBefore)
	}
}

var (
	memoryLimitOnce   sync.Once
	memoryLimitBefore int64
)

// stateDir is the server's state folder: state, or appserver-state beside
// the configuration.
func stateDir(config, state string) string {
	if state == "" {
		return filepath.Join(filepath.Dir(config), "appserver-state")
	}
	return state
}

// RunHelper is the self-update helper process, "appserver
// selfupdate-helper --journal FILE", which the server starts to switch
// installations while it is stopped; args follow the command's name.
func RunHelper(ctx context.Context, args []string, stderr io.Writer) error {
	return runHelper(ctx, args, stderr)
}

// findSelf describes the running installation: the executable's folder,
// its BUILD, and the command line to start the next server with.
func findSelf(args []string, config, state, listen string) (Self, error) {
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return Self{}, fmt.Errorf("finding the server's program: %w", err)
	}
	wd, err := os.Getwd()
	if err != nil {
		return Self{}, fmt.Errorf("finding the working folder: %w", err)
	}
	self := Self{InstallDir: filepath.Dir(exe), Exe: exe, Args: args, WorkDir: wd, Listen: listen}
	if self.ConfigFile, err = filepath.Abs(config); err != nil {
		return Self{}, err
	}
	if self.StateDir, err = filepath.Abs(state); err != nil {
		return Self{}, err
	}
	self.Build = readOwnBuild(self.InstallDir)
	return self, nil
}

// readOwnBuild reads the BUILD file of an installation: the build of the
// server itself (AppServer.ini's [UPDATE] Build is the clients'). It is ""
// when there is none or it is not a build.
func readOwnBuild(dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, "BUILD"))
	if err != nil || len(data) > 64 {
		return ""
	}
	b, err := version.Parse(strings.TrimSpace(string(data)))
	if err != nil {
		return ""
	}
	return b.String()
}

func printSummary(w io.Writer, cfg *Config, srv *Server, state string, running service.Running) error {
	fmt.Fprintf(w, "%s: configuration is valid; port %d, updates enabled: %v, build %s, oldest compatible client build %s\n",
		cfg.File, cfg.Port, cfg.Enable, orNone(cfg.Build.String()), orNone(cfg.MinClientBuild.String()))
	// --check runs beside a server: it does not take the state folder's
	// lock, and says who holds it.
	in := "no server runs on it"
	if h, inUse, err := StateHolderOf(state); err != nil {
		in = err.Error()
	} else if inUse {
		in = "in use by a server: " + h.String()
	}
	fmt.Fprintf(w, "State    %s  %s\n", state, in)
	cert, _ := srv.id.Files()
	plain := "TLS only"
	if cfg.TLS.AllowPlaintext {
		plain = "plain TCP allowed too ([SSL] AllowPlaintext=1)"
	}
	fmt.Fprintf(w, "TLS key  %s  %s; %s\n", srv.Fingerprint(), cert, plain)
	fmt.Fprintf(w, "Log      %s\n", cfg.Log.describe())
	fmt.Fprintf(w, "Limits   %s\n", describeAdmission(cfg))
	fmt.Fprintf(w, "Rollout  %s\n", cfg.Rollout.describe())
	fmt.Fprintf(w, "Console  %s\n", consoleURL(cfg))
	fmt.Fprintf(w, "Records  %s  history kept %d days; stale after %d days; digest %s\n",
		clientsDBFile(state), cfg.Status.KeepDays, cfg.Status.StaleDays, describeDigest(cfg.Status))
	fmt.Fprintf(w, "Service  %s\n", running)
	if su := cfg.SelfUpdate; su.Feed != "" {
		// --check does not fetch it: the server does, at start and daily.
		fmt.Fprintf(w, "Feed     %s  checked at start and daily; a newer release is mailed to %s\n", su.Feed, orNone(su.Notify))
	}
	oses := make([]string, 0, len(srv.Indexes()))
	for o := range srv.Indexes() {
		oses = append(oses, o)
	}
	sort.Strings(oses)
	for _, o := range oses {
		ix := srv.Indexes()[o]
		m := ix.Latest()
		fmt.Fprintf(w, "%-8s %6d files %14s bytes  build %s  %s\n", o, len(m.Files), GroupDigits(m.TotalBytes), m.Build, ix.Dir)
		if st := srv.PublishedStatus(o); st != "" {
			fmt.Fprintf(w, "%-8s %s\n", "", st)
		} else {
			fmt.Fprintf(w, "%-8s %s\n", "", srv.SignedStatus(o))
		}
	}
	// A Preserve entry that names no file anywhere is most often a typo,
	// and would silently protect nothing.
	for _, p := range cfg.Preserve {
		found := false
		for _, ix := range srv.Indexes() {
			found = found || slices.ContainsFunc(ix.Latest().Files, func(f index.File) bool { return strings.EqualFold(f.Path, p) })
		}
		if !found {
			fmt.Fprintf(w, "warning: [UPDATE] Preserve: %q names no file in any update folder\n", p)
		}
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// GroupDigits writes n with thousands separators, as administrators read
// byte counts.
func GroupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// StateDir is the state folder a server on config uses: state, or
// appserver-state beside the configuration (the --state flag's default).
func StateDir(config, state string) string { return stateDir(config, state) }

// listenRetry is how long a server whose port is still taken tries again.
const listenRetry = 10 * time.Second

// listen listens on addr, trying again for up to retry while the address
// is in use: the server it replaces (a self-update's helper, or a service
// manager, starts this one once the old process is gone) may still be
// closing its socket, which the kernel does after the process's lock on
// the state folder is already released.
func listen(ctx context.Context, log *slog.Logger, addr string, retry time.Duration) (net.Listener, error) {
	var lc net.ListenConfig
	deadline := time.Now().Add(retry)
	for wait, logged := 50*time.Millisecond, false; ; wait = min(2*wait, time.Second) {
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err == nil || !addrInUse(err) || time.Now().After(deadline) {
			return ln, err
		}
		if !logged {
			log.Warn("the address is in use; trying again", "addr", addr, "for", retry, "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// addrInUse reports whether err is a listen that found its address taken
// (EADDRINUSE; WSAEADDRINUSE, 10048, on Windows).
func addrInUse(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno) && (errno == syscall.EADDRINUSE || errno == 10048)
}
