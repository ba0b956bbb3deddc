// Package version is the one rule, shared by the appserver, the smartclient
// and release signing, that parses and orders build strings.
//
// Two schemes are accepted, each ordered part by part:
//
//   - TOTVS builds: MAJOR.MINOR.YYMMDD, an optional upper-case letter and an
//     optional patch date "-YYYYMMDD", as in "7.00.240501A" or
//     "7.00.210324P-20231030". The dates must be real calendar dates, so a
//     typo such as "7.00.241301A" is caught when it is written, not when two
//     builds compare in a surprising order later.
//   - Dotted versions of 2 to 4 numeric parts, as TOTVS's own binaries and
//     Office-Maker-style products number them: "17.3.0.14", "20.3.1.2", "2.0".
//
// A build of three parts whose third part is six digits (optionally
// followed by a letter or a patch date), or whose second part is written
// with a leading zero as TOTVS writes it ("00"), is a TOTVS build, so that
// 7.00.2405011 is refused as a mistyped date rather than taken for a dotted
// version; any other all-numeric build of 2 to 4 parts is dotted. Builds of different schemes cannot be ordered: [Build.Compare]
// sorts them by scheme so that sorting stays total, and callers that decide
// something from an order check [Build.SameScheme] first (AppServer.ini
// refuses two builds of different schemes, for example).
//
// The package imports only the standard library.
package version

