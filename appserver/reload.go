package appserver

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/index"
	"github.com/erpupdate/smartsync/appserver/release"
	"github.com/fsnotify/fsnotify"
)

// Reloading the configuration: Reload applies a newly read AppServer.ini
// to the running server. What a session sees comes from one serving, the
// configuration and the update folders' indexes together, taken at its
// hello and kept until its report (see hold): a reload never mixes two
// configurations within a session. An index no longer used is closed once
// the last session holding it ends.

// serving is what the server serves under one configuration.
type serving struct {
	cfg     *Config
	indexes map[string]*index.Index // by OS; none while updates are disabled

	mu      sync.Mutex
	users   int    // sessions holding it (see Server.hold)
	retired func() // set when a reload replaced it: what to do once unused
}

// conf returns the configuration in force. A caller that reads several of
// its fields reads them from one Config.
func (s *Server) conf() *Config { return s.cur.Load().cfg }

// hold returns the serving in force, kept from being retired until
// release is called.
func (s *Server) hold() *serving {
	for {
		sv := s.cur.Load()
		sv.mu.Lock()
		if sv.retired == nil {
			sv.users++
			sv.mu.Unlock()
			return sv
		}
		// Replaced between the load and the lock: take the new one.
		sv.mu.Unlock()
	}
}

func (sv *serving) release() {
	sv.mu.Lock()
	sv.users--
	var done func()
	if sv.users == 0 && sv.retired != nil {
		done, sv.retired = sv.retired, func() {}
	}
	sv.mu.Unlock()
	if done != nil {
		done()
	}
}

// retire runs done once no session holds sv, which is no longer in force.
func (sv *serving) retire(done func()) {
	sv.mu.Lock()
	if sv.users > 0 {
		sv.retired = done
		sv.mu.Unlock()
		return
	}
	sv.retired = func() {}
	sv.mu.Unlock()
	done()
}

// admission returns the transfer slots and limits in force (nil before
// Serve).
func (s *Server) admission() *transfers {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.transfers
}

// releaseOf is what cfg says of the release the update folders hold.
func releaseOf(cfg *Config) index.Release {
	return index.Release{Build: cfg.Build.String(), Preserve: cfg.Preserve,
		PostInstall: cfg.PostInstall, PostInstallTimeout: cfg.PostInstallTimeout}
}

// openServing indexes the update folders of cfg, reusing the indexes of
// old (nil at start-up) that serve the same folder. It returns the new
// serving without changing old's indexes; on error it closes what it
// opened. A PostInstall found in none of the folders is a ConfigError.
func (s *Server) openServing(ctx context.Context, cfg *Config, old *serving) (*serving, error) {
	sv := &serving{cfg: cfg, indexes: map[string]*index.Index{}}
	if !cfg.Enable {
		return sv, nil
	}
	var opened []*index.Index
	fail := func(err error) (*serving, error) {
		for _, ix := range opened {
			ix.Close()
		}
		return nil, err
	}
	oses := make([]string, 0, len(cfg.Folders))
	for osName := range cfg.Folders {
		oses = append(oses, osName)
	}
	sort.Strings(oses)
	for _, osName := range oses {
		dir := cfg.Folders[osName]
		if old != nil {
			if ix := old.indexes[osName]; ix != nil && ix.Dir == dir {
				sv.indexes[osName] = ix
				continue
			}
		}
		ix, err := index.Open(ctx, s.log, osName, dir, s.state, releaseOf(cfg), index.Observe(s.metrics))
		if err != nil {
			if old == nil {
				return fail(err)
			}
			return fail(&ConfigError{File: cfg.File, Section: sectionUpdate, Key: pathKeyFor(osName),
				Problem: fmt.Sprintf("cannot index %s: %v", dir, err), Err: err})
		}
		opened = append(opened, ix)
		sv.indexes[osName] = ix
	}
	if cfg.PostInstall != "" && !slices.ContainsFunc(oses, func(o string) bool {
		// The files of a kept index do not depend on its release.
		return slices.ContainsFunc(sv.indexes[o].Latest().Files, func(f index.File) bool {
			return !f.Dir && strings.EqualFold(f.Path, cfg.PostInstall)
		})
	}) {
		return fail(&ConfigError{File: cfg.File, Section: sectionUpdate, Key: keyPostInstall,
			Problem: fmt.Sprintf("%q is in none of the update folders", cfg.PostInstall)})
	}
	return sv, nil
}

