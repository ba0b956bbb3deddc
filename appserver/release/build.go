package release

import (
	"cmp"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrNotNewer is returned, wrapped, by CheckNewer for a release that is not
// newer than the running build.
var ErrNotNewer = errors.New("release: not newer than the running build")

// build is a parsed build string. It follows appserver.ParseBuild, which
// this package cannot import: appserver imports this package for its
// command line. TestBuildAgreesWithAppserver keeps the two in step.
type build struct {
	major, minor, date int
	suffix             string
}

// parseBuild accepts MAJOR.MINOR.YYMMDD with an optional letter A-Z, as in
// "7.00.240601A", with a real calendar date in 2000-2099.
func parseBuild(s string) (build, error) {
	s = strings.TrimSpace(s)
	bad := func(why string) (build, error) {
		return build{}, fmt.Errorf("invalid build %q: %s; want MAJOR.MINOR.YYMMDD with an optional letter A-Z, as in 7.00.240601A", s, why)
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return bad("not three parts")
	}
	var b build
	var ok bool
	if b.major, ok = digits(parts[0]); !ok {
		return bad("major version is not a number")
	}
	if b.minor, ok = digits(parts[1]); !ok {
		return bad("minor version is not a number")
	}
	d := parts[2]
	if len(d) == 7 {
		d, b.suffix = d[:6], d[6:]
		if b.suffix[0] < 'A' || b.suffix[0] > 'Z' {
			return bad("suffix is not a letter A-Z")
		}
	}
	if len(d) != 6 {
		return bad("date is not 6 digits")
	}
	if b.date, ok = digits(d); !ok {
		return bad("date is not a number")
	}
	yy, mm, dd := b.date/10000, b.date/100%100, b.date%100
	t := time.Date(2000+yy, time.Month(mm), dd, 0, 0, 0, 0, time.UTC)
	if mm < 1 || mm > 12 || dd < 1 || t.Day() != dd || int(t.Month()) != mm {
		return bad("date does not exist")
	}
	return b, nil
}

func digits(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

func (b build) compare(o build) int {
	if c := cmp.Compare(b.major, o.major); c != 0 {
		return c
	}
	if c := cmp.Compare(b.minor, o.minor); c != 0 {
		return c
	}
	if c := cmp.Compare(b.date, o.date); c != 0 {
		return c
	}
	return cmp.Compare(b.suffix, o.suffix)
}

// ValidateBuild reports whether s is a well-formed build string.
func ValidateBuild(s string) error {
	_, err := parseBuild(s)
	return err
}

// CheckNewer returns nil if the release build is newer than the running
// build, and an error wrapping ErrNotNewer if it is the same or older, unless
// allowDowngrade is set (the administrator's --allow-downgrade, which also
// allows reinstalling the same build). A malformed build is always an error:
// no flag should let an unreadable build through.
func CheckNewer(running, release string, allowDowngrade bool) error {
	r, err := parseBuild(running)
	if err != nil {
		return fmt.Errorf("running build: %w", err)
	}
	n, err := parseBuild(release)
	if err != nil {
		return fmt.Errorf("release build: %w", err)
	}
	if n.compare(r) > 0 || allowDowngrade {
		return nil
	}
	what := "older than"
	if n.compare(r) == 0 {
		what = "the same as"
	}
	return fmt.Errorf("%w: release build %s is %s the running build %s (allow a downgrade to install it anyway)",
		ErrNotNewer, strings.TrimSpace(release), what, strings.TrimSpace(running))
}
