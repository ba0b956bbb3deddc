package releasecheck

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/erpupdate/smartsync/internal/releasecheck/releasechecktest"
)

func file(p string) Entry { return Entry{Path: p, Size: 1, Mode: 0o644} }

func dir(p string) Entry { return Entry{Path: p, Mode: 0o755, Dir: true} }

func link(p, target string) Entry {
	return Entry{Path: p, Size: int64(len(target)), Mode: 0o777, Target: target}
}

// TestCheck: each kind of release clients refuse, and what they accept.
// want is the problems, each "path: a piece of the reason".
func TestCheck(t *testing.T) {
	fw := "App.app/Contents/Frameworks/Core.framework/"
	tests := []struct {
		name    string
		entries []Entry
		want    []string // "" = accepted
	}{
		{"a real release", []Entry{file("smartclient"), file("lib/libsmartclient.so"), file("lang/pt-br.txt"),
			file("café/naïve.txt"), file("日本語/ファイル.txt"), dir("logs"), file("COM10"), file("CONSOLE.txt")}, nil},
		{"macOS framework", []Entry{file(fw + "Versions/A/Core"), link(fw+"Versions/Current", "A"),
			link(fw+"Core", "Versions/Current/Core"), link(fw+"Resources", "Versions/Current/Resources")}, nil},
		{"folders differing in case", []Entry{file("lib/a.so"), file("LIB/b.so")}, nil},
		{"empty", nil, nil},

		// One file on Windows or macOS.
		{"case", []Entry{file("README.TXT"), file("readme.txt")},
			[]string{`readme.txt: "README.TXT" and "readme.txt" are one file on Windows or macOS (they differ only in letter case`}},
		{"NFC and NFD", []Entry{file("café.txt"), file("cafe\u0301.txt")},
			[]string{"café.txt: one file on Windows or macOS (the same letters, composed differently"}},
		{"final sigma", []Entry{file("λόγος.txt"), file("ΛΌΓΟΣ.txt")}, []string{"λόγος.txt: one file on Windows or macOS"}},
		{"Kelvin sign", []Entry{file("\u212Aey.dat"), file("key.dat")}, []string{"\u212Aey.dat: one file"}},
		{"ß and ss are two files", []Entry{file("straße"), file("STRASSE")}, nil},
		{"three spellings", []Entry{file("A"), file("a"), file("\u0041")},
			[]string{"A: is listed twice", `a: "A" and "a" are one file`}},
		{"listed twice", []Entry{file("a.dll"), file("b.dll"), file("a.dll")}, []string{"a.dll: is listed twice"}},
		{"a folder of another case", []Entry{dir("Cafe\u0301"), file("café")}, []string{"café: one file"}},

		// Below a file, a folder or a link.
		{"below a file", []Entry{file("lib"), file("lib/x.so")}, []string{`lib/x.so: "lib" is a file, and "lib/x.so" needs it to be a folder`}},
		{"below a file of another case", []Entry{file("LIB"), file("lib/x.so"), file("lib/y.so")},
			[]string{`lib/x.so: "LIB" is a file`, `lib/y.so: "LIB" is a file`}},
		{"below an empty folder", []Entry{dir("a"), file("a/x")}, []string{`a/x: "a" is an empty folder`}},
		{"a neighbour between", []Entry{file("lib"), file("lib-x"), file("lib/x.so")}, []string{`lib/x.so: "lib" is a file`}},
		{"deep", []Entry{file("a/b/c"), file("A/B/c/d/e")}, []string{`A/B/c/d/e: "a/b/c" is a file`}},
		{"below a link", []Entry{link("lib", "bin"), file("bin/x"), file("lib/x.so")}, []string{`lib/x.so: lies below the symbolic link "lib"`}},
		{"below a link of another case", []Entry{link("lib", "bin"), file("bin/x"), file("LIB/x.so")}, []string{`LIB/x.so: "lib" is a symbolic link`}},

		// Windows devices, characters, dots and spaces.
		{"aux.log", []Entry{file("aux.log")}, []string{"aux.log: the Windows device AUX"}},
		{"CON", []Entry{file("docs/CON")}, []string{"docs/CON: the Windows device CON"}},
		{"com1.txt", []Entry{file("com1.txt")}, []string{"com1.txt: the Windows device COM1"}},
		{"LPT¹", []Entry{file("LPT¹")}, []string{"LPT¹: the Windows device LPT¹"}},
		{"a device folder", []Entry{dir("a/nul")}, []string{"a/nul: the Windows device NUL"}},
		{"reserved characters", []Entry{file("a<b"), file("a>b"), file("x/a:b"), file(`a"b`), file("a|b"), file("a?b"), file("a*b")},
			[]string{`a"b: holds '"'`, "a*b: holds '*'", "a<b: holds '<'", "a>b: holds '>'", "a?b: holds '?'", "a|b: holds '|'", "x/a:b: holds ':'"}},
		{"trailing dot", []Entry{file("app.exe.")}, []string{"app.exe.: ends with a dot or space"}},
		{"trailing space", []Entry{file("lib /x")}, []string{"lib /x: ends with a dot or space"}},
		{"too long a name", []Entry{file(strings.Repeat("n", 256))}, []string{strings.Repeat("n", 256) + ": is 256 bytes long, limit 255"}},
		{"too long a path", []Entry{file(strings.Repeat("a/", 2048) + "a")}, []string{strings.Repeat("a/", 2048) + "a: 4097 bytes long, limit 4096"}},
		{"control character", []Entry{file("a\nb")}, []string{"a\nb: the control character U+000A"}},
		{"8.3 name", []Entry{file("PROGRA~1/x")}, []string{"PROGRA~1/x: 8.3 short name"}},
		{"not UTF-8", []Entry{file("a\xffb")}, []string{"a\xffb: not valid UTF-8"}},
		{"the client's folder", []Entry{file(".SmartClient/state.bin")}, []string{".SmartClient/state.bin: the client's own bookkeeping"}},
		{"a backup slot", []Entry{dir("bkp_remote.004")}, []string{"bkp_remote.004: the client's own bookkeeping"}},

		// Modes and sizes.
		{"setuid", []Entry{{Path: "su", Mode: 0o4755}}, []string{"su: mode 04755 is setuid"}},
		{"setgid", []Entry{{Path: "sg", Mode: fs.ModeSetgid | 0o755}}, []string{"sg: is setgid"}},
		{"a type bit", []Entry{{Path: "p", Mode: fs.ModeNamedPipe | 0o644}}, []string{"p: a special file (a named pipe)"}},
		{"sticky", []Entry{{Path: "s", Mode: fs.ModeSticky | 0o755}}, []string{"s: bits other than the permissions"}},
		{"too big", []Entry{{Path: "big", Size: MaxFileSize + 1, Mode: 0o644}}, []string{"big: over the limit of 68719476736 bytes per file"}},
		{"negative size", []Entry{{Path: "neg", Size: -1, Mode: 0o644}}, []string{"neg: declares -1 bytes"}},
		{"a folder with a size", []Entry{{Path: "d", Size: 3, Dir: true}}, []string{"d: a folder that declares 3 bytes"}},
		{"a folder with a target", []Entry{{Path: "d", Dir: true, Target: "x"}}, []string{`d: a folder with a link target "x"`}},

		// Links.
		{"up and back in", []Entry{file("bin/app"), link("lib/app", "../bin/app")}, nil},
		{"absolute link", []Entry{link("lib/passwd", "/etc/passwd")}, []string{`lib/passwd: symbolic link to "/etc/passwd": only relative links`}},
		{"drive letter link", []Entry{link("x", "C:/Windows")}, []string{"x: only relative links"}},
		{"backslash link", []Entry{link("x", `..\..\x`)}, []string{"x: only relative links"}},
		{"out by ..", []Entry{link("lib/x", "../../etc")}, []string{"lib/x: it leads outside the install folder"}},
		{"out through another link", []Entry{link("a/up", ".."), link("b", "a/up/../..")}, []string{"b: it leads outside the install folder"}},
		{"loop", []Entry{link("a", "b"), link("b", "a")}, []string{"a: too many levels of links", "b: too many levels of links"}},

		// Every problem, not only the first.
		{"several", []Entry{file("README.TXT"), file("readme.txt"), file("aux.log"), file("ok.txt"), link("out", "/etc")},
			[]string{"aux.log: device AUX", "out: only relative links", `readme.txt: "README.TXT" and "readme.txt"`}},
	}
	for _, tc := range tests {
		name := tc.name
		t.Run(name, func(t *testing.T) {
			err := Check(tc.entries)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v; want an *Error with %q", err, tc.want)
			}
			if len(ce.Problems) != len(tc.want) {
				t.Fatalf("%d problems, want %d: %q", len(ce.Problems), len(tc.want), ce.Problems)
			}
			for i, w := range tc.want {
				p, piece, _ := strings.Cut(w, ": ")
				if got := ce.Problems[i]; got.Path != p || !strings.Contains(got.Reason, piece) {
					t.Errorf("problem %d is %q: %q; want %q with %q", i, got.Path, got.Reason, p, piece)
				}
			}
		})
	}
}

