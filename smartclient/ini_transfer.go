package smartclient

import (
	"fmt"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/internal/winini"
	"gopkg.in/ini.v1"
)

// Transfer is what [UPDATE] in smartclient.ini says of the bounds of a
// sync's file transfer (see Options.MinRate and Options.Deadline): 0 for
// a key not set (the default), negative for "off".
type Transfer struct {
	MinRate    int64         // MinRate=, in KiB/s in the file, bytes a second here
	RateWindow time.Duration // RateWindow=, seconds or a Go duration ("90s")
	Deadline   time.Duration // Deadline=, seconds or a Go duration ("2h")
	// ConnectRetry=, seconds or a Go duration, or off: how long a server
	// that cannot be reached is tried again (Options.ConnectRetryFor).
	ConnectRetry time.Duration
}

// parseTransfer reads the transfer's bounds from [UPDATE] of f, if any.
// Other keys of the section are left to their own readers.
func parseTransfer(file string, f *ini.File) (Transfer, error) {
	var tr Transfer
	sec, err := f.GetSection("update")
	if err != nil {
		return tr, nil
	}
	bad := func(key string, err error) error {
		return &ClientINIError{File: file, Section: "update", Key: key, Err: err}
	}
	if v, ok := rawKey(sec, "minrate"); ok {
		switch n, err := winini.Digits(v); {
		case isOff(v):
			tr.MinRate = -1
		case err != nil:
			return tr, bad("minrate", fmt.Errorf("%q is not a rate in KiB/s (or off)", v))
		default:
			tr.MinRate = int64(n) << 10
		}
	}
	for _, k := range []struct {
		key string
		to  *time.Duration
	}{{"ratewindow", &tr.RateWindow}, {"deadline", &tr.Deadline}, {"connectretry", &tr.ConnectRetry}} {
		v, ok := rawKey(sec, k.key)
		if !ok {
			continue
		}
		if (k.key == "deadline" || k.key == "connectretry") && isOff(v) {
			*k.to = -1
			continue
		}
		d, err := parseSeconds(v)
		if err != nil {
			return tr, bad(k.key, err)
		}
		if k.key == "connectretry" && d == 0 {
			d = -1 // 0 says "do not retry", not "the default"
		}
		*k.to = d
	}
	if tr.RateWindow < 0 || tr.RateWindow > 0 && tr.RateWindow < time.Second {
		return tr, bad("ratewindow", fmt.Errorf("%s is shorter than a second", tr.RateWindow))
	}
	return tr, nil
}

// rawKey returns the value of key in sec, trimmed, if it is set and not
// empty.
func rawKey(sec *ini.Section, key string) (string, bool) {
	if !sec.HasKey(key) {
		return "", false
	}
	v := strings.TrimSpace(winini.Value(sec.Key(key)))
	return v, v != ""
}

func isOff(v string) bool { return strings.EqualFold(v, "off") }

// parseSeconds reads plain seconds ("1800") or a Go duration ("30m").
func parseSeconds(v string) (time.Duration, error) {
	if n, err := winini.Digits(v); err == nil {
		if n > int(24*time.Hour*365/time.Second) {
			return 0, fmt.Errorf("%q is too long", v)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a number of seconds or a duration such as 30m", v)
	}
	return d, nil
}

// Apply sets the bounds of o that the file sets and o does not.
func (tr Transfer) Apply(o *Options) {
	if o.MinRate == 0 {
		o.MinRate = tr.MinRate
	}
	if o.RateWindow == 0 {
		o.RateWindow = tr.RateWindow
	}
	if o.Deadline == 0 {
		o.Deadline = tr.Deadline
	}
	if o.ConnectRetryFor == 0 {
		o.ConnectRetryFor = tr.ConnectRetry
	}
}
