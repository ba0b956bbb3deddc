package appserver

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/mail"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/erpupdate/smartsync/appserver/release"
	"github.com/erpupdate/smartsync/internal/version"
	"github.com/erpupdate/smartsync/internal/winini"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/ini.v1"
)

// Config is a validated AppServer.ini.
type Config struct {
	// File is the path the configuration was read from, as given.
	File string
	// Port is [TCP] Port, the port clients connect to (1..65535).
	Port int
	// Enable is [UPDATE] Enable: whether clients are updated at all.
	Enable bool
	// Folders maps a client OS ("windows", "linux", "darwin", as in
	// runtime.GOOS) to the absolute, cleaned path of the folder holding that
	// OS's client files. Only the OSes whose key is set are present.
	Folders map[string]string
	// Build is [UPDATE] Build: the build the update folders hold.
	Build version.Build
	// MinClientBuild is [UPDATE] MinClientBuild, the oldest client build that
	// is still compatible. It is zero when not set; then any client that has
	// a build installed is compatible.
	MinClientBuild version.Build
	// Preserve is [UPDATE] Preserve: clean relative slash paths of client
	// files that are copied only when missing or on a full update.
	Preserve []string
	// PostInstall is [UPDATE] PostInstall: a program inside the update
	// folder (relative slash path) that clients run after a switch, to
	// upgrade their data; "" for none. PostInstallTimeout is how long it
	// may run ([UPDATE] PostInstallTimeout, seconds, default 120).
	PostInstall        string
	PostInstallTimeout time.Duration
	// MaxTransfers is [UPDATE] MaxTransfers: the sessions transferring
	// files at once (1..100000; default defaultMaxTransfers(), from the
	// machine). A client past it is told "server is busy, retry in N s";
	// a no-op check never waits for it. 0 in a Config not made by
	// ParseConfig means the default.
	MaxTransfers int
	// MaxBytesPerSecond and MaxClientBytesPerSecond are [UPDATE]
	// MaxBytesPerSecond and MaxClientBytesPerSecond: the bytes the whole
	// server, and one session, send a second while transferring; 0 (the
	// default) for no limit, else at least minSlotBytesPerSecond (64K).
	// Where MaxBytesPerSecond / MaxTransfers is below that, fewer
	// transfers run at once (see effectiveTransfers).
	MaxBytesPerSecond       int64
	MaxClientBytesPerSecond int64
	// KeepReleases is [UPDATE] KeepReleases: how many published releases
	// of each OS the release history keeps (1..1000, default 5); older
	// ones are removed when a release is published.
	KeepReleases int

	// Admin is [ADMIN]: the administrator who may update the server.
	Admin AdminConfig
	// SelfUpdate is [SELFUPDATE]: how the server checks and installs a
	// release of itself.
	SelfUpdate SelfUpdateConfig
	// Mail is [MAIL]: the SMTP server that carries the outcome of an update.
	Mail MailConfig
	// TLS is [SSL] (or TOTVS's [SSLConfigure] and [MPP] names): the
	// server's certificate, and whether plain TCP is accepted.
	TLS TLSConfig
	// Limits is [LIMITS]: how much the server takes on at once.
	Limits LimitsConfig
	// Log is [LOG]: where the logs go, in what form, and their rotation.
	Log LogConfig
	// Rollout is [ROLLOUT]: how a new release is rolled out in stages.
	Rollout RolloutConfig
	// HTTP is [HTTP]: the web console, its API and the metrics.
	HTTP HTTPConfig
	// Status is [STATUS]: the record of the clients and the digest.
	Status StatusConfig
}

// LimitsConfig is the [LIMITS] section. Over a cap, a client is told
// "server is busy, retry in N s" instead of being served, and tries again.
type LimitsConfig struct {
	// MaxConnections is [LIMITS] MaxConnections: the connections the
	// server holds at once, in total (1..1000000, default 4000).
	MaxConnections int
	// MaxPerAddress is [LIMITS] MaxPerAddress: the connections held at
	// once from one client IP address (1..1000000, default 1200, so that
	// 500 workstations behind one NAT or terminal server each hold a sync
	// and a staying session).
	MaxPerAddress int
	// MaxStaySessions is [LIMITS] MaxStaySessions: the sessions kept open
	// by "smartclient run" to hear of a server restart (0..1000000,
	// default 2000; 0 keeps none). A client over the cap runs its program
	// all the same; it only does not hear the countdown.
	MaxStaySessions int
	// Heartbeat is [LIMITS] Heartbeat: how often a staying session is sent
	// a heartbeat (seconds, 5..3600, default 60). A session that cannot
	// take one is dropped; a client that hears nothing for three times as
	// long takes the server as gone.
	Heartbeat time.Duration
	// HelloTimeout is [LIMITS] HelloTimeout: how long a new connection
	// may take for its TLS handshake, and then for its hello (seconds,
	// 1..600, default 10).
	HelloTimeout time.Duration
	// IdleTimeout is [LIMITS] IdleTimeout: how long the server waits for
	// a client's next request within a session (seconds, 10..86400,
	// default 300).
	IdleTimeout time.Duration
	// WriteTimeout is [LIMITS] WriteTimeout: how long one write to a
	// client may block, a client that stops reading being dropped after
	// it (seconds, 5..3600, default 60).
	WriteTimeout time.Duration
	// MemoryLimitMB is [LIMITS] MemoryLimitMB: the Go runtime's soft
	// memory limit, in MiB (64..1048576; 0, the default, leaves the
	// runtime's own, GOMEMLIMIT when set). Near it the garbage collector
	// works harder rather than letting the heap grow to twice what is
	// live; it never refuses a client.
	MemoryLimitMB int
}

