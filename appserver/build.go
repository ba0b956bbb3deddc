package appserver

import (
	"cmp"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Build is a parsed TOTVS-style build string such as "7.00.240501A":
// major "." minor "." YYMMDD date, then an optional upper-case letter suffix (A-Z).
//
// The zero Build means "no build"; ParseBuild never returns it without an
// error, because "0.0.000000" is not a valid date.
type Build struct {
	Major, Minor int
	Date         int // YYMMDD as an int, e.g. 240501 for 1 May 2024.
	Suffix       string
	raw          string
}

// ParseBuild parses a build string of the form MAJOR.MINOR.YYMMDD with an
// optional upper-case letter suffix, as in "7.00.240501A". Surrounding spaces
// are ignored. The date must be a real calendar date (years 2000-2099), so a
// typo such as "7.00.241301A" is caught here rather than making the builds
// compare in a surprising order later.
func ParseBuild(s string) (Build, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Build{}, errors.New("invalid build \"\": empty; want MAJOR.MINOR.YYMMDD with an optional letter A-Z, as in 7.00.240501A")
	}
	bad := func(format string, args ...any) (Build, error) {
		return Build{}, fmt.Errorf("invalid build %q: %s", s, fmt.Sprintf(format, args...))
	}

	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return bad("want MAJOR.MINOR.YYMMDD with an optional letter A-Z, as in 7.00.240501A")
	}
	major, err := parseDigits(parts[0])
	if err != nil {
		return Build{}, fmt.Errorf("invalid build %q: major version: %w", s, err)
	}
	minor, err := parseDigits(parts[1])
	if err != nil {
		return Build{}, fmt.Errorf("invalid build %q: minor version: %w", s, err)
	}

	// The third part is exactly six digits of date, then at most one letter.
	datePart := parts[2]
	n := 0
	for n < len(datePart) && isDigit(datePart[n]) {
		n++
	}
	digits, suffix := datePart[:n], datePart[n:]
	if len(digits) != 6 {
		return bad("date %q must be 6 digits YYMMDD", digits)
	}
	if len(suffix) > 1 || (suffix != "" && (suffix[0] < 'A' || suffix[0] > 'Z')) {
		return bad("suffix %q must be empty or one upper-case letter A-Z", suffix)
	}
	date, _ := strconv.Atoi(digits) // Six ASCII digits always fit.
	yy, mm, dd := date/10000, date/100%100, date%100
	if mm < 1 || mm > 12 {
		return bad("month %02d in date %s is not 01-12", mm, digits)
	}
	// time.Date normalises 31 April to 1 May; a changed day or month means
	// the day does not exist in that month (leap years included).
	t := time.Date(2000+yy, time.Month(mm), dd, 0, 0, 0, 0, time.UTC)
	if dd < 1 || t.Day() != dd || int(t.Month()) != mm {
		return bad("day %02d in date %s does not exist in that month", dd, digits)
	}

	return Build{Major: major, Minor: minor, Date: date, Suffix: suffix, raw: s}, nil
}

// parseDigits accepts only plain ASCII digits: strconv.Atoi alone would
// also take signs such as "+7". Builds and ports both use it.
func parseDigits(s string) (int, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, fmt.Errorf("%q is not a number", s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is too large: %w", s, err)
	}
	return n, nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// String returns the build as it was written (without surrounding spaces),
// so that "7.00.240501A" stays "7.00.240501A" in messages and on the wire
// rather than becoming "7.0.240501A".
func (b Build) String() string {
	if b.raw != "" || b.IsZero() {
		return b.raw
	}
	// A Build made as a literal rather than by ParseBuild has no original
	// text; print the TOTVS form with a two-digit minor version.
	return fmt.Sprintf("%d.%02d.%06d%s", b.Major, b.Minor, b.Date, b.Suffix)
}

// IsZero reports whether b is the zero Build, meaning "no build".
func (b Build) IsZero() bool {
	return b == Build{}
}

// Compare returns -1, 0 or +1 as b is older than, the same as or newer than o,
// ordering by major, minor, date and then suffix, where no suffix sorts before
// "A". Two spellings of the same build ("7.0.240501A" and "7.00.240501A")
// compare equal.
func (b Build) Compare(o Build) int {
	if c := cmp.Compare(b.Major, o.Major); c != 0 {
		return c
	}
	if c := cmp.Compare(b.Minor, o.Minor); c != 0 {
		return c
	}
	if c := cmp.Compare(b.Date, o.Date); c != 0 {
		return c
	}
	return cmp.Compare(b.Suffix, o.Suffix)
}