// TestCheckAgreesWithCheckPath: Check refuses a one-file release exactly
// when CheckPath refuses its path, for every case of the path table.
func TestCheckAgreesWithCheckPath(t *testing.T) {
	for _, tc := range checkPathCases {
		pathErr := CheckPath(tc.path)
		err := Check([]Entry{file(tc.path)})
		if (pathErr == nil) != (err == nil) {
			t.Errorf("%.40q: CheckPath says %v, Check %v", tc.path, pathErr, err)
		}
		if pathErr != nil && !strings.Contains(err.Error(), pathErr.Error()) {
			t.Errorf("%.40q: Check says %v, not CheckPath's %v", tc.path, err, pathErr)
		}
	}
}

// TestErrorText: the text lists the first problems, a path only where
// the reason does not already name it, and counts the rest.
func TestErrorText(t *testing.T) {
	one := &Error{Problems: []Problem{{Path: "readme.txt", Reason: `"README.TXT" and "readme.txt" are one file on Windows or macOS`}}}
	if got, want := one.Error(), `clients would refuse the release: "README.TXT" and "readme.txt" are one file on Windows or macOS`; got != want {
		t.Errorf("one problem:\n got %s\nwant %s", got, want)
	}
	var many []Entry
	for i := range 25 {
		many = append(many, file(fmt.Sprintf("d%02d/aux.log", i)))
	}
	err := Check(many)
	text := err.Error()
	for _, want := range []string{
		"clients would refuse the release for 25 reasons: ",
		`"d00/aux.log": the name "aux.log" is the Windows device AUX; "d01/aux.log"`,
		`"d09/aux.log": the name "aux.log" is the Windows device AUX; and 15 more`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "d10/") {
		t.Errorf("text lists more than %d problems:\n%s", shownProblems, text)
	}
	if got := len(err.(*Error).Problems); got != 25 {
		t.Errorf("%d problems, want all 25", got)
	}
}

