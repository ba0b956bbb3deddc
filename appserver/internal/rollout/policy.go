package rollout

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
)

// Policy is how releases are rolled out: [ROLLOUT] in AppServer.ini.
type Policy struct {
	// Pilot names the pilot ring: host name patterns and client ids (see
	// CheckPattern). Empty means no staging: every release goes to
	// everyone at once.
	Pilot []string
	// Delay promotes a rollout this long after its pilot phase began;
	// 0 never promotes by time.
	Delay time.Duration
	// MinSuccesses promotes a rollout once this many pilot clients have
	// reported a successful update of it; 0 never promotes by successes.
	MinSuccesses int
	// HaltPercent halts a rollout when the failure rate of a ring is above
	// it (1..100; 100 never halts).
	HaltPercent float64
	// MinReports is how many reports (successes and failures) a ring needs
	// before its failure rate is weighed, so that the first failure of the
	// first client does not halt everything (at least 1).
	MinReports int
}

// Client is a client as it says in its hello.
type Client struct {
	ID    string // its client id, 32 hexadecimal digits
	Host  string // its host name, as it reports it
	Build string // the build it has installed, "" for none
}

// idLen is the length of a client id: 128 random bits in hexadecimal.
const idLen = 32

// maxPattern bounds a pattern, as a host name is at most 253 bytes.
const maxPattern = 253

// isID reports whether s is written as a client id.
func isID(s string) bool {
	if len(s) != idLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// CheckPattern returns what is wrong with a pilot ring pattern, or nil. A
// pattern is either a client id (32 hexadecimal digits, in any case, as in
// the client's .smartclient/client-id) or a host name pattern matched
// case-insensitively against the whole host name a client reports: '*'
// stands for any run of characters, '?' for one, [a-z] for one of a class,
// as in path.Match ("lab-*", "*.pilot.example.com", "caixa-0?"). A client
// reporting a short host name does not match a pattern of full names.
func CheckPattern(p string) error {
	switch {
	case p == "":
		return errors.New("is empty")
	case len(p) > maxPattern:
		return fmt.Errorf("is longer than %d characters", maxPattern)
	case strings.ContainsAny(p, "/\\ \t"):
		return errors.New("is not a host name pattern or client id: host names hold no slash, backslash or space")
	case strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("holds a control character")
	}
	if _, err := path.Match(strings.ToLower(p), ""); err != nil {
		return errors.New("is not a valid pattern (an unclosed [ ?)")
	}
	return nil
}

// matches reports whether pattern p names client c: its id, when p is a
// client id, else its host name, case-insensitively. A bad pattern (which
// CheckPattern refuses) matches nothing.
func matches(p string, c Client) bool {
	if isID(p) && strings.EqualFold(p, c.ID) {
		return true
	}
	if c.Host == "" {
		return false
	}
	ok, err := path.Match(strings.ToLower(p), strings.ToLower(c.Host))
	return ok && err == nil
}

// InPilot reports whether c is in the pilot ring.
func (p Policy) InPilot(c Client) bool {
	for _, pat := range p.Pilot {
		if matches(pat, c) {
			return true
		}
	}
	return false
}

// staged reports whether the policy stages releases at all.
func (p Policy) staged() bool { return len(p.Pilot) > 0 }