// procHooks are what a reload changes in the process, which only a server
// run by RunServer owns: its log level and its memory limit.
type procHooks struct {
	level       *slog.LevelVar
	memoryLimit func(mb int)
}

// Reload applies next, a configuration newly read from the server's
// AppServer.ini, to the running server, and logs what changed: one INFO
// line a change applied ("[UPDATE] Build: 7.00.240501A -> 7.00.240601A"),
// one WARN line a change that takes effect at the next restart (the
// listener's [TCP] Port and [SSL], the [LOG] file and its form, the
// sessions' timeouts and heartbeat), or "configuration re-read: nothing changed". It
// returns those lines. Secrets ([ADMIN] PasswordHash, [MAIL] Password)
// are only said to have changed.
//
// What changes applies to the sessions that say hello from then on; a
// session under way finishes with the configuration it began with, and
// a transfer under way keeps the bandwidth limits it started with. When
// an update folder cannot be indexed (a new PathLinux that is not
// readable, a PostInstall found nowhere), nothing changes and the error,
// a *ConfigError, says which key. A self-update already under way keeps
// the [SELFUPDATE] settings it started with.
func (s *Server) Reload(ctx context.Context, next *Config) (changes []string, err error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.cur.Load()
	diffs := diffConfig(old.cfg, next)
	if len(diffs) == 0 {
		s.log.Info("configuration re-read: nothing changed", "file", next.File)
		return nil, nil
	}
	applied := liveOnly(old.cfg, next)
	sv, err := s.openServing(ctx, applied, old)
	if err != nil {
		return nil, err
	}
	if !sameRelease(old.cfg, applied) {
		rel := releaseOf(applied)
		for osName, ix := range sv.indexes {
			if old.indexes[osName] == ix {
				ix.SetRelease(rel)
			}
		}
	}
	s.cur.Store(sv)
	old.retire(func() {
		for osName, ix := range old.indexes {
			if sv.indexes[osName] != ix {
				ix.Close()
			}
		}
	})
	s.applyAdmission(old.cfg, applied)
	if !reflect.DeepEqual(old.cfg.Rollout, applied.Rollout) {
		s.rollouts.setPolicy(applied.Rollout.Policy())
	}
	if old.cfg.Admin != applied.Admin {
		// A new password (one that leaked?) or user: the sessions
		// logged in with the old one end.
		switch n, err := s.tokens.revokeAll(s.upd.dir); {
		case err != nil:
			s.log.Warn("configuration: revoking the administrator session tokens after [ADMIN] changed", "err", err)
		case n > 0:
			s.log.Info("configuration: [ADMIN] changed; administrator session tokens revoked", "tokens", n)
		}
		if c := s.console.Load(); c != nil {
			if n := c.ForgetLogins(); n > 0 {
				s.log.Info("configuration: [ADMIN] changed; web console sessions ended", "sessions", n)
			}
		}
	}
	if s.proc != nil {
		if s.proc.level != nil {
			s.proc.level.Set(applied.Log.Level)
		}
		if s.proc.memoryLimit != nil && applied.Limits.MemoryLimitMB != old.cfg.Limits.MemoryLimitMB {
			s.proc.memoryLimit(applied.Limits.MemoryLimitMB)
		}
	}
	feedChanged, selfUpdateChanged := false, false
	for _, d := range diffs {
		line := d.String()
		changes = append(changes, line)
		if d.restart {
			s.log.Warn("configuration changed; takes effect at the next restart", "change", line, "file", next.File)
			continue
		}
		s.log.Info("configuration changed", "change", line, "file", next.File)
		if d.section == sectionSelfUpdate {
			selfUpdateChanged = true
			feedChanged = feedChanged || d.key == keyFeed || d.key == keyPublicKey
		}
	}
	if id := s.upd.underway(); id != "" && selfUpdateChanged {
		s.log.Warn("configuration: [SELFUPDATE] changed while a self-update is under way; that update keeps the settings it started with, the next one takes the new", "update", id)
	}
	if feedChanged {
		s.feed.recheck()
	}
	return changes, nil
}

// sameRelease reports whether a and b say the same of the release the
// update folders hold.
func sameRelease(a, b *Config) bool {
	return a.Build == b.Build && slices.Equal(a.Preserve, b.Preserve) &&
		a.PostInstall == b.PostInstall && a.PostInstallTimeout == b.PostInstallTimeout
}