// TestCheckLimits: a release over the protocol's count of entries or
// bytes of paths is refused as a whole.
func TestCheckLimits(t *testing.T) {
	tests := []struct {
		n, pathBytes int
		want         []string
	}{
		{MaxFiles, MaxPathBytes, nil},
		{MaxFiles + 1, 10, []string{"1048577 entries, over the limit of 1048576"}},
		{1, MaxPathBytes + 1, []string{"paths add up to more than 67108864 bytes"}},
		{MaxFiles + 1, MaxPathBytes + 1, []string{"1048577 entries", "paths add up"}},
	}
	for _, tc := range tests {
		got := limitProblems(tc.n, tc.pathBytes)
		if len(got) != len(tc.want) {
			t.Errorf("%d entries, %d bytes: %q; want %q", tc.n, tc.pathBytes, got, tc.want)
			continue
		}
		for i, w := range tc.want {
			if got[i].Path != "" || !strings.Contains(got[i].Reason, w) {
				t.Errorf("%d entries, %d bytes: problem %d is %q; want %q", tc.n, tc.pathBytes, i, got[i], w)
			}
		}
	}
}

// FuzzCheck checks that Check never panics, gives the same answer for
// the same entries in any order, and accepts only releases whose every
// path CheckPath accepts and whose fold keys are all different.
func FuzzCheck(f *testing.F) {
	f.Add("README.TXT\nreadme.txt\naux.log", "", uint32(0o644), false)
	f.Add("lib\nlib/x.so\nLIB/y", "", uint32(0o755), true)
	f.Add("a/up\nb\nc", "..\na/up/../..\n", uint32(0o777), false)
	f.Add("café.txt\ncafe\u0301.txt\nstraße\nSTRASSE", "", uint32(0o4755), false)
	f.Fuzz(func(t *testing.T, paths, targets string, mode uint32, dirs bool) {
		ps := strings.Split(paths, "\n")
		if len(ps) > 64 {
			return
		}
		ts := strings.Split(targets, "\n")
		entries := make([]Entry, len(ps))
		for i, p := range ps {
			e := Entry{Path: p, Size: int64(len(p)), Mode: fs.FileMode(mode)}
			if i < len(ts) && ts[i] != "" {
				e.Target, e.Size = ts[i], int64(len(ts[i]))
			} else if dirs && i%2 == 1 {
				e.Dir, e.Size = true, 0
			}
			entries[i] = e
		}
		err := Check(entries)
		shuffled := slices.Clone(entries)
		rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		again := Check(shuffled)
		if !reflect.DeepEqual(err, again) {
			t.Fatalf("order changes the answer:\n%v\n%v", err, again)
		}
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("refused without problems: %v", err)
			}
			_ = err.Error()
			return
		}
		keys := map[string]bool{}
		for _, e := range entries {
			if err := CheckPath(e.Path); err != nil {
				t.Fatalf("accepted %q: %v", e.Path, err)
			}
			if k := FoldKey(e.Path); keys[k] {
				t.Fatalf("accepted two paths with the key %q", k)
			} else {
				keys[k] = true
			}
		}
	})
}

