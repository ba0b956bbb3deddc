package termtext

import (
	"strings"
	"testing"
)

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Up to date", "Up to date"},
		{`C:\TOTVS\apo\`, `C:\TOTVS\apo\`}, // backslashes stay single
		{"café 7.00.240501A", "café 7.00.240501A"},
		{"\x1b]0;owned\x07\x1b[2J\rUpdated to build 9", `\x1b]0;owned\x07\x1b[2J\x0dUpdated to build 9`},
		{"a\nb\tc", `a\x0ab\x09c`},
		{"\x7f\u0085\u202e", `\x7f\x85\u202e`}, // DEL, C1 NEL, right-to-left override
		{"bad\xffutf8", `bad\xffutf8`},
		{"", ""},
	} {
		got := Escape(tc.in)
		if got != tc.want {
			t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.ContainsAny(got, "\x1b\x07\r\n\x7f") {
			t.Errorf("Escape(%q) = %q still holds a control character", tc.in, got)
		}
	}
}

func FuzzEscape(f *testing.F) {
	for _, s := range []string{"plain", "\x1b[2J", "bad\xff", `C:\x`, "\u202e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Escape(s)
		if !printable(got) {
			t.Fatalf("Escape(%q) = %q is not printable", s, got)
		}
		if printable(s) && got != s {
			t.Fatalf("Escape changed printable %q to %q", s, got)
		}
	})
}

func TestLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"two\nlines\t and  spaces", 40, "two lines and spaces"},
		{"ação é longa demais", 8, "ação é …"},
	} {
		if got := Line(tc.in, tc.n); got != tc.want {
			t.Errorf("Line(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