// AdminConfig is the [ADMIN] section.
type AdminConfig struct {
	// User is [ADMIN] User, the administrator's login name (default
	// "admin").
	User string
	// PasswordHash is [ADMIN] PasswordHash, a bcrypt hash of cost 10 or
	// more as printed by "appserver passwd". It is empty when not set, and
	// then self-update is disabled: nobody can log in as administrator.
	PasswordHash string
}

// SelfUpdateConfig is the [SELFUPDATE] section.
type SelfUpdateConfig struct {
	// PublicKeys is [SELFUPDATE] PublicKey: the ed25519 keys a release's
	// signature may be made with. There can be several, so that a vendor
	// can rotate keys without a flag day. It is never empty when
	// Admin.PasswordHash is set.
	PublicKeys []ed25519.PublicKey
	// Carry is [SELFUPDATE] Carry: clean relative slash paths, inside the
	// installation folder, carried from the old installation into the new
	// one besides AppServer.ini, certificates and backups.
	Carry []string
	// HealthTimeout is [SELFUPDATE] HealthTimeout: how long a new server
	// has to start and answer before the old one is put back (seconds,
	// 5..600, default 30).
	HealthTimeout time.Duration
	// Feed is [SELFUPDATE] Feed: where the vendor's signed release feed
	// is, an http(s):// or file:// URL or an absolute path (a relative
	// path is made absolute against the configuration's folder); "" for
	// none. The server checks it at start and daily.
	Feed string
	// Notify is [SELFUPDATE] Notify: the administrator's e-mail address
	// (bare), mailed when the feed lists a newer release, and the outcome
	// of an update asked for without --notify; "" for none.
	Notify string
}

// MailConfig is the [MAIL] section, the SMTP server used to send the outcome
// of an update.
type MailConfig struct {
	// Host is [MAIL] Host; empty means no mail is sent.
	Host string
	// Port is [MAIL] Port (default 587, the submission port).
	Port int
	// From is [MAIL] From, the sender address; required when Host is set.
	From string
	// User and Password are [MAIL] User and Password, for SMTP AUTH; both
	// empty means no authentication.
	User     string
	Password string
	// StartTLS is [MAIL] StartTLS (default true): whether to require
	// STARTTLS before authenticating and sending.
	StartTLS bool
}

// SelfUpdateEnabled reports whether an administrator can log in, and so
// whether the server can be updated remotely at all.
func (c *Config) SelfUpdateEnabled() bool { return c.Admin.PasswordHash != "" }

// ConfigError is one problem with an AppServer.ini. It names the file, the
// section, the key and the problem, so that an administrator can go straight
// to the line to fix. Section and Key are empty when the problem is with the
// whole file (a syntax error); Key is empty when it is with a whole section.
type ConfigError struct {
	File    string // the file, as given to LoadConfig or ParseConfig
	Section string // e.g. "UPDATE", without brackets
	Key     string // e.g. "PathLinux"
	Problem string // the whole human-readable description of what is wrong
	Err     error  // the underlying cause, if any, already described in Problem
}