// liveOnly is next with what takes effect only at a restart kept as in
// running: the configuration in force after a reload.
func liveOnly(running, next *Config) *Config {
	c := *next
	c.Port = running.Port
	c.TLS = running.TLS
	c.HTTP = running.HTTP
	c.Status.KeepDays = running.Status.KeepDays
	lg := running.Log
	lg.Level = next.Log.Level
	c.Log = lg
	lim := running.Limits
	lim.MaxConnections, lim.MaxPerAddress = next.Limits.MaxConnections, next.Limits.MaxPerAddress
	lim.MaxStaySessions = next.Limits.MaxStaySessions
	lim.MemoryLimitMB = next.Limits.MemoryLimitMB
	c.Limits = lim
	return &c
}

// applyAdmission puts the admission keys of cfg in force: the caps on
// connections at once, and new transfer slots and bandwidth limits for
// the sessions accepted from now on (those under way keep theirs, so for
// a while more transfers than MaxTransfers may run).
func (s *Server) applyAdmission(old, cfg *Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cfg.Limits.MaxConnections > 0 {
		s.MaxConnections, s.MaxPerAddress = cfg.Limits.MaxConnections, cfg.Limits.MaxPerAddress
	}
	if s.limits != nil {
		s.limits.set(s.MaxConnections, s.MaxPerAddress)
	}
	if cfg.Limits.MaxConnections > 0 && cfg.Limits.MaxStaySessions != old.Limits.MaxStaySessions {
		// Read under the updater's lock (see stay): sessions already
		// staying over a lower cap stay.
		s.upd.mu.Lock()
		s.MaxStaySessions = cfg.Limits.MaxStaySessions
		s.upd.mu.Unlock()
	}
	if old.MaxTransfers == cfg.MaxTransfers && old.MaxBytesPerSecond == cfg.MaxBytesPerSecond &&
		old.MaxClientBytesPerSecond == cfg.MaxClientBytesPerSecond {
		return
	}
	s.MaxTransfers, s.MaxBytesPerSecond, s.MaxClientBytesPerSecond = cfg.MaxTransfers, cfg.MaxBytesPerSecond, cfg.MaxClientBytesPerSecond
	if s.transfers == nil {
		return // Serve reads them when it starts
	}
	t := newTransfers(s.log, s.MaxTransfers, s.TransferWait, s.MaxBytesPerSecond, s.MaxClientBytesPerSecond)
	t.inherit(s.transfers)
	s.transfers = t
	t.logFewer(s.log, s.MaxBytesPerSecond)
}

// configDiff is one key whose value differs between two configurations.
type configDiff struct {
	section, key string
	old, new     string
	secret       bool // say "changed", never the values
	restart      bool // takes effect at the next restart
}

// String reads "[UPDATE] Build: 7.00.240501A -> 7.00.240601A", or for a
// secret "[MAIL] Password: changed".
func (d configDiff) String() string {
	if d.secret {
		what := "changed"
		switch {
		case d.old == "":
			what = "set"
		case d.new == "":
			what = "removed"
		}
		return fmt.Sprintf("[%s] %s: %s", d.section, d.key, what)
	}
	return fmt.Sprintf("[%s] %s: %s -> %s", d.section, d.key, orNone(d.old), orNone(d.new))
}

// configEntry is one key of a configuration as the diff compares it.
type configEntry struct {
	section, key, value string
	secret, restart     bool
}

