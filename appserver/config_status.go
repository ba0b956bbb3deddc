package appserver

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/internal/winini"
	"gopkg.in/ini.v1"
)

// HTTPConfig is the [HTTP] section: the administrator's web console, its
// JSON API and the Prometheus metrics, on a listener of their own.
type HTTPConfig struct {
	// Listen is [HTTP] Listen: the host:port the console listens on
	// (default 127.0.0.1:8088); "" when the console is off (Listen=off).
	// On a loopback address it is plain HTTP and open to whoever can
	// reach it on this machine; on any other address it is HTTPS with the
	// server's certificate and every page needs the [ADMIN] login.
	Listen string
}

// Loopback reports whether the console listens on a loopback address
// only: then it is served over plain HTTP without a login.
func (c HTTPConfig) Loopback() bool { return isLoopbackListen(c.Listen) }

// StatusConfig is the [STATUS] section: the record of the clients'
// syncs and the administrator's daily digest.
type StatusConfig struct {
	// KeepDays is [STATUS] KeepDays: how long the history of each
	// client's syncs is kept (1..3650 days, default 90). A client's last
	// state is kept whatever its age.
	KeepDays int
	// StaleDays is [STATUS] StaleDays: a client not seen for this long is
	// stale, shown so on the console and listed in the digest (1..365
	// days, default 7).
	StaleDays int
	// Notify is [STATUS] Notify: the address mailed a daily digest when
	// clients failed or went stale; "" for none. It needs [MAIL] Host.
	Notify string
	// DigestAt is [STATUS] DigestAt: the local time of day the digest is
	// sent (HH:MM, default 07:30), as an offset from midnight.
	DigestAt time.Duration
}

// StaleAfter is how long a client may go unseen before it is stale.
func (c StatusConfig) StaleAfter() time.Duration {
	return time.Duration(c.StaleDays) * 24 * time.Hour
}

const (
	sectionHTTP   = "HTTP"
	sectionStatus = "STATUS"

	keyListen    = "Listen"
	keyKeepDays  = "KeepDays"
	keyStaleDays = "StaleDays"
	keyDigestAt  = "DigestAt"

	defaultHTTPListen = "127.0.0.1:8088"
)

var (
	statusKeys = []string{keyKeepDays, keyStaleDays, keyNotify, keyDigestAt}

	defaultStatus = StatusConfig{KeepDays: 90, StaleDays: 7, DigestAt: 7*time.Hour + 30*time.Minute}
)

// isLoopbackListen reports whether addr (host:port) names a loopback
// address only: 127.0.0.0/8, ::1 or localhost.
func isLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (v *validator) http(f *ini.File, cfg *Config) {
	cfg.HTTP = HTTPConfig{Listen: defaultHTTPListen}
	sec := section(f, sectionHTTP)
	if sec == nil {
		return
	}
	// TOTVS's own web server is configured in [HTTP] too (Enable, Path,
	// Port): its keys are not ours and are left alone.
	val, _, ok := v.value(sec, sectionHTTP, keyListen)
	if !ok || val == "" {
		return
	}
	switch strings.ToLower(val) {
	case "off", "0", "no", "false":
		cfg.HTTP.Listen = ""
		return
	}
	host, port, err := net.SplitHostPort(val)
	switch {
	case err != nil:
		v.add(sectionHTTP, keyListen, err, "%q is not an address to listen on: write host:port (127.0.0.1:8088, 0.0.0.0:8443, [::]:8443), or off", val)
		return
	case host != "" && !strings.EqualFold(host, "localhost") && !validIP(host):
		v.add(sectionHTTP, keyListen, nil, "%q is not an IP address: write the address of one of this machine's interfaces (or 0.0.0.0 for all), then :port", host)
		return
	}
	if n, perr := strconv.Atoi(port); perr != nil || n < 0 || n > 65535 {
		v.add(sectionHTTP, keyListen, nil, "%q is not a port from 0 to 65535", port)
		return
	}
	cfg.HTTP.Listen = val
}

func validIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

func (v *validator) status(f *ini.File, cfg *Config) {
	cfg.Status = defaultStatus
	sec := section(f, sectionStatus)
	if sec == nil {
		return
	}
	v.unknownKeys(sec, sectionStatus, statusKeys)
	for _, k := range []struct {
		key      string
		min, max int
		set      *int
	}{
		{keyKeepDays, 1, 3650, &cfg.Status.KeepDays},
		{keyStaleDays, 1, 365, &cfg.Status.StaleDays},
	} {
		val, _, ok := v.value(sec, sectionStatus, k.key)
		if !ok || val == "" {
			continue
		}
		n, err := winini.Digits(val)
		if err != nil || n < k.min || n > k.max {
			v.add(sectionStatus, k.key, err, "%q is not a number of days from %d to %d", val, k.min, k.max)
			continue
		}
		*k.set = n
	}
	if val, _, ok := v.value(sec, sectionStatus, keyNotify); ok && val != "" {
		addr, err := parseMailAddress(val)
		if err != nil {
			v.add(sectionStatus, keyNotify, err, "%q is not one e-mail address (admin@example.com)", val)
		} else {
			cfg.Status.Notify = addr
		}
	}
	if val, _, ok := v.value(sec, sectionStatus, keyDigestAt); ok && val != "" {
		t, err := time.Parse("15:04", val)
		if err != nil {
			v.add(sectionStatus, keyDigestAt, err, "%q is not a time of day as HH:MM (07:30)", val)
		} else {
			cfg.Status.DigestAt = time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute
		}
	}
}

// checkHTTP checks what [HTTP] needs from other sections: a console
// beyond loopback needs someone who can log in.
func (v *validator) checkHTTP(cfg *Config) {
	if cfg.HTTP.Listen != "" && !cfg.HTTP.Loopback() && cfg.Admin.PasswordHash == "" {
		v.add(sectionHTTP, keyListen, nil, "%s is beyond loopback, where the console needs the [%s] login, but [%s] %s is not set; set it with \"appserver passwd\", or listen on 127.0.0.1", cfg.HTTP.Listen, sectionAdmin, sectionAdmin, keyPasswordHash)
	}
	if cfg.Status.Notify != "" && cfg.Mail.Host == "" {
		v.add(sectionStatus, keyNotify, nil, "is set but [%s] %s is not, so no mail could be sent; set [%s] Host, or remove Notify", sectionMail, keyHost, sectionMail)
	}
}