// Error reads, for example,
//
//	AppServer.ini: [UPDATE] PathLinux: folder "/srv/x" does not exist
//	AppServer.ini: [UPDATE] section is missing
func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Section != "" {
		b.WriteString("[" + e.Section + "] ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Problem)
	return b.String()
}

// Unwrap returns the underlying cause, so that errors.Is(err, fs.ErrNotExist)
// and the like work through a ConfigError.
func (e *ConfigError) Unwrap() error { return e.Err }

// The sections and keys we read, spelled as administrators know them from
// the documentation. ini.v1 lower-cases names (Insensitive), so these are
// looked up case-insensitively but always printed in this form.
const (
	sectionTCP        = "TCP"
	sectionUpdate     = "UPDATE"
	sectionAdmin      = "ADMIN"
	sectionSelfUpdate = "SELFUPDATE"
	sectionMail       = "MAIL"
	sectionLimits     = "LIMITS"

	keyPort           = "Port"
	keyEnable         = "Enable"
	keyPathWindows    = "PathWindows"
	keyPathLinux      = "PathLinux"
	keyPathMacOSX     = "PathMacOSX"
	keyBuild          = "Build"
	keyMinClientBuild = "MinClientBuild"
	keyPreserve       = "Preserve"
	keyPostInstall    = "PostInstall"
	keyPostInstallMax = "PostInstallTimeout"
	keyMaxTransfers   = "MaxTransfers"
	keyMaxBPS         = "MaxBytesPerSecond"
	keyMaxClientBPS   = "MaxClientBytesPerSecond"
	keyKeepReleases   = "KeepReleases"

	keyUser          = "User"
	keyPasswordHash  = "PasswordHash"
	keyPublicKey     = "PublicKey"
	keyCarry         = "Carry"
	keyHealthTimeout = "HealthTimeout"
	keyFeed          = "Feed"
	keyNotify        = "Notify"
	keyHost          = "Host"
	keyFrom          = "From"
	keyPassword      = "Password"
	keyStartTLS      = "StartTLS"

	keyMaxConnections  = "MaxConnections"
	keyMaxPerAddress   = "MaxPerAddress"
	keyMaxStaySessions = "MaxStaySessions"
	keyHeartbeat       = "Heartbeat"
	keyHelloTimeout    = "HelloTimeout"
	keyIdleTimeout     = "IdleTimeout"
	keyWriteTimeout    = "WriteTimeout"
	keyMemoryLimitMB   = "MemoryLimitMB"
)

// Defaults of the self-update keys.
const (
	defaultAdminUser     = "admin"
	defaultHealthTimeout = 30 * time.Second
	defaultMailPort      = 587
	// minPasswordCost is the lowest bcrypt cost accepted in [ADMIN]
	// PasswordHash: bcrypt's own default, below which a stolen
	// AppServer.ini gives up its password too cheaply.
	minPasswordCost = 10
)

// The keys allowed in the other sections that are ours, for the same reason
// as updateKeys.
var (
	adminKeys      = []string{keyUser, keyPasswordHash}
	selfUpdateKeys = []string{keyPublicKey, keyCarry, keyHealthTimeout, keyFeed, keyNotify}
	mailKeys       = []string{keyHost, keyPort, keyFrom, keyUser, keyPassword, keyStartTLS}
	limitsKeys     = []string{keyMaxConnections, keyMaxPerAddress, keyMaxStaySessions, keyHeartbeat, keyHelloTimeout, keyIdleTimeout, keyWriteTimeout, keyMemoryLimitMB}
)

// ourSections are the sections whose every key is ours: an unknown key in
// them is an error, and their keys are counted to find duplicates.
var ourSections = []struct {
	name string
	keys []string
}{
	{sectionUpdate, updateKeys},
	{sectionAdmin, adminKeys},
	{sectionSelfUpdate, selfUpdateKeys},
	{sectionMail, mailKeys},
	{sectionSSL, sslKeys},
	{sectionLimits, limitsKeys},
	{sectionLog, logKeys},
	{sectionRollout, rolloutKeys},
	{sectionStatus, statusKeys},
}

// updateKeys are the only keys allowed in [UPDATE]. The section is ours, so
// an unknown key there is almost certainly a typo that would otherwise
// silently disable part of the updates.
var updateKeys = []string{
	keyEnable, keyPathWindows, keyPathLinux, keyPathMacOSX,
	keyBuild, keyMinClientBuild, keyPreserve, keyPostInstall, keyPostInstallMax,
	keyMaxTransfers, keyMaxBPS, keyMaxClientBPS, keyKeepReleases,
}

// folderKeys maps each folder key to the client OS it serves, in GOOS terms.
var folderKeys = []struct{ key, goos string }{
	{keyPathWindows, "windows"},
	{keyPathLinux, "linux"},
	{keyPathMacOSX, "darwin"},
}

// LoadConfig reads the AppServer.ini at path and validates it with
// ParseConfig; relative folder paths are relative to the file's directory.
// Any error is an errors.Join of *ConfigError values.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		cause := err
		var pe *fs.PathError
		if errors.As(err, &pe) {
			cause = pe.Err // The path is already in the message.
		}
		return nil, errors.Join(&ConfigError{
			File:    path,
			Problem: fmt.Sprintf("cannot read the file: %v", cause),
			Err:     err,
		})
	}
	return ParseConfig(path, data, filepath.Dir(path))
}

// ParseConfig parses and validates the AppServer.ini text in data. file is
// used only in messages; relative folder paths resolve against baseDir.
//
// Every problem found is reported, not only the first, so that an
// administrator can fix a file in one go: the error is an errors.Join of
// *ConfigError values, which errors.As can pick out.
func ParseConfig(file string, data []byte, baseDir string) (*Config, error) {
	f, err := winini.LoadRepeats(data)
	if err != nil {
		// ini.v1 stops at the first syntax error, so nothing else can be
		// checked. Its messages quote the offending line with its line end.
		return nil, errors.Join(&ConfigError{
			File:    file,
			Problem: "not a valid INI file: " + strings.TrimSpace(err.Error()),
			Err:     err,
		})
	}

	// An absolute base makes the messages about relative paths say exactly
	// where they were looked for, whatever the working directory.
	if abs, err := filepath.Abs(baseDir); err == nil {
		baseDir = abs
	}
	v := &validator{file: file, baseDir: baseDir, uses: countKeys(data)}
	cfg := &Config{File: file, Folders: make(map[string]string)}
	v.tcp(f, cfg)
	v.update(f, cfg)
	v.admin(f, cfg)
	v.selfUpdate(f, cfg)
	v.mail(f, cfg)
	v.tls(f, cfg)
	v.limits(f, cfg)
	v.log(f, cfg)
	v.rollout(f, cfg)
	v.http(f, cfg)
	v.status(f, cfg)
	v.checkHTTP(cfg)
	if cfg.SelfUpdate.Notify != "" && cfg.Mail.Host == "" {
		v.add(sectionSelfUpdate, keyNotify, nil, "is set but [%s] %s is not, so no mail could be sent; set [%s] Host, or remove Notify", sectionMail, keyHost, sectionMail)
	}
	if len(v.errs) > 0 {
		return nil, errors.Join(v.errs...)
	}
	return cfg, nil
}

// validator collects the problems of one file.
type validator struct {
	file    string
	baseDir string
	// uses counts how often each key was written in [TCP] and in the
	// sections that are ours, by lower-case section and key name.
	uses map[string]map[string]*keyUse
	errs []error
}

func (v *validator) add(section, key string, cause error, format string, args ...any) {
	v.errs = append(v.errs, &ConfigError{
		File:    v.file,
		Section: section,
		Key:     key,
		Problem: fmt.Sprintf(format, args...),
		Err:     cause,
	})
}

// section returns the named section, or nil when the file has none.
func section(f *ini.File, name string) *ini.Section {
	sec, err := f.GetSection(name)
	if err != nil {
		return nil
	}
	return sec
}

