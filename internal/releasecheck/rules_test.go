package releasecheck

import (
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// reservedLower is the simplest spelling of the client's bookkeeping rule,
// for the fuzz test to compare CheckPath with.
func reservedLower(p string) bool {
	first, _, _ := strings.Cut(p, "/")
	first = strings.ToLower(first)
	return first == MetaDir || strings.HasPrefix(first, BackupPrefix)
}

// checkPathCases is shared by the table test and the fuzz test's seeds.
// why is a piece of the error, so that each name is refused for its own
// reason and not by luck of another rule.
var checkPathCases = []struct {
	path string
	why  string // "" = accepted
}{
	// Accepted: what real releases hold.
	{"smartclient", ""},
	{"lib/libsmartclient.so", ""},
	{"Frameworks/Qt.framework/Versions/5/Qt", ""},
	{".hidden", ""},
	{"a.b.c", ""},
	{"lang/pt-br.txt", ""},
	{"café/naïve.txt", ""},
	{"cafe\u0301.txt", ""}, // decomposed, as HFS+ stores it: legal on its own
	{"日本語/ファイル.txt", ""},
	{"COM10", ""},
	{"CONSOLE.txt", ""},
	{"nul_device", ""},
	{"lpt", ""},
	{"COMA.dll", ""},
	{"com1x.dll", ""},
	{"a~b.txt", ""},
	{"file~.txt", ""},
	{"lib/.smartclient", ""}, // only the top-level one is the client's
	{".smartclient2", ""},
	{"bkp_remote", ""},
	{"lib/bkp_remote.001", ""},
	{strings.Repeat("a", 255), ""},
	{strings.Repeat("a", 255) + "/" + strings.Repeat("b", 255), ""},

	// Leaving the install folder.
	{"", "empty path"},
	{"/etc/passwd", "absolute"},
	{"../outside", `".."`},
	{"lib/../../outside", `".."`},
	{"lib/..", `".."`},
	{"C:/Windows/evil.dll", "drive letter C:"},
	{"c:evil.dll", "drive letter c:"},
	{`\\server\share\evil.dll`, "UNC"},
	{"//server/share/evil.dll", "UNC"},
	{`\\?\C:\evil.dll`, "UNC"},
	{`\\.\PhysicalDrive0`, "UNC"},
	{`/\server\share`, "UNC"},
	{`\evil.dll`, "absolute"},
	{`lib\evil.dll`, "backslash"},
	{`lib\..\..\evil.dll`, "backslash"},

	// Not canonical.
	{".", `"."`},
	{"./a", `"."`},
	{"lib/./a", `"."`},
	{"lib//a", "empty part"},
	{"lib/", "empty part"},

	// Names Windows cannot hold, or holds as something else.
	{"CON", "device CON"},
	{"con", "device CON"},
	{"NUL.txt", "device NUL"},
	{"lib/com1.dll", "device COM1"},
	{"com0", "device COM0"},
	{"Lpt9.log", "device LPT9"},
	{"COM¹.txt", "device COM¹"},
	{"lpt³", "device LPT³"},
	{"docs/prn", "device PRN"},
	{"aux.tar.gz", "device AUX"},
	{"NUL .txt", "device NUL"},
	{"conin$", "device CONIN$"},
	{"CONOUT$.log", "device CONOUT$"},
	{"lib/evil.dll.", "dot or space"},
	{"evil.dll ", "dot or space"},
	{"lib./x.so", "dot or space"},
	{"...", "dot or space"},
	{"a<b", `'<'`},
	{"a>b", `'>'`},
	{"lib/a:stream", `':'`},
	{`a"b`, `'"'`},
	{"a|b", `'|'`},
	{"a?b", `'?'`},
	{"a*b", `'*'`},
	{"a\x00b", "control character U+0000"},
	{"a\x01b", "control character U+0001"},
	{"a\tb", "control character U+0009"},
	{"a\nb", "control character U+000A"},
	{"a\x1fb", "control character U+001F"},
	{"a\x7fb", "control character U+007F"},
	{strings.Repeat("a", 256), "limit 255"},
	{"lib/" + strings.Repeat("é", 128), "limit 255"},
	{strings.Repeat("a/", 2048) + "a", "limit 4096"},
	{"lib/LIBNEW~1.SO", "8.3"},
	{"SMARTC~1/state.bin", "8.3"},
	{"a\xffb", "UTF-8"},

	// The client's own.
	{".smartclient", "bookkeeping"},
	{".smartclient/state.bin", "bookkeeping"},
	{".smartclient/publisher.json", "bookkeeping"}, // the trusted publisher keys
	{".SMARTCLIENT/publisher.json", "bookkeeping"},
	{".SmartClient/journal.json", "bookkeeping"},
	{".ſmartclient/state.bin", "bookkeeping"}, // long s folds to s
	{"bkp_remote.001/x", "bookkeeping"},
	{"BKP_REMOTE.003", "bookkeeping"},
	{"b\u212Ap_remote.002/x", "bookkeeping"}, // Kelvin sign
	{".smart\u200cclient/state.bin", "invisible"},
	{"\ufeffapp.exe", "invisible"},
}

func TestCheckPath(t *testing.T) {
	for _, tc := range checkPathCases {
		name := tc.path
		if len(name) > 40 {
			name = name[:40] + "..."
		}
		t.Run(name, func(t *testing.T) {
			err := CheckPath(tc.path)
			switch {
			case tc.why == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.why != "" && err == nil:
				t.Fatalf("accepted; want it refused for %q", tc.why)
			case tc.why != "" && !strings.Contains(err.Error(), tc.why):
				t.Fatalf("refused with %q; want the reason %q", err, tc.why)
			}
		})
	}
}

func TestCheckMode(t *testing.T) {
	tests := []struct {
		mode uint32
		why  string
	}{
		{0o644, ""},
		{0o755, ""},
		{0, ""},
		{0o777, ""},
		{uint32(fs.ModeDir | 0o755), "a folder"},
		{uint32(fs.ModeSymlink | 0o777), "a symbolic link"},
		{uint32(fs.ModeNamedPipe | 0o644), "a named pipe"},
		{uint32(fs.ModeSocket | 0o644), "a socket"},
		{uint32(fs.ModeDevice | 0o644), "a device"},
		{uint32(fs.ModeDevice | fs.ModeCharDevice | 0o644), "a character device"},
		{uint32(fs.ModeIrregular | 0o644), "an irregular file"},
		{uint32(fs.ModeSetuid | 0o755), "setuid"},
		{uint32(fs.ModeSetgid | 0o755), "setgid"},
		{0o4755, "setuid"}, // Unix's spelling
		{0o2755, "setgid"},
		{uint32(fs.ModeSticky | 0o755), "other than the permissions"},
		{0o1755, "other than the permissions"},
		{0o100644, "other than the permissions"}, // a raw st_mode
	}
	for _, tc := range tests {
		t.Run(fs.FileMode(tc.mode).String(), func(t *testing.T) {
			err := CheckMode(tc.mode)
			switch {
			case tc.why == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.why != "" && (err == nil || !strings.Contains(err.Error(), tc.why)):
				t.Fatalf("got %v; want it refused as %q", err, tc.why)
			}
		})
	}
}

// TestFoldKey: two names share a key exactly when Windows or macOS would
// take them for one file.
func TestFoldKey(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"App.exe", "app.EXE", true},
		{"lib/A.so", "LIB/a.so", true},
		{"café.txt", "cafe\u0301.txt", true}, // NFC and NFD
		{"CAFÉ.txt", "cafe\u0301.txt", true}, // and case on top
		{"λόγος.txt", "ΛΌΓΟΣ.txt", true},     // final sigma: ToLower says no
		{"\u212Aey.dat", "key.dat", true},    // Kelvin sign
		{"ſtate", "STATE", true},             // long s
		{"ǅ.txt", "ǆ.txt", true},             // titlecase digraph
		{"Å.txt", "\u212B.txt", true},        // Angstrom sign
		{"straße", "STRASSE", false},         // full folding; no file system does it
		{"İ.txt", "i.txt", false},            // Turkish dotted I folds to nothing
		{"a.txt", "b.txt", false},
		{"a/b", "a\u2215b", false}, // division slash is no separator
		{"file", "file\u0301", false},
	}
	for _, tc := range tests {
		if got := FoldKey(tc.a) == FoldKey(tc.b); got != tc.same {
			t.Errorf("FoldKey(%q) == FoldKey(%q) is %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
}

// FuzzCheckPath checks that whatever checkPath accepts is a name that the
// client can write on every OS without leaving the install folder, with
// rules written here a second, simpler way; and that the fold key does not
// depend on normalization or letter case.
func FuzzCheckPath(f *testing.F) {
	for _, tc := range checkPathCases {
		// The long seeds are left to the table test: the fuzzer
		// spends its time minimizing what it derives from them.
		if len(tc.path) <= 300 {
			f.Add(tc.path)
		}
	}
	devices := map[string]bool{"CON": true, "PRN": true, "AUX": true, "NUL": true, "CONIN$": true, "CONOUT$": true}
	for _, d := range []string{"COM", "LPT"} {
		for _, n := range []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "¹", "²", "³"} {
			devices[d+n] = true
		}
	}
	f.Fuzz(func(t *testing.T, p string) {
		err := CheckPath(p)
		if utf8.ValidString(p) {
			k := FoldKey(p)
			if FoldKey(norm.NFC.String(p)) != k || FoldKey(norm.NFD.String(p)) != k {
				t.Fatalf("%q: fold key depends on normalization", p)
			}
			// Any rune swapped for another of its case-folding orbit
			// is the same name to strings.EqualFold.
			other := strings.Map(unicode.SimpleFold, p)
			if !strings.EqualFold(p, other) {
				t.Fatalf("%q and %q: not EqualFold", p, other)
			}
			if FoldKey(other) != k {
				t.Fatalf("%q and %q are EqualFold but have different fold keys", p, other)
			}
		}
		if err != nil {
			return
		}
		switch {
		case !utf8.ValidString(p):
			t.Fatalf("accepted %q: not UTF-8", p)
		case !fs.ValidPath(p) || p == ".":
			t.Fatalf("accepted %q: not a clean relative path", p)
		case !filepath.IsLocal(filepath.FromSlash(p)):
			t.Fatalf("accepted %q: not local", p)
		case strings.ContainsAny(p, "\\<>:\"|?*\x7f"):
			t.Fatalf("accepted %q: a character Windows refuses", p)
		case len(p) > MaxPath:
			t.Fatalf("accepted %q: too long", p)
		case reservedLower(p) || reservedLower(strings.ToUpper(p)):
			t.Fatalf("accepted %q: the client's own", p)
		}
		for _, part := range strings.Split(p, "/") {
			stem := strings.ToUpper(strings.TrimRight(strings.SplitN(part, ".", 2)[0], " "))
			switch {
			case len(part) > 255:
				t.Fatalf("accepted %q: a name over 255 bytes", p)
			case strings.HasSuffix(part, ".") || strings.HasSuffix(part, " "):
				t.Fatalf("accepted %q: a trailing dot or space", p)
			case devices[stem]:
				t.Fatalf("accepted %q: the Windows device %s", p, stem)
			case strings.IndexFunc(part, func(r rune) bool { return r < 0x20 }) >= 0:
				t.Fatalf("accepted %q: a control character", p)
			}
		}
	})
}

func TestCheckLinks(t *testing.T) {
	link := func(p, target string) Entry { return Entry{Path: p, Target: target} }
	file := func(p string) Entry { return Entry{Path: p} }
	fw := "App.app/Contents/Frameworks/Core.framework/"
	tests := []struct {
		name  string
		files []Entry
		want  string // "" = accepted
	}{
		{"macOS framework", []Entry{file(fw + "Versions/A/Core"), link(fw+"Versions/Current", "A"),
			link(fw+"Core", "Versions/Current/Core"), link(fw+"Resources", "Versions/Current/Resources")}, ""},
		{"up and back in", []Entry{file("bin/app"), link("lib/app", "../bin/app")}, ""},
		{"absolute", []Entry{link("lib/passwd", "/etc/passwd")}, "only relative links"},
		{"drive letter", []Entry{link("lib/x", "C:/Windows")}, "only relative links"},
		{"backslash", []Entry{link("lib/x", `..\..\x`)}, "only relative links"},
		{"out by ..", []Entry{link("lib/x", "../../etc")}, "outside the install folder"},
		{"out through another link", []Entry{link("a/up", ".."), link("b", "a/up/../..")}, "outside the install folder"},
		{"file below a link", []Entry{link("lib", "bin"), file("lib/x.so")}, `lies below the symbolic link "lib"`},
		{"loop", []Entry{link("a", "b"), link("b", "a")}, "too many levels"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckLinks(func(yield func(string, string) bool) {
				for _, e := range tc.files {
					if !yield(e.Path, e.Target) {
						return
					}
				}
			})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}
