// Package winini is the one INI dialect of both programs' files,
// AppServer.ini and smartclient.ini: Windows INI files as TOTVS
// administrators write them. Names are case-insensitive, a UTF-8 byte order
// mark and CRLF line ends are accepted, "key = value ; note" and
// "key = value<TAB>; note" carry a comment, a bare key is allowed, a
// backslash at the end of a line is a Windows path and not a continuation,
// and '=' is the only delimiter. It also holds the value rules both files
// share: ports, numbers and booleans.
//
// It imports gopkg.in/ini.v1 and the standard library only.
package winini

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/ini.v1"
)

// options is the dialect. The comments say why each option is set.
func options() ini.LoadOptions {
	return ini.LoadOptions{
		// Windows INI files are case-insensitive: [update] and pathlinux=
		// mean [UPDATE] and PathLinux=.
		Insensitive: true,
		// "Build=7.00.240501A ; comment" is a comment after the value, but
		// a ';' inside a value (no space before it) is part of the value.
		SpaceBeforeInlineComment: true,
		// A line without '=' in a TOTVS section must not make the whole file
		// unreadable.
		AllowBooleanKeys: true,
		// Windows paths are written with single backslashes, so they must
		// reach us as written. ini.v1 v1.67 leaves backslashes alone as long
		// as UnescapeValueDoubleQuotes and UnescapeValueCommentSymbols stay
		// false, as they do here. TOTVS files are full of paths ending in a
		// backslash ("SourcePath=C:\TOTVS\apo\"); by default ini.v1 would
		// take that as a line continuation and swallow the next line, section
		// headers included, into the value.
		IgnoreContinuation: true,
		// Windows INI files separate key and value with '=' only; ini.v1's
		// default "=:" would split a bare line such as "C:\TOTVS" at the
		// drive letter.
		KeyValueDelimiters: "=",
	}
}

// Load parses INI text in the dialect. A key written twice keeps its last
// value, as Windows' GetPrivateProfileString does not promise anything
// better and TOTVS's files rely on nothing else.
func Load(data []byte) (*ini.File, error) {
	return ini.LoadSources(options(), data)
}

// LoadRepeats parses INI text in the dialect keeping every value of a key
// written more than once (Key.ValueWithShadows), so that a file we own can
// report the repeat rather than silently let one value win.
func LoadRepeats(data []byte) (*ini.File, error) {
	opts := options()
	opts.AllowShadows = true
	// "Port=1234" written twice is still a duplicate line an administrator
	// should know about.
	opts.AllowDuplicateShadowValues = true
	f, err := ini.LoadSources(opts, data)
	if err != nil {
		// ini.v1 cannot keep a shadow of a bare key, so a TOTVS section with
		// the same bare line twice would make the whole file unreadable.
		// Without shadows it reads such a file. Any other syntax error fails
		// both ways, and the first message is the one to show.
		if f2, err2 := Load(data); err2 == nil {
			return f2, nil
		}
	}
	return f, err
}

// LoadRaw parses INI text in the dialect, keeping the named sections as raw
// text (Section.Body) so that a caller can read their lines as written.
func LoadRaw(data []byte, sections ...string) (*ini.File, error) {
	opts := options()
	opts.UnparseableSections = sections
	return ini.LoadSources(opts, data)
}

// Value returns a key's raw value: without ini.v1's "%(name)s" expansion,
// and without a comment that follows the value after a tab. ini.v1 with
// SpaceBeforeInlineComment recognises only " ;" and " #", but administrators
// line comments up with tabs just as often.
func Value(k *ini.Key) string {
	s := k.Value()
	i := strings.Index(s, "\t;")
	if j := strings.Index(s, "\t#"); j >= 0 && (i < 0 || j < i) {
		i = j
	}
	if i < 0 {
		return s
	}
	s = strings.TrimSpace(s[:i])
	// ini.v1 only unquotes a whole value; here the comment hid the quotes.
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		s = s[1 : len(s)-1]
	}
	return s
}

// Digits parses a number written with ASCII decimal digits only:
// strconv.Atoi alone would also take "+80" and "-1", which no administrator
// means. A number too long for an int is an error, not a wrap.
func Digits(s string) (int, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a number", s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n, nil
}

// Port parses a TCP port: plain digits from 1 to 65535.
func Port(s string) (int, error) {
	n, err := Digits(s)
	if err != nil {
		return 0, err
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("%d is out of range 1-65535", n)
	}
	return n, nil
}

// Bool accepts the forms ini.v1's Key.Bool does. It is repeated here because
// Key.Bool reads Key.String, which expands "%(name)s" references, and we read
// raw values.
func Bool(s string) (bool, error) {
	switch s {
	case "1", "t", "T", "true", "TRUE", "True", "YES", "yes", "Yes", "y", "ON", "on", "On":
		return true, nil
	case "0", "f", "F", "false", "FALSE", "False", "NO", "no", "No", "n", "OFF", "off", "Off":
		return false, nil
	}
	return false, fmt.Errorf("parsing %q: invalid boolean", s)
}

// List splits a list value at the separators administrators write (',' and
// ';'), trimming spaces and dropping empty items.
func List(s string) []string {
	var out []string
	for _, item := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ';' }) {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// Quote puts a value in double quotes as the administrator wrote it, so
// that a Windows path reads C:\TOTVS\apo and not C:\\TOTVS\\apo as %q would
// print it. A value that holds a quote or a character that is not
// printable (which could also be a terminal escape) is quoted with Go's
// escapes instead, so that what is shown is always one unambiguous line.
func Quote(s string) string {
	for _, r := range s {
		if r == '"' || r == utf8.RuneError || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return `"` + s + `"`
}