func (v *validator) tcp(f *ini.File, cfg *Config) {
	sec := section(f, sectionTCP)
	if sec == nil {
		v.add(sectionTCP, "", nil, "section is missing; it must set %s, the port clients connect to", keyPort)
		return
	}
	// Other [TCP] keys (TOTVS's TYPE=TCPIP and friends) are not ours and
	// are ignored.
	val, present, ok := v.value(sec, sectionTCP, keyPort)
	switch {
	case !present:
		v.add(sectionTCP, keyPort, nil, "is missing; set it to the port clients connect to")
	case ok:
		port, err := winini.Port(val)
		if err != nil {
			v.add(sectionTCP, keyPort, err, "%q is not a valid port: want a number from 1 to 65535", val)
			return
		}
		cfg.Port = port
	}
}

func (v *validator) update(f *ini.File, cfg *Config) {
	sec := section(f, sectionUpdate)
	if sec == nil {
		v.add(sectionUpdate, "", nil, "section is missing; it must at least say Enable=0 or Enable=1")
		return
	}

	v.unknownKeys(sec, sectionUpdate, updateKeys)

	// Enable defaults to false when absent. When it is present but broken
	// we go on as if it were false, so that every other message stays true
	// whichever value the administrator meant.
	if val, _, ok := v.value(sec, sectionUpdate, keyEnable); ok {
		enable, err := winini.Bool(val)
		if err != nil {
			v.add(sectionUpdate, keyEnable, err, "%q is not a yes/no value; write 1 to enable updates or 0 to disable them", val)
		}
		cfg.Enable = enable
	}

	anyFolder := false
	for _, fk := range folderKeys {
		val, present, ok := v.value(sec, sectionUpdate, fk.key)
		if present {
			anyFolder = true
		}
		if !ok {
			continue
		}
		if val == "" {
			// An empty key while updates are off is taken as "not set",
			// as administrators blank a key rather than delete it.
			if cfg.Enable {
				v.add(sectionUpdate, fk.key, nil, "is empty; set it to the folder that holds the %s client files, or remove the line", fk.goos)
			}
			continue
		}
		if dir, ok := v.folder(fk.key, val, cfg.Enable); ok {
			cfg.Folders[fk.goos] = dir
		}
	}
	if cfg.Enable && !anyFolder {
		v.add(sectionUpdate, "", nil, "updates are enabled but no folder is set; set at least one of %s, %s, %s",
			keyPathWindows, keyPathLinux, keyPathMacOSX)
	}

	val, present, ok := v.value(sec, sectionUpdate, keyBuild)
	switch {
	case ok && val != "":
		cfg.Build = v.build(keyBuild, val)
	case cfg.Enable && (!present || ok):
		v.add(sectionUpdate, keyBuild, nil, "is required when updates are enabled: the build the update folders hold, as in 7.00.240501A")
	}
	// An empty MinClientBuild means "not set", like an absent one.
	if val, _, ok := v.value(sec, sectionUpdate, keyMinClientBuild); ok && val != "" {
		cfg.MinClientBuild = v.build(keyMinClientBuild, val)
	}
	switch {
	case !cfg.Build.SameScheme(cfg.MinClientBuild):
		v.add(sectionUpdate, keyMinClientBuild, nil,
			"%s is a %s but Build %s is a %s: builds of different schemes cannot be ordered; write both the same way",
			cfg.MinClientBuild, cfg.MinClientBuild.Scheme(), cfg.Build, cfg.Build.Scheme())
		cfg.MinClientBuild = version.Build{}
	case !cfg.Build.IsZero() && !cfg.MinClientBuild.IsZero() && cfg.MinClientBuild.Compare(cfg.Build) > 0:
		v.add(sectionUpdate, keyMinClientBuild, nil,
			"%s is newer than Build %s, so even clients updated to Build would be refused", cfg.MinClientBuild, cfg.Build)
	}

	if val, _, ok := v.value(sec, sectionUpdate, keyPreserve); ok {
		for _, item := range winini.List(val) {
			if problem := checkPreservePath(item); problem != "" {
				v.add(sectionUpdate, keyPreserve, nil, "%s %s", winini.Quote(item), problem)
				continue
			}
			cfg.Preserve = append(cfg.Preserve, item)
		}
	}

	cfg.PostInstallTimeout = 2 * time.Minute
	if val, _, ok := v.value(sec, sectionUpdate, keyPostInstall); ok && val != "" {
		if problem := checkPreservePath(val); problem != "" {
			v.add(sectionUpdate, keyPostInstall, nil, "%s %s", winini.Quote(val), problem)
		} else {
			cfg.PostInstall = val
		}
	}
	if val, _, ok := v.value(sec, sectionUpdate, keyPostInstallMax); ok && val != "" {
		n, err := winini.Digits(val)
		if err != nil || n < 1 || n > 3600 {
			v.add(sectionUpdate, keyPostInstallMax, nil, "%q is not a number of seconds from 1 to 3600", val)
		} else {
			cfg.PostInstallTimeout = time.Duration(n) * time.Second
		}
	}

	cfg.KeepReleases = defaultKeepReleases
	if val, _, ok := v.value(sec, sectionUpdate, keyKeepReleases); ok && val != "" {
		n, err := winini.Digits(val)
		if err != nil || n < 1 || n > maxKeepReleases {
			v.add(sectionUpdate, keyKeepReleases, nil, "%q is not a number of releases from 1 to %d", val, maxKeepReleases)
		} else {
			cfg.KeepReleases = n
		}
	}

	cfg.MaxTransfers = defaultMaxTransfers()
	if val, _, ok := v.value(sec, sectionUpdate, keyMaxTransfers); ok && val != "" {
		n, err := winini.Digits(val)
		if err != nil || n < 1 || n > maxMaxTransfers {
			v.add(sectionUpdate, keyMaxTransfers, nil, "%q is not a number of transfers from 1 to %d", val, maxMaxTransfers)
		} else {
			cfg.MaxTransfers = n
		}
	}
	for _, k := range []struct {
		key string
		set *int64
	}{{keyMaxBPS, &cfg.MaxBytesPerSecond}, {keyMaxClientBPS, &cfg.MaxClientBytesPerSecond}} {
		if val, _, ok := v.value(sec, sectionUpdate, k.key); ok && val != "" {
			n, err := parseBytesPerSecond(val)
			switch {
			case err != nil:
				v.add(sectionUpdate, k.key, nil, "%q %v", val, err)
			case n != 0 && n < minSlotBytesPerSecond:
				// A client gives up on a transfer slower than its
				// minimum rate: a lower limit would fail every one.
				v.add(sectionUpdate, k.key, nil, "%q is below %dK: a client gives up on a transfer slower than %dK a second (smartclient's minimum rate), so a transfer must be given at least twice that; write %dK or more, or 0 for no limit",
					val, minSlotBytesPerSecond>>10, clientMinRate>>10, minSlotBytesPerSecond>>10)
			default:
				*k.set = n
			}
		}
	}
}