import (
	"cmp"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Scheme says how a build is written.
type Scheme int

const (
	// None is the scheme of the zero Build, "no build".
	None Scheme = iota
	// TOTVS is MAJOR.MINOR.YYMMDD[A-Z][-YYYYMMDD].
	TOTVS
	// Dotted is 2 to 4 numeric parts separated by dots.
	Dotted
)

func (s Scheme) String() string {
	switch s {
	case TOTVS:
		return "TOTVS build"
	case Dotted:
		return "dotted version"
	}
	return "no build"
}

// ErrInvalid is wrapped by every error of Parse.
var ErrInvalid = errors.New("invalid build")

// Want says which forms Parse accepts; errors end with it.
const Want = "want MAJOR.MINOR.YYMMDD with an optional letter A-Z and patch date -YYYYMMDD (7.00.240501A, 7.00.210324P-20231030), or 2 to 4 numbers (17.3.0.14, 2.0)"

// Build is a parsed build string. The zero Build means "no build"; Parse
// never returns it without an error.
type Build struct {
	scheme Scheme
	// parts holds MAJOR, MINOR and the YYMMDD date for a TOTVS build, and
	// the numbers of a dotted version (missing ones are zero, so "2.0" and
	// "2.0.0" are the same version).
	parts  [4]int
	suffix string // TOTVS: the letter after the date, or ""
	patch  int    // TOTVS: the YYYYMMDD after "-", or 0
	raw    string
}

// MustParse is Parse for builds written in the program itself; it panics on
// an error.
func MustParse(s string) Build {
	b, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return b
}

// Parse parses a build string of either scheme. Surrounding spaces are
// ignored. Every error wraps ErrInvalid and names the string.
func Parse(s string) (Build, error) {
	s = strings.TrimSpace(s)
	bad := func(format string, args ...any) (Build, error) {
		return Build{}, fmt.Errorf("%w %q: %s", ErrInvalid, s, fmt.Sprintf(format, args...))
	}
	if s == "" {
		return bad("empty; %s", Want)
	}
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 4 {
		return bad("%d parts; %s", len(parts), Want)
	}
	if len(parts) == 3 && (totvsDate(parts[2]) || totvsMinor(parts[1])) {
		return parseTOTVS(s, parts)
	}
	b := Build{scheme: Dotted, raw: s}
	names := [...]string{"major version", "minor version", "third part", "fourth part"}
	for i, p := range parts {
		n, err := digits(p)
		if err != nil {
			if i == 2 && len(parts) == 3 && startsWithDigits(p, 6) {
				// Six digits and something else: a TOTVS build with a bad
				// suffix is far more likely than a dotted version.
				return parseTOTVS(s, parts)
			}
			if i == 2 && len(parts) == 3 && p != "" && isDigit(p[0]) {
				return bad("date %q must be 6 digits YYMMDD; %s", leadingDigits(p), Want)
			}
			return bad("%s: %v; %s", names[i], err, Want)
		}
		b.parts[i] = n
	}
	return b, nil
}

// totvsMinor reports whether a second part has TOTVS's shape, two digits
// or more with a leading zero ("00" in 7.00.240501A): a build written so
// with a third part that is not a date is a mistyped TOTVS build
// (7.00.2405011), not a dotted version.
func totvsMinor(p string) bool {
	return len(p) >= 2 && p[0] == '0' && leadingDigits(p) == p
}

// totvsDate reports whether a third part looks like a TOTVS date: six
// digits, then nothing, a letter, or "-".
func totvsDate(p string) bool {
	if !startsWithDigits(p, 6) {
		return false
	}
	return len(p) == 6 || !isDigit(p[6])
}

func startsWithDigits(p string, n int) bool {
	return len(leadingDigits(p)) >= n
}

func leadingDigits(p string) string {
	n := 0
	for n < len(p) && isDigit(p[n]) {
		n++
	}
	return p[:n]
}

func parseTOTVS(s string, parts []string) (Build, error) {
	bad := func(format string, args ...any) (Build, error) {
		return Build{}, fmt.Errorf("%w %q: %s", ErrInvalid, s, fmt.Sprintf(format, args...))
	}
	major, err := digits(parts[0])
	if err != nil {
		return bad("major version: %v", err)
	}
	minor, err := digits(parts[1])
	if err != nil {
		return bad("minor version: %v", err)
	}
	third := parts[2]
	date := leadingDigits(third)
	rest := third[len(date):]
	if len(date) != 6 {
		return bad("date %q must be 6 digits YYMMDD", date)
	}
	var suffix, patch string
	if i := strings.IndexByte(rest, '-'); i >= 0 {
		suffix, patch = rest[:i], rest[i+1:]
		if patch == "" {
			return bad("patch date after %q is empty; want -YYYYMMDD", "-")
		}
	} else {
		suffix = rest
	}
	if len(suffix) > 1 || (suffix != "" && (suffix[0] < 'A' || suffix[0] > 'Z')) {
		return bad("suffix %q must be empty or one upper-case letter A-Z", suffix)
	}
	d, _ := strconv.Atoi(date) // Six ASCII digits always fit.
	if why := checkDate("date", date, 2000+d/10000, d/100%100, d%100); why != "" {
		return bad("%s", why)
	}
	b := Build{scheme: TOTVS, parts: [4]int{major, minor, d}, suffix: suffix, raw: s}
	if patch != "" {
		if len(patch) != 8 || leadingDigits(patch) != patch {
			return bad("patch date %q must be 8 digits YYYYMMDD", patch)
		}
		p, _ := strconv.Atoi(patch)
		if why := checkDate("patch date", patch, p/10000, p/100%100, p%100); why != "" {
			return bad("%s", why)
		}
		b.patch = p
	}
	return b, nil
}

// checkDate returns what is wrong with a calendar date, or "".
func checkDate(what, text string, y, m, d int) string {
	if m < 1 || m > 12 {
		return fmt.Sprintf("month %02d in %s %s is not 01-12", m, what, text)
	}
	// time.Date normalises 31 April to 1 May; a changed day or month means
	// the day does not exist in that month (leap years included).
	t := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
	if d < 1 || t.Day() != d || int(t.Month()) != m {
		return fmt.Sprintf("day %02d in %s %s does not exist in that month", d, what, text)
	}
	return ""
}

// digits accepts only plain ASCII digits: strconv.Atoi alone would also
// take signs such as "+7".
func digits(s string) (int, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	if leadingDigits(s) != s {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n, nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// String returns the build as it was written (without surrounding spaces),
// so that "7.00.240501A" stays "7.00.240501A" in messages and on the wire.
func (b Build) String() string { return b.raw }

// IsZero reports whether b is the zero Build, meaning "no build".
func (b Build) IsZero() bool { return b.scheme == None }

// Scheme returns how b is written.
func (b Build) Scheme() Scheme { return b.scheme }

// SameScheme reports whether b and o can be ordered against each other. The
// zero Build ("no build") has the same scheme as any build: it is older.
func (b Build) SameScheme(o Build) bool {
	return b.scheme == o.scheme || b.IsZero() || o.IsZero()
}

// Compare returns -1, 0 or +1 as b is older than, the same as or newer than
// o. Within a scheme, builds are ordered part by part; for TOTVS builds then
// by letter (none before "A") and then by patch date (none first). Two
// spellings of one build ("7.0.240501A" and "7.00.240501A", "2.0" and
// "2.0.0") are equal. The zero Build is older than any build; builds of
// different schemes are ordered by scheme (TOTVS first) only so that sorting
// is total: check SameScheme before deciding anything from their order.
func (b Build) Compare(o Build) int {
	if c := cmp.Compare(b.scheme, o.scheme); c != 0 {
		return c
	}
	for i := range b.parts {
		if c := cmp.Compare(b.parts[i], o.parts[i]); c != 0 {
			return c
		}
	}
	if c := cmp.Compare(b.suffix, o.suffix); c != 0 {
		return c
	}
	return cmp.Compare(b.patch, o.patch)
}

// ErrNotNewer is wrapped by CheckNewer's refusals.
var ErrNotNewer = errors.New("release is not newer than the running build")

// ErrSchemes is wrapped when two builds of different schemes must be ordered.
var ErrSchemes = errors.New("builds of different schemes cannot be ordered")

// CheckNewer returns nil if the release build is newer than the running
// build, and an error wrapping ErrNotNewer if it is the same or older, unless
// allowDowngrade is set (which also allows reinstalling the same build). A
// malformed build, or two builds of different schemes, is always an error: no
// flag should let an unreadable order through.
func CheckNewer(running, release string, allowDowngrade bool) error {
	r, err := Parse(running)
	if err != nil {
		return fmt.Errorf("running build: %w", err)
	}
	n, err := Parse(release)
	if err != nil {
		return fmt.Errorf("release build: %w", err)
	}
	if !r.SameScheme(n) {
		return fmt.Errorf("%w: release build %s is a %s, the running build %s a %s",
			ErrSchemes, n, n.scheme, r, r.scheme)
	}
	c := n.Compare(r)
	if c > 0 || allowDowngrade {
		return nil
	}
	what := "older than"
	if c == 0 {
		what = "the same as"
	}
	return fmt.Errorf("%w: release build %s is %s the running build %s (allow a downgrade to install it anyway)",
		ErrNotNewer, n, what, r)
}
