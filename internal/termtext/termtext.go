// Package termtext makes text from the network safe to show on a terminal:
// a control character (an escape sequence can retitle a window, clear the
// screen or fake a line of output) or a byte that is not UTF-8 is written
// as a Go escape, while every printable character, backslashes included,
// stays as it is, so that "C:\TOTVS" still reads C:\TOTVS.
//
// It imports only the standard library.
package termtext

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Escape returns s with every character that is not printable (or a plain
// space) written as \xNN, \uNNNN or \UNNNNNNNN, and every invalid UTF-8
// byte as \xNN.
func Escape(s string) string {
	if printable(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == ' ' || unicode.IsPrint(r):
			b.WriteString(s[i : i+size])
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x10000:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
		i += size
	}
	return b.String()
}

// printable reports whether s needs no escape, without allocating.
func printable(s string) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size <= 1) || (r != ' ' && !unicode.IsPrint(r)) {
			return false
		}
		i += size
	}
	return true
}

// Line is s on one line of at most n runes, for a table: runs of white
// space (line ends included) become one space, and a longer text ends
// in "…". It does not escape: Escape what comes from the network first.
func Line(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		s = string(r[:n-1]) + "…"
	}
	return s
}