// configEntries lists the keys of c in the order of AppServer.ini.example,
// each with its value written as an administrator would.
func configEntries(c *Config) []configEntry {
	var e []configEntry
	add := func(section, key, value string) {
		e = append(e, configEntry{section: section, key: key, value: value})
	}
	restart := func(section, key, value string) {
		e = append(e, configEntry{section: section, key: key, value: value, restart: true})
	}
	secret := func(section, key, value string) {
		e = append(e, configEntry{section: section, key: key, value: value, secret: true})
	}
	num := strconv.Itoa
	secs := func(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }
	yes := func(b bool) string {
		if b {
			return "1"
		}
		return "0"
	}
	bps := func(n int64) string {
		if n == 0 {
			return "0"
		}
		return formatBytesPerSecond(n)
	}
	restart(sectionTCP, keyPort, num(c.Port))

	add(sectionUpdate, keyEnable, yes(c.Enable))
	for _, fk := range []struct{ key, goos string }{{keyPathWindows, "windows"}, {keyPathLinux, "linux"}, {keyPathMacOSX, "darwin"}} {
		add(sectionUpdate, fk.key, c.Folders[fk.goos])
	}
	add(sectionUpdate, keyBuild, c.Build.String())
	add(sectionUpdate, keyMinClientBuild, c.MinClientBuild.String())
	add(sectionUpdate, keyPreserve, strings.Join(c.Preserve, ", "))
	add(sectionUpdate, keyPostInstall, c.PostInstall)
	add(sectionUpdate, keyPostInstallMax, secs(c.PostInstallTimeout))
	add(sectionUpdate, keyMaxTransfers, num(c.MaxTransfers))
	add(sectionUpdate, keyMaxBPS, bps(c.MaxBytesPerSecond))
	add(sectionUpdate, keyMaxClientBPS, bps(c.MaxClientBytesPerSecond))
	add(sectionUpdate, keyKeepReleases, num(c.KeepReleases))

	add(sectionRollout, keyPilot, strings.Join(c.Rollout.Pilot, ", "))
	add(sectionRollout, keyDelay, c.Rollout.Delay.String())
	add(sectionRollout, keyMinSuccesses, num(c.Rollout.MinSuccesses))
	add(sectionRollout, keyHaltPercent, strconv.FormatFloat(c.Rollout.HaltPercent, 'g', -1, 64))
	add(sectionRollout, keyMinReports, num(c.Rollout.MinReports))

	add(sectionAdmin, keyUser, c.Admin.User)
	secret(sectionAdmin, keyPasswordHash, c.Admin.PasswordHash)

	keys := make([]string, len(c.SelfUpdate.PublicKeys))
	for i, k := range c.SelfUpdate.PublicKeys {
		keys[i] = release.FormatPublicKey(ed25519.PublicKey(k))
	}
	add(sectionSelfUpdate, keyPublicKey, strings.Join(keys, ", "))
	add(sectionSelfUpdate, keyCarry, strings.Join(c.SelfUpdate.Carry, ", "))
	add(sectionSelfUpdate, keyHealthTimeout, secs(c.SelfUpdate.HealthTimeout))
	add(sectionSelfUpdate, keyFeed, c.SelfUpdate.Feed)
	add(sectionSelfUpdate, keyNotify, c.SelfUpdate.Notify)

	add(sectionMail, keyHost, c.Mail.Host)
	add(sectionMail, keyPort, num(c.Mail.Port))
	add(sectionMail, keyFrom, c.Mail.From)
	add(sectionMail, keyUser, c.Mail.User)
	secret(sectionMail, keyPassword, c.Mail.Password)
	add(sectionMail, keyStartTLS, yes(c.Mail.StartTLS))

	restart(sectionSSL, keyCertificate, c.TLS.CertFile)
	restart(sectionSSL, keyKey, c.TLS.KeyFile)
	restart(sectionSSL, keyAllowPlaintext, yes(c.TLS.AllowPlaintext))

	add(sectionLimits, keyMaxConnections, num(c.Limits.MaxConnections))
	add(sectionLimits, keyMaxPerAddress, num(c.Limits.MaxPerAddress))
	add(sectionLimits, keyMaxStaySessions, num(c.Limits.MaxStaySessions))
	restart(sectionLimits, keyHeartbeat, secs(c.Limits.Heartbeat))
	restart(sectionLimits, keyHelloTimeout, secs(c.Limits.HelloTimeout))
	restart(sectionLimits, keyIdleTimeout, secs(c.Limits.IdleTimeout))
	restart(sectionLimits, keyWriteTimeout, secs(c.Limits.WriteTimeout))
	add(sectionLimits, keyMemoryLimitMB, num(c.Limits.MemoryLimitMB))

	restart(sectionLog, keyLogFile, c.Log.File)
	restart(sectionLog, keyMaxSizeMB, num(c.Log.MaxSizeMB))
	restart(sectionLog, keyMaxFiles, num(c.Log.MaxFiles))
	restart(sectionLog, keyMaxAgeDays, num(c.Log.MaxAgeDays))
	restart(sectionLog, keyCompress, yes(c.Log.Compress))
	restart(sectionLog, keyFormat, c.Log.Format)
	add(sectionLog, keyLevel, strings.ToLower(c.Log.Level.String()))
	restart(sectionHTTP, keyListen, orOff(c.HTTP.Listen))
	restart(sectionStatus, keyKeepDays, num(c.Status.KeepDays))
	add(sectionStatus, keyStaleDays, num(c.Status.StaleDays))
	add(sectionStatus, keyNotify, c.Status.Notify)
	add(sectionStatus, keyDigestAt, clock(c.Status.DigestAt))
	return e
}