// The releases kept per OS by default, and at most.
const (
	defaultKeepReleases = 5
	maxKeepReleases     = 1000
)

// Ranges of the admission keys of [UPDATE].
const (
	maxMaxTransfers = 100000
	// minBytesPerSecond is the smallest bandwidth limit: below 1 KiB/s a
	// client would need minutes for one 64 KiB write.
	minBytesPerSecond = 1 << 10
	maxBytesPerSecond = 1 << 40
)

// parseBytesPerSecond reads a bandwidth: 0 for no limit, else a whole
// number of bytes a second from minBytesPerSecond to maxBytesPerSecond,
// optionally followed by K, M or G (any case), which multiply it by 1024,
// 1024² or 1024³. The error completes a sentence that begins with the
// value.
func parseBytesPerSecond(val string) (int64, error) {
	unit := int64(1)
	digits := val
	if n := len(val); n > 0 {
		switch val[n-1] {
		case 'k', 'K':
			unit, digits = 1<<10, val[:n-1]
		case 'm', 'M':
			unit, digits = 1<<20, val[:n-1]
		case 'g', 'G':
			unit, digits = 1<<30, val[:n-1]
		}
	}
	bad := fmt.Errorf("is not a number of bytes a second: write 0 for no limit, or a whole number from %d (1K) to %d (1024G), optionally followed by K, M or G (1024-based), as in 10M", int64(minBytesPerSecond), int64(maxBytesPerSecond))
	n, err := winini.Digits(digits)
	if err != nil || n < 0 || int64(n) > maxBytesPerSecond/unit {
		return 0, bad
	}
	bps := int64(n) * unit
	if bps != 0 && bps < minBytesPerSecond {
		return 0, bad
	}
	return bps, nil
}

// bcryptHash matches the modular crypt form of a bcrypt hash: version,
// two-digit cost, then 22 characters of salt and 31 of hash in bcrypt's
// base64 alphabet. bcrypt.Cost alone checks only the prefix.
var bcryptHash = regexp.MustCompile(`^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$`)

func (v *validator) admin(f *ini.File, cfg *Config) {
	cfg.Admin.User = defaultAdminUser
	sec := section(f, sectionAdmin)
	if sec == nil {
		return
	}
	v.unknownKeys(sec, sectionAdmin, adminKeys)
	// An empty User is taken as "not set", as administrators blank a key
	// rather than delete it.
	if val, _, ok := v.value(sec, sectionAdmin, keyUser); ok && val != "" {
		if strings.ContainsFunc(val, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) || len(val) > 64 {
			v.add(sectionAdmin, keyUser, nil, "%q is not a valid user name: want up to 64 characters without spaces or control characters", val)
		} else {
			cfg.Admin.User = val
		}
	}
	// The hash is not quoted in messages: it is not the password, but it is
	// still better kept out of logs.
	if val, _, ok := v.value(sec, sectionAdmin, keyPasswordHash); ok && val != "" {
		cost, err := bcrypt.Cost([]byte(val))
		switch {
		case err != nil || !bcryptHash.MatchString(val):
			v.add(sectionAdmin, keyPasswordHash, err, "is not a bcrypt hash (60 characters starting with $2a$, $2b$ or $2y$); make one with \"appserver passwd\"")
		case cost < minPasswordCost:
			v.add(sectionAdmin, keyPasswordHash, nil, "bcrypt cost %d is below %d, too cheap to guess; make a new hash with \"appserver passwd\"", cost, minPasswordCost)
		default:
			cfg.Admin.PasswordHash = val
		}
	}
}