// TestCases: Check gives every case of the table both sides run (see
// releasechecktest) its verdict.
func TestCases(t *testing.T) {
	for _, c := range releasechecktest.Cases {
		var entries []Entry
		for _, e := range c.Parse() {
			switch {
			case e.Dir:
				entries = append(entries, dir(e.Path))
			case e.Target != "":
				entries = append(entries, link(e.Path, e.Target))
			default:
				entries = append(entries, file(e.Path))
			}
		}
		err := Check(entries)
		switch {
		case c.Refused == "" && err != nil:
			t.Errorf("%s: refused: %v", c.Name, err)
		case c.Refused != "" && (err == nil || !strings.Contains(err.Error(), c.Refused)):
			t.Errorf("%s: got %v; want it refused for %q", c.Name, err, c.Refused)
		}
	}
}

// BenchmarkCheck checks a release of 20,000 files in 200 folders, the
// size of the publishing goal, with a few names in other scripts.
func BenchmarkCheck(b *testing.B) {
	entries := make([]Entry, 0, 20000)
	for i := range cap(entries) {
		name := fmt.Sprintf("modules/m%03d/lib/file-%05d.so", i%200, i)
		if i%50 == 0 {
			name = fmt.Sprintf("lang/pt-br/relatório-%05d.txt", i)
		}
		entries = append(entries, Entry{Path: name, Size: int64(i), Mode: 0o644})
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := Check(entries); err != nil {
			b.Fatal(err)
		}
	}
}