func orOff(s string) string {
	if s == "" {
		return "off"
	}
	return s
}

// clock writes an offset from midnight as HH:MM.
func clock(d time.Duration) string {
	return fmt.Sprintf("%02d:%02d", int(d/time.Hour), int(d%time.Hour/time.Minute))
}

// diffConfig lists the keys whose values differ between old and next, in
// the order of configEntries.
func diffConfig(old, next *Config) []configDiff {
	a, b := configEntries(old), configEntries(next)
	var d []configDiff
	for i := range a {
		if a[i].value == b[i].value {
			continue
		}
		d = append(d, configDiff{section: a[i].section, key: a[i].key, old: a[i].value, new: b[i].value,
			secret: a[i].secret, restart: a[i].restart})
	}
	return d
}

// logConfigErrors logs every problem of a configuration that could not be
// read or applied, naming file, section and key, and that the running
// configuration stays.
func logConfigErrors(log *slog.Logger, file, trigger string, err error) {
	var problems []*ConfigError
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var ce *ConfigError
		if errors.As(err, &ce) {
			problems = append(problems, ce)
			return
		}
		problems = append(problems, &ConfigError{File: file, Problem: err.Error(), Err: err})
	}
	walk(err)
	for _, ce := range problems {
		log.Error("configuration re-read: "+ce.Error(), "file", ce.File, "section", ce.Section, "key", ce.Key)
	}
	log.Error("configuration re-read failed; keeping the running configuration", "file", file, "problems", len(problems), "trigger", trigger)
}

// reloadDebounce is how long the configuration file must stay unchanged
// before it is re-read: an editor saves in several steps (a write, or a
// new file renamed over the old), and the file is read once they are done.
const reloadDebounce = 500 * time.Millisecond

// watchConfig re-reads the configuration at path, and applies it to srv,
// on each signal from hup (SIGHUP; nil where there is none) and when the
// file changes on disk, until ctx ends; it then closes its watch. The
// folder holding the file is watched, not the file, so that a file
// replaced by rename is seen too.
func watchConfig(ctx context.Context, log *slog.Logger, srv *Server, path string, hup <-chan os.Signal) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	abs, err := filepath.Abs(path)
	var w *fsnotify.Watcher
	if err == nil {
		w, err = fsnotify.NewWatcher()
	}
	if err == nil {
		if err = w.Add(filepath.Dir(abs)); err != nil {
			w.Close()
		}
	}
	if err != nil {
		log.Warn("not watching the configuration file for changes; "+reloadHint, "file", path, "err", err)
	} else {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	base := filepath.Base(abs)
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			debounce.Stop()
			fire = nil
			reloadConfig(ctx, log, srv, path, "SIGHUP")
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Op == fsnotify.Chmod || !sameFileName(filepath.Base(ev.Name), base) {
				continue
			}
			debounce.Reset(reloadDebounce)
			fire = debounce.C
		case <-fire:
			fire = nil
			reloadConfig(ctx, log, srv, path, "file changed")
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			log.Warn("watching the configuration file for changes", "file", path, "err", err)
		}
	}
}

// sameFileName reports whether a and b name the same file in one folder:
// case-insensitively where the file system usually is (Windows, macOS).
func sameFileName(a, b string) bool {
	if runtime.GOOS == "windows" || runtime.GOOS == "darwin" {
		return strings.EqualFold(a, b)
	}
	return a == b
}

// reloadConfig reads the configuration at path and applies it to srv; a
// file that cannot be read or applied leaves the running configuration
// in force, and every problem is logged. trigger says why, for the log.
func reloadConfig(ctx context.Context, log *slog.Logger, srv *Server, path, trigger string) {
	log.Info("re-reading the configuration", "file", path, "trigger", trigger)
	next, err := LoadConfig(path)
	if err == nil {
		_, err = srv.Reload(ctx, next)
	}
	if err != nil {
		logConfigErrors(log, path, trigger, err)
	}
}