func (v *validator) selfUpdate(f *ini.File, cfg *Config) {
	cfg.SelfUpdate.HealthTimeout = defaultHealthTimeout
	sec := section(f, sectionSelfUpdate)
	if sec == nil {
		sec = ini.Empty().Section(sectionSelfUpdate) // for the PublicKey check below
	}
	v.unknownKeys(sec, sectionSelfUpdate, selfUpdateKeys)

	// Several keys are written comma-separated on one line, not as repeated
	// PublicKey lines: a repeated key is an error in every section of ours,
	// as it is usually a forgotten edit.
	keyBroken := false
	val, present, ok := v.value(sec, sectionSelfUpdate, keyPublicKey)
	if present && !ok {
		keyBroken = true
	}
	if ok {
		for _, item := range winini.List(val) {
			key, err := release.ParsePublicKey(item)
			switch {
			case err != nil:
				v.add(sectionSelfUpdate, keyPublicKey, err, "%s", strings.TrimPrefix(err.Error(), release.ErrKeyFormat.Error()+": "))
				keyBroken = true
			case slices.ContainsFunc(cfg.SelfUpdate.PublicKeys, func(k ed25519.PublicKey) bool { return k.Equal(key) }):
				v.add(sectionSelfUpdate, keyPublicKey, nil, "%q is listed twice", item)
				keyBroken = true
			default:
				cfg.SelfUpdate.PublicKeys = append(cfg.SelfUpdate.PublicKeys, key)
			}
		}
	}
	// Without a key every release would be refused at the first update;
	// better to say so at start-up. A broken key has been reported already.
	if cfg.Admin.PasswordHash != "" && len(cfg.SelfUpdate.PublicKeys) == 0 && !keyBroken {
		v.add(sectionSelfUpdate, keyPublicKey, nil,
			"is required when [%s] %s is set (self-update enabled): the release signing key(s), as ed25519:BASE64", sectionAdmin, keyPasswordHash)
	}

	if val, _, ok := v.value(sec, sectionSelfUpdate, keyCarry); ok {
		for _, item := range winini.List(val) {
			if problem := checkRelPath(item, "the server's installation folder"); problem != "" {
				v.add(sectionSelfUpdate, keyCarry, nil, "%s %s", winini.Quote(item), problem)
				continue
			}
			cfg.SelfUpdate.Carry = append(cfg.SelfUpdate.Carry, item)
		}
	}

	if val, _, ok := v.value(sec, sectionSelfUpdate, keyHealthTimeout); ok && val != "" {
		n, err := winini.Digits(val)
		if err != nil || n < 5 || n > 600 {
			v.add(sectionSelfUpdate, keyHealthTimeout, nil, "%q is not a number of seconds from 5 to 600", val)
		} else {
			cfg.SelfUpdate.HealthTimeout = time.Duration(n) * time.Second
		}
	}

	if val, _, ok := v.value(sec, sectionSelfUpdate, keyFeed); ok && val != "" {
		feed := val
		if !strings.Contains(val, "://") && !filepath.IsAbs(val) {
			feed = filepath.Join(v.baseDir, val)
		}
		switch err := release.CheckFeedSource(feed); {
		case err != nil:
			v.add(sectionSelfUpdate, keyFeed, err, "%s", strings.TrimPrefix(err.Error(), release.ErrSource.Error()+": "))
		case len(cfg.SelfUpdate.PublicKeys) == 0 && !keyBroken:
			v.add(sectionSelfUpdate, keyFeed, nil, "is set but [%s] %s is not: the feed is verified with the release signing key(s), as ed25519:BASE64", sectionSelfUpdate, keyPublicKey)
		default:
			cfg.SelfUpdate.Feed = feed
		}
	}
	if val, _, ok := v.value(sec, sectionSelfUpdate, keyNotify); ok && val != "" {
		addr, err := parseMailAddress(val)
		if err != nil {
			v.add(sectionSelfUpdate, keyNotify, err, "%q is not one e-mail address (admin@example.com)", val)
		} else {
			cfg.SelfUpdate.Notify = addr
		}
	}
}

func (v *validator) limits(f *ini.File, cfg *Config) {
	cfg.Limits = LimitsConfig{
		MaxConnections:  defaultMaxConnections,
		MaxPerAddress:   defaultMaxPerAddress,
		MaxStaySessions: defaultMaxStaySessions,
		Heartbeat:       defaultHeartbeat,
		HelloTimeout:    defaultHelloTimeout,
		IdleTimeout:     defaultIdleTimeout,
		WriteTimeout:    defaultWriteTimeout,
	}
	sec := section(f, sectionLimits)
	if sec == nil {
		return
	}
	v.unknownKeys(sec, sectionLimits, limitsKeys)
	for _, k := range []struct {
		key      string
		min, max int
		what     string
		set      func(int)
	}{
		{keyMaxConnections, 1, 1000000, "number of connections", func(n int) { cfg.Limits.MaxConnections = n }},
		{keyMaxPerAddress, 1, 1000000, "number of connections", func(n int) { cfg.Limits.MaxPerAddress = n }},
		{keyMaxStaySessions, 0, 1000000, "number of sessions", func(n int) { cfg.Limits.MaxStaySessions = n }},
		{keyHeartbeat, 5, 3600, "number of seconds", func(n int) { cfg.Limits.Heartbeat = time.Duration(n) * time.Second }},
		{keyHelloTimeout, 1, 600, "number of seconds", func(n int) { cfg.Limits.HelloTimeout = time.Duration(n) * time.Second }},
		{keyIdleTimeout, 10, 86400, "number of seconds", func(n int) { cfg.Limits.IdleTimeout = time.Duration(n) * time.Second }},
		{keyWriteTimeout, 5, 3600, "number of seconds", func(n int) { cfg.Limits.WriteTimeout = time.Duration(n) * time.Second }},
		{keyMemoryLimitMB, 0, 1048576, "number of MiB", func(n int) { cfg.Limits.MemoryLimitMB = n }},
	} {
		val, _, ok := v.value(sec, sectionLimits, k.key)
		if !ok || val == "" {
			continue
		}
		n, err := winini.Digits(val)
		if err != nil || n < k.min || n > k.max {
			v.add(sectionLimits, k.key, err, "%q is not a %s from %d to %d", val, k.what, k.min, k.max)
			continue
		}
		if k.key == keyMemoryLimitMB && n > 0 && n < minMemoryLimitMB {
			v.add(sectionLimits, k.key, nil, "%d MiB is below the %d MiB a server needs to start; 0 leaves the Go runtime's limit", n, minMemoryLimitMB)
			continue
		}
		k.set(n)
	}
}

