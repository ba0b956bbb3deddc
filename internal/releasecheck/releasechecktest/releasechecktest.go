// Package releasechecktest is one table of releases, each accepted or
// refused, for tests that run it through both sides: the server's check
// of an update folder and the client's reading of a manifest. Both must
// give each case its verdict, so that the two can never disagree.
package releasechecktest

import "strings"

// Case is a release of a few entries. An entry is a file's path, a path
// with a slash after it for an empty folder, or "path -> target" for a
// symbolic link; the target of every link of an accepted case is in the
// release.
type Case struct {
	Name    string
	Entries []string
	// Refused is a piece of the reason both sides give; "" when the
	// release is accepted.
	Refused string
}

// Entry is one entry of a case, parsed.
type Entry struct {
	Path   string
	Dir    bool
	Target string
}

// Parse returns the entries of c.
func (c Case) Parse() []Entry {
	out := make([]Entry, 0, len(c.Entries))
	for _, e := range c.Entries {
		switch p, target, link := strings.Cut(e, " -> "); {
		case link:
			out = append(out, Entry{Path: p, Target: target})
		case strings.HasSuffix(e, "/"):
			out = append(out, Entry{Path: strings.TrimSuffix(e, "/"), Dir: true})
		default:
			out = append(out, Entry{Path: e})
		}
	}
	return out
}

// Cases are the releases. A case whose entries the OS a test runs on
// cannot hold (a name Windows refuses, two names a case-insensitive file
// system takes for one) is left out of that OS's folder tests.
var Cases = []Case{
	// Accepted: what real releases hold.
	{"a release", []string{"smartclient", "lib/libsmartclient.so", "lang/pt-br.txt", ".hidden"}, ""},
	{"accents and scripts", []string{"café/naïve.txt", "日本語/ファイル.txt"}, ""},
	{"names near devices", []string{"COM10", "CONSOLE.txt", "nul_device", "lpt", "com1x.dll"}, ""},
	{"tildes", []string{"a~b.txt", "file~.txt"}, ""},
	{"the client's names below the top", []string{"lib/.smartclient", ".smartclient2", "bkp_remote"}, ""},
	{"folders differing in case", []string{"lib/a.so", "LIB/b.so"}, ""},
	{"ß and ss", []string{"straße", "STRASSE"}, ""},
	{"an empty folder", []string{"smartclient", "logs/"}, ""},
	{"links inside", []string{"bin/app", "lib/app -> ../bin/app", "current -> bin"}, ""},
	{"a long name", []string{strings.Repeat("n", 255)}, ""},

	// One file on Windows or macOS.
	{"case", []string{"README.TXT", "readme.txt"}, "one file on Windows or macOS"},
	{"case of a folder and a file", []string{"Lib/", "lib"}, "one file on Windows or macOS"},
	{"NFC and NFD", []string{"café.txt", "cafe\u0301.txt"}, "one file on Windows or macOS"},
	{"final sigma", []string{"λόγος.txt", "ΛΌΓΟΣ.txt"}, "one file on Windows or macOS"},
	{"Kelvin sign", []string{"\u212Aey.dat", "key.dat"}, "one file on Windows or macOS"},
	{"a file below a file", []string{"LIB", "lib/x.so"}, "needs it to be a folder"},

	// Windows devices, characters, dots and spaces.
	{"aux.log", []string{"aux.log"}, "the Windows device AUX"},
	{"CON", []string{"docs/CON"}, "the Windows device CON"},
	{"com1.txt", []string{"com1.txt"}, "the Windows device COM1"},
	{"LPT¹", []string{"LPT¹"}, "the Windows device LPT¹"},
	{"NUL .txt", []string{"NUL .txt"}, "the Windows device NUL"},
	{"a device folder", []string{"nul/"}, "the Windows device NUL"},
	{"<", []string{"a<b"}, "Windows does not allow"},
	{">", []string{"a>b"}, "Windows does not allow"},
	{":", []string{"lib/a:b"}, "Windows does not allow"},
	{`"`, []string{`a"b`}, "Windows does not allow"},
	{"|", []string{"a|b"}, "Windows does not allow"},
	{"?", []string{"a?b"}, "Windows does not allow"},
	{"*", []string{"a*b"}, "Windows does not allow"},
	{"trailing dot", []string{"app.exe."}, "ends with a dot or space"},
	{"trailing space", []string{"lib /x"}, "ends with a dot or space"},
	{"too long a name", []string{strings.Repeat("n", 256)}, "limit 255"},
	{"a control character", []string{"a\tb"}, "control character"},
	{"a backslash", []string{`lib\x.dll`}, "backslash"},
	{"an 8.3 name", []string{"PROGRA~1/x"}, "8.3 short name"},
	{"an invisible character", []string{"\u200capp"}, "invisible"},

	// The client's own.
	{"the client's folder", []string{".smartclient/state.bin"}, "the client's own bookkeeping"},
	{"the client's folder in capitals", []string{".SmartClient/x"}, "the client's own bookkeeping"},
	{"a backup slot", []string{"bkp_remote.001/x"}, "the client's own bookkeeping"},

	// Links.
	{"a link out", []string{"lib/x -> ../../etc"}, "outside"},
	{"an absolute link", []string{"smartclient", "lib/passwd -> /etc/passwd"}, "only relative links"},
}
