package winini

import (
	"slices"
	"strings"
	"testing"
)

func TestLoadDialect(t *testing.T) {
	data := "\xef\xbb\xbf[TCP]\r\nPort = 1234 ; the port\r\n[Paths]\r\nSourcePath=C:\\TOTVS\\apo\\\r\nNext=1\t; lined up\r\nC:\\TOTVS\r\n[update]\r\nPreserve=\"a.ini\"\t# quoted\r\n"
	f, err := Load([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ section, key, want string }{
		{"tcp", "port", "1234"},                  // BOM, CRLF, case, inline comment
		{"PATHS", "sourcepath", `C:\TOTVS\apo\`}, // a trailing backslash is not a continuation
		{"paths", "next", "1"},                   // a tab comment
		{"Update", "PRESERVE", "a.ini"},          // quotes a tab comment hid
	} {
		if got := Value(f.Section(tc.section).Key(tc.key)); got != tc.want {
			t.Errorf("[%s] %s = %q, want %q", tc.section, tc.key, got, tc.want)
		}
	}
	if !f.Section("paths").HasKey(`C:\TOTVS`) {
		t.Errorf("a bare line with a drive letter is not one bare key: %q", f.Section("paths").KeyStrings())
	}
}

func TestLoadRepeats(t *testing.T) {
	f, err := LoadRepeats([]byte("[TCP]\nPort=1\nPort=1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Section("tcp").Key("port").ValueWithShadows(); len(got) != 2 {
		t.Errorf("a repeated key kept %q, want both values", got)
	}
	// ini.v1 cannot shadow a bare key: such a file is still read.
	if _, err := LoadRepeats([]byte("[TCP]\nPort=1\n[Other]\nbare\nbare\n")); err != nil {
		t.Errorf("a repeated bare key in a TOTVS section: %v", err)
	}
	f, err = Load([]byte("[TCP]\nPort=1\nPort=2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := Value(f.Section("tcp").Key("port")); got != "2" {
		t.Errorf("Load: a repeated key is %q, want the last value", got)
	}
	if _, err := LoadRepeats([]byte("[TCP\nPort=1\n")); err == nil {
		t.Error("an unclosed section header parsed")
	}
}

func TestValues(t *testing.T) {
	for _, tc := range []struct {
		in   string
		port int
		err  string
	}{
		{"1234", 1234, ""},
		{"1", 1, ""},
		{"65535", 65535, ""},
		{"0", 0, "out of range"},
		{"65536", 0, "out of range"},
		{"+80", 0, "not a number"},
		{"-1", 0, "not a number"},
		{"", 0, "empty"},
		{"12 34", 0, "not a number"},
		{"99999999999999999999", 0, "too large"},
	} {
		n, err := Port(tc.in)
		if tc.err == "" && (err != nil || n != tc.port) {
			t.Errorf("Port(%q) = %d, %v; want %d", tc.in, n, err, tc.port)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("Port(%q) = %d, %v; want an error with %q", tc.in, n, err, tc.err)
		}
	}
	for in, want := range map[string][]string{
		"a.ini, b.ini":          {"a.ini", "b.ini"},
		"a.ini;b.ini ; c":       {"a.ini", "b.ini", "c"},
		" ,; a ,, ":             {"a"},
		"":                      nil,
		"dir/with space.ini, x": {"dir/with space.ini", "x"},
	} {
		if got := List(in); !slices.Equal(got, want) {
			t.Errorf("List(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]bool{"1": true, "yes": true, "On": true, "0": false, "no": false, "OFF": false} {
		if got, err := Bool(in); err != nil || got != want {
			t.Errorf("Bool(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := Bool("maybe"); err == nil {
		t.Error(`Bool("maybe") parsed`)
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		`C:\TOTVS\apo\`:      `"C:\TOTVS\apo\"`, // as written, not doubled
		"/srv/erp/upd":       `"/srv/erp/upd"`,
		"café":               `"café"`,
		"":                   `""`,
		`a"b`:                `"a\"b"`,             // a quote inside: Go's escapes
		"a\x1b]0;owned\x07b": `"a\x1b]0;owned\ab"`, // a terminal escape never reaches the terminal
		"a\nb":               `"a\nb"`,
		"bad\xffutf8":        `"bad\xffutf8"`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}