func (v *validator) mail(f *ini.File, cfg *Config) {
	cfg.Mail.Port = defaultMailPort
	cfg.Mail.StartTLS = true
	sec := section(f, sectionMail)
	if sec == nil {
		return
	}
	v.unknownKeys(sec, sectionMail, mailKeys)

	// Every key is checked even without a Host, so that a mistake shows
	// before the day mail is switched on.
	if val, _, ok := v.value(sec, sectionMail, keyHost); ok && val != "" {
		_, _, err := net.SplitHostPort(val)
		switch {
		case strings.ContainsFunc(val, func(r rune) bool { return unicode.IsSpace(r) || r == '/' || !unicode.IsPrint(r) }):
			v.add(sectionMail, keyHost, nil, "%q is not a host name or address", val)
		case err == nil:
			v.add(sectionMail, keyHost, nil, "%q includes a port; give the host alone and the port in %s", val, keyPort)
		default:
			cfg.Mail.Host = val
		}
	}
	if val, _, ok := v.value(sec, sectionMail, keyPort); ok && val != "" {
		port, err := winini.Port(val)
		if err != nil {
			v.add(sectionMail, keyPort, err, "%q is not a valid port: want a number from 1 to 65535", val)
		} else {
			cfg.Mail.Port = port
		}
	}
	fromVal, fromPresent, fromOK := v.value(sec, sectionMail, keyFrom)
	switch {
	case fromOK && fromVal != "":
		if _, err := mail.ParseAddress(fromVal); err != nil {
			v.add(sectionMail, keyFrom, err, "%q is not an e-mail address: %v", fromVal, err)
		} else {
			cfg.Mail.From = fromVal
		}
	case cfg.Mail.Host != "" && (!fromPresent || fromOK):
		v.add(sectionMail, keyFrom, nil, "is required when %s is set: the sender address of the update reports", keyHost)
	}
	// A duplicated User or Password has been reported by value; only when
	// both can be read is it worth saying that one lacks the other.
	user, userPresent, userOK := v.value(sec, sectionMail, keyUser)
	password, passwordPresent, passwordOK := v.value(sec, sectionMail, keyPassword)
	if userOK == userPresent && passwordOK == passwordPresent {
		switch {
		case user != "" && password == "":
			v.add(sectionMail, keyPassword, nil, "is missing while %s is set; give both or neither", keyUser)
		case user == "" && password != "":
			v.add(sectionMail, keyUser, nil, "is missing while %s is set; give both or neither", keyPassword)
		default:
			cfg.Mail.User, cfg.Mail.Password = user, password
		}
	}
	if val, _, ok := v.value(sec, sectionMail, keyStartTLS); ok {
		b, err := winini.Bool(val)
		if err != nil {
			v.add(sectionMail, keyStartTLS, err, "%q is not a yes/no value; write 1 to require STARTTLS or 0 to send in the clear", val)
		} else {
			cfg.Mail.StartTLS = b
		}
	}
}

// value returns the value of key in sec. present reports whether the key is
// in the file at all; ok reports whether val can be used. A key written more
// than once, or written without '=', is reported here, and ok is false so
// that the caller does not pile further messages on the same line.
func (v *validator) value(sec *ini.Section, section, key string) (val string, present, ok bool) {
	if !sec.HasKey(key) {
		return "", false, false
	}
	k := sec.Key(key)
	vals := k.ValueWithShadows()
	n := len(vals)
	// ValueWithShadows leaves out empty values, so "PathLinux=" next to
	// "PathLinux=/srv/x" would not show up there; the raw count does.
	use := v.uses[strings.ToLower(section)][strings.ToLower(key)]
	if use != nil && use.count > n {
		n = use.count
	}
	if k.Value() == "" && len(vals) > 0 && n < len(vals)+1 {
		n = len(vals) + 1
	}
	if n > 1 {
		v.add(section, key, nil, "is given %d times; keep only one", n)
		return "", true, false
	}
	// With AllowBooleanKeys a bare "Enable" means Enable=1, as in my.cnf;
	// for any other key a bare name is a forgotten value.
	if use != nil && use.bare && key != keyEnable {
		v.add(section, key, nil, "has no value; write %s=VALUE", key)
		return "", true, false
	}
	return winini.Value(k), true, true
}

// folder resolves a folder key's value against the base directory and, when
// updates are enabled, checks that it is an existing folder: a missing
// update folder must stop the server at start-up, not fail the first client.
//
// On Windows a path rooted without a drive, as \Updates\windows, is taken
// on the drive (or UNC share) of the base directory, as the relative ones
// are taken in it: the process's current drive depends on how the server
// was started (a service starts in C:\Windows\system32). A drive without a
// root, as D:Updates, is refused, as the current folder of that drive is
// not ours to know.
func (v *validator) folder(key, val string, mustExist bool) (string, bool) {
	p := val
	// Saying what a relative path was resolved against answers the usual
	// "but the folder is there" puzzle.
	var rel string
	switch vol := filepath.VolumeName(val); {
	case filepath.IsAbs(val):
	case vol != "":
		v.add(sectionUpdate, key, nil, "%s is relative to the current folder of drive %s, which depends on how the server was started; write the full path, as in %s",
			winini.Quote(val), vol, winini.Quote(vol+string(filepath.Separator)+val[len(vol):]))
		return "", false
	case val != "" && os.IsPathSeparator(val[0]):
		base := filepath.VolumeName(v.baseDir)
		p = base + val
		rel = fmt.Sprintf(" (%s is on the drive of %s)", winini.Quote(val), winini.Quote(v.baseDir))
	default:
		p = filepath.Join(v.baseDir, val)
		rel = fmt.Sprintf(" (%s is relative to %s)", winini.Quote(val), winini.Quote(v.baseDir))
	}
	dir, err := filepath.Abs(p)
	if err != nil {
		v.add(sectionUpdate, key, err, "cannot resolve %s: %v", winini.Quote(val), err)
		return "", false
	}
	if !mustExist {
		return dir, true
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		v.add(sectionUpdate, key, err, "folder %s does not exist%s", winini.Quote(dir), rel)
	case err != nil:
		cause := err
		var pe *fs.PathError
		if errors.As(err, &pe) {
			cause = pe.Err
		}
		v.add(sectionUpdate, key, err, "cannot use folder %s: %v%s", winini.Quote(dir), cause, rel)
	case fi.Mode().IsRegular():
		v.add(sectionUpdate, key, nil, "%s is a file, not a folder%s", winini.Quote(dir), rel)
	case !fi.IsDir():
		v.add(sectionUpdate, key, nil, "%s is not a folder%s", winini.Quote(dir), rel)
	default:
		return dir, true
	}
	return "", false
}

// build parses a build key's value, reporting a bad one.
func (v *validator) build(key, val string) version.Build {
	b, err := version.Parse(val)
	if err != nil {
		v.add(sectionUpdate, key, err, "%v", err)
		return version.Build{}
	}
	return b
}

// originalName returns a key name as the administrator wrote it, since
// ini.v1 hands names back lower-cased.
func (v *validator) originalName(section, lower string) string {
	if use := v.uses[strings.ToLower(section)][lower]; use != nil {
		return use.name
	}
	return lower
}

// checkPreservePath returns what is wrong with a Preserve item, or "". The
// items are matched against manifest paths on every client OS, so they
// must be in the manifest's form: relative, slash-separated and clean, with
// nothing that could reach outside the install folder.
func checkPreservePath(p string) string {
	return checkRelPath(p, "the client's install folder")
}

// checkRelPath returns what is wrong with p as a clean relative slash path
// inside folder (as named in messages), or "".
func checkRelPath(p, folder string) string {
	switch {
	case strings.Contains(p, `\`):
		return "contains a backslash; separate folders with /"
	case strings.HasPrefix(p, "/"):
		return "is absolute; give a path relative to " + folder
	case strings.Contains(p, ":"):
		return "contains a colon (a drive letter?); give a path relative to " + folder
	case p == ".." || strings.HasPrefix(p, "../") || strings.HasSuffix(p, "/..") || strings.Contains(p, "/../"):
		return "goes outside " + folder + " (..)"
	case p == ".":
		return "is " + folder + " itself; name files or folders inside it"
	case path.Clean(p) != p:
		return fmt.Sprintf("is not a clean relative path; write %q", path.Clean(p))
	}
	return ""
}

// unknownKeys reports every key of sec, one of our sections, that is not
// in known.
func (v *validator) unknownKeys(sec *ini.Section, section string, known []string) {
	for _, k := range sec.Keys() {
		if !slices.ContainsFunc(known, func(s string) bool { return strings.EqualFold(s, k.Name()) }) {
			name := v.originalName(section, k.Name())
			v.add(section, name, nil, "unknown key%s; known keys are %s",
				suggest(k.Name(), known), strings.Join(known, ", "))
		}
	}
}

// suggest returns " (did you mean X?)" for an unknown key that is one or
// two edits away from a known one, as "PathLinx" is from PathLinux.
func suggest(name string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(name), strings.ToLower(k)); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// keyUse records how a key was written in the file.
type keyUse struct {
	name  string // as first written, for messages
	count int    // how many lines set it
	bare  bool   // some line named it without '='
}

// countKeys counts, for [TCP] and our own sections, how many lines set each
// key. ini.v1 cannot tell us that exactly (ValueWithShadows drops empty
// values and names come back lower-cased), so these sections are read a
// second time as raw text, with every other detail of parsing left to
// ini.v1.
func countKeys(data []byte) map[string]map[string]*keyUse {
	sections := []string{strings.ToLower(sectionTCP), strings.ToLower(sectionHTTP)}
	for _, s := range ourSections {
		sections = append(sections, strings.ToLower(s.name))
	}
	uses := make(map[string]map[string]*keyUse)
	// Shadows are not needed to count lines, and without them a repeated
	// bare key elsewhere cannot fail this parse (see ParseConfig).
	f, err := winini.LoadRaw(data, sections...)
	if err != nil {
		// ParseConfig's parse succeeded, and this one parses strictly less.
		return uses
	}
	for _, name := range sections {
		sec := section(f, name)
		if sec == nil {
			continue
		}
		m := make(map[string]*keyUse)
		uses[name] = m
		for line := range strings.SplitSeq(sec.Body(), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || line[0] == ';' || line[0] == '#' {
				continue
			}
			key, _, hasValue := strings.Cut(line, "=")
			if !hasValue {
				// A bare key may still carry an inline comment.
				if i := strings.Index(key, " ;"); i >= 0 {
					key = key[:i]
				}
				if i := strings.Index(key, " #"); i >= 0 {
					key = key[:i]
				}
			}
			key = strings.Trim(strings.TrimSpace(key), "\"`")
			if key == "" {
				continue
			}
			lower := strings.ToLower(key)
			use := m[lower]
			if use == nil {
				use = &keyUse{name: key}
				m[lower] = use
			}
			use.count++
			if !hasValue {
				use.bare = true
			}
		}
	}
	return uses
}
