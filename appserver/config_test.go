package appserver

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/version"
)

// newBaseDir returns a temporary folder to resolve relative paths against,
// holding the folders "linux", "windows" and "macosx" and a regular file
// "afile".
func newBaseDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"linux", "windows", "macosx"} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "afile"), []byte("not a folder"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// configErrors returns the *ConfigError values joined in err, failing the
// test if err holds anything else.
func configErrors(t testing.TB, err error) []*ConfigError {
	t.Helper()
	if err == nil {
		return nil
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %T is not an errors.Join: %v", err, err)
	}
	var out []*ConfigError
	for _, e := range joined.Unwrap() {
		ce, ok := e.(*ConfigError)
		if !ok {
			t.Fatalf("joined error %T is not a *ConfigError: %v", e, e)
		}
		out = append(out, ce)
	}
	return out
}

// copyFixture copies testdata/ini/name to root/ini/AppServer.ini and creates
// root/update/{windows,linux,macosx}, the folders the fixtures' relative
// paths point at, so that the test does not depend on testdata/update.
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "ini", name))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, d := range []string{"ini", "update/windows", "update/linux", "update/macosx"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(root, "ini", "AppServer.ini")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func mustBuild(t testing.TB, s string) version.Build {
	t.Helper()
	b, err := version.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseConfigMinimal(t *testing.T) {
	dir := newBaseDir(t)
	text := `[TCP]
Port=1234

[UPDATE]
Enable=1
PathLinux=linux
Build=7.00.240501A
`
	cfg, err := ParseConfig("AppServer.ini", []byte(text), dir)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File:    "AppServer.ini",
		Port:    1234,
		Enable:  true,
		Folders: map[string]string{"linux": filepath.Join(dir, "linux")},
		Build:   mustBuild(t, "7.00.240501A"),
	}
	checkConfig(t, cfg, want)
}

func checkConfig(t *testing.T, got, want *Config) {
	t.Helper()
	if got.File != want.File {
		t.Errorf("File = %q, want %q", got.File, want.File)
	}
	if got.Port != want.Port {
		t.Errorf("Port = %d, want %d", got.Port, want.Port)
	}
	if got.Enable != want.Enable {
		t.Errorf("Enable = %v, want %v", got.Enable, want.Enable)
	}
	if len(got.Folders) != len(want.Folders) {
		t.Errorf("Folders = %v, want %v", got.Folders, want.Folders)
	}
	for goos, dir := range want.Folders {
		if got.Folders[goos] != dir {
			t.Errorf("Folders[%q] = %q, want %q", goos, got.Folders[goos], dir)
		}
	}
	for goos, dir := range got.Folders {
		if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
			t.Errorf("Folders[%q] = %q is not absolute and clean", goos, dir)
		}
	}
	if got.Build != want.Build {
		t.Errorf("Build = %v, want %v", got.Build, want.Build)
	}
	if got.MinClientBuild != want.MinClientBuild {
		t.Errorf("MinClientBuild = %v, want %v", got.MinClientBuild, want.MinClientBuild)
	}
	if !slices.Equal(got.Preserve, want.Preserve) {
		t.Errorf("Preserve = %q, want %q", got.Preserve, want.Preserve)
	}
}

// TestLoadConfigTOTVS reads a full TOTVS Protheus AppServer.ini: every TOTVS
// section and key must be ignored, [WebApp] Port and [HTTP] Port must not be
// taken for [TCP] Port, and paths ending in a backslash must not swallow the
// next line.
func TestLoadConfigTOTVS(t *testing.T) {
	root := copyFixture(t, "totvs_appserver.ini")
	path := filepath.Join(root, "ini", "AppServer.ini")
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	checkConfig(t, cfg, &Config{
		File:   path,
		Port:   1234,
		Enable: true,
		Folders: map[string]string{
			"windows": filepath.Join(root, "update", "windows"),
			"linux":   filepath.Join(root, "update", "linux"),
			"darwin":  filepath.Join(root, "update", "macosx"),
		},
		Build:          mustBuild(t, "7.00.240501A"),
		MinClientBuild: mustBuild(t, "7.00.231101A"),
		Preserve:       []string{"smartclient.ini"},
	})
}

func TestLoadConfigBOMCRLF(t *testing.T) {
	root := copyFixture(t, "bom_crlf.ini")
	path := filepath.Join(root, "ini", "AppServer.ini")

	// Guard the fixture itself: an editor that "fixes" it would make this
	// test pass without testing anything.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), "\uFEFF") || !strings.Contains(string(data), "\r\n") {
		t.Fatal("testdata/ini/bom_crlf.ini must start with a UTF-8 BOM and use CRLF line ends")
	}

	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	checkConfig(t, cfg, &Config{
		File:   path,
		Port:   1234,
		Enable: true,
		Folders: map[string]string{
			"windows": filepath.Join(root, "update", "windows"),
			"linux":   filepath.Join(root, "update", "linux"),
			"darwin":  filepath.Join(root, "update", "macosx"),
		},
		Build:    mustBuild(t, "7.00.240501A"),
		Preserve: []string{"smartclient.ini", "config/user.json"},
	})
}

// TestLoadConfigRelativePath checks that with a relative file name the
// folders still come out absolute, resolved against the file's folder.
func TestLoadConfigRelativePath(t *testing.T) {
	root := copyFixture(t, "minimal.ini")
	t.Chdir(root)
	cfg, err := LoadConfig(filepath.Join("ini", "AppServer.ini"))
	if err != nil {
		t.Fatal(err)
	}
	// t.TempDir may sit behind a symbolic link (macOS /var); compare the
	// way Abs sees the working directory.
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Folders["linux"], filepath.Join(wd, "update", "linux"); got != want {
		t.Errorf(`Folders["linux"] = %q, want %q`, got, want)
	}
	if cfg.File != filepath.Join("ini", "AppServer.ini") {
		t.Errorf("File = %q, want the path as given", cfg.File)
	}
}

// TestParseConfigFixtures checks that every fixture in testdata/ini parses
// as its name says it should, with the folders in place.
func TestParseConfigFixtures(t *testing.T) {
	names, err := filepath.Glob(filepath.Join("..", "testdata", "ini", "*.ini"))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("no fixtures in testdata/ini")
	}
	for _, name := range names {
		base := filepath.Base(name)
		t.Run(base, func(t *testing.T) {
			root := copyFixture(t, base)
			_, err := LoadConfig(filepath.Join(root, "ini", "AppServer.ini"))
			configErrors(t, err) // Only *ConfigError values, whatever happens.
			if bad := strings.HasPrefix(base, "bad"); bad != (err != nil) {
				t.Errorf("LoadConfig error = %v; fixtures named bad* must fail and no others", err)
			}
		})
	}
}

func TestParseConfigCaseInsensitive(t *testing.T) {
	dir := newBaseDir(t)
	text := `[tcp]
PORT=1234

[update]
enable=TRUE
pathlinux=linux
PATHWINDOWS=windows
pAtHmAcOsX=macosx
build=7.00.240501A
minclientbuild=7.00.231101A
PRESERVE=smartclient.ini
`
	cfg, err := ParseConfig("AppServer.ini", []byte(text), dir)
	if err != nil {
		t.Fatal(err)
	}
	checkConfig(t, cfg, &Config{
		File:   "AppServer.ini",
		Port:   1234,
		Enable: true,
		Folders: map[string]string{
			"windows": filepath.Join(dir, "windows"),
			"linux":   filepath.Join(dir, "linux"),
			"darwin":  filepath.Join(dir, "macosx"),
		},
		Build:          mustBuild(t, "7.00.240501A"),
		MinClientBuild: mustBuild(t, "7.00.231101A"),
		Preserve:       []string{"smartclient.ini"},
	})
}

// TestParseConfigInlineComments checks that ini.v1, with our options, strips
// "; comment" after a value, and that a ';' with no space before it stays
// part of the value, as SpaceBeforeInlineComment promises.
func TestParseConfigInlineComments(t *testing.T) {
	dir := newBaseDir(t)
	text := "[TCP] ; the port clients connect to\n" +
		"Port=1234 ; not 1235\n" +
		"\n" +
		"[UPDATE]   ; ours\n" +
		"Enable=1        ; on\n" +
		"PathLinux=linux ; the Linux clients\n" +
		"PathWindows=windows\t; aligned with a tab\n" +
		"PathMacOSX=macosx # a hash comment\n" +
		"Build=7.00.240501A          ; the build the update folders hold\n" +
		"MinClientBuild=7.00.231101A\t\t; older clients get a full copy\n" +
		"Preserve=smartclient.ini, a.ini ; copied only when missing\n" +
		"; a full-line comment\n" +
		"# another full-line comment\n"
	cfg, err := ParseConfig("AppServer.ini", []byte(text), dir)
	if err != nil {
		t.Fatal(err)
	}
	checkConfig(t, cfg, &Config{
		File:   "AppServer.ini",
		Port:   1234,
		Enable: true,
		Folders: map[string]string{
			"windows": filepath.Join(dir, "windows"),
			"linux":   filepath.Join(dir, "linux"),
			"darwin":  filepath.Join(dir, "macosx"),
		},
		Build:          mustBuild(t, "7.00.240501A"),
		MinClientBuild: mustBuild(t, "7.00.231101A"),
		Preserve:       []string{"smartclient.ini", "a.ini"},
	})

	// Without a space the ';' is part of the value, and the value is wrong.
	text = "[TCP]\nPort=1234\n[UPDATE]\nEnable=0\nBuild=7.00.240501A;comment\n"
	_, err = ParseConfig("AppServer.ini", []byte(text), dir)
	errs := configErrors(t, err)
	if len(errs) != 1 || errs[0].Key != "Build" || !strings.Contains(errs[0].Problem, `"7.00.240501A;comment"`) {
		t.Errorf("Build=7.00.240501A;comment: got %v, want one Build error naming the whole value", err)
	}

	// Administrators separate lists with ',' or ';' alike (a ';' right
	// after a value is not a comment).
	for _, list := range []string{"a.ini;b.ini", "a.ini, b.ini", "a.ini;b.ini,", " a.ini ,; b.ini"} {
		text = "[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nBuild=7.00.240501A\nPathLinux=linux\nPreserve=" + list + "\n"
		cfg, err := ParseConfig("AppServer.ini", []byte(text), dir)
		if err != nil {
			t.Fatalf("Preserve=%s: %v", list, err)
		}
		if !slices.Equal(cfg.Preserve, []string{"a.ini", "b.ini"}) {
			t.Errorf("Preserve=%s = %q, want [a.ini b.ini]", list, cfg.Preserve)
		}
	}
}

// TestParseConfigTrailingBackslash checks that a Windows path ending in a
// backslash is not a line continuation: the next key must survive.
func TestParseConfigTrailingBackslash(t *testing.T) {
	dir := newBaseDir(t)
	text := "[P12]\nSourcePath=C:\\TOTVS\\apo\\\nRootPath=C:\\TOTVS\\data\\\n" +
		"[TCP]\nPort=1234\n" +
		"[UPDATE]\nEnable=0\nPathWindows=upd\\windows\\\nPathLinux=linux\nBuild=7.00.240501A\n"
	cfg, err := ParseConfig("AppServer.ini", []byte(text), dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Folders["linux"], filepath.Join(dir, "linux"); got != want {
		t.Errorf(`Folders["linux"] = %q, want %q`, got, want)
	}
	// Up to the end of its line, backslash included: on Windows the
	// backslash is a separator that cleaning drops; elsewhere it is a
	// character of the name.
	if got, want := cfg.Folders["windows"], filepath.Join(dir, `upd\windows\`); got != want {
		t.Errorf(`Folders["windows"] = %q, want %q, the value up to the end of its line`, got, want)
	}
}

// TestParseConfigIgnoresForeignKeys checks that what is not ours is ignored,
// however untidy: duplicate keys, bare names and keys before any section.
func TestParseConfigIgnoresForeignKeys(t *testing.T) {
	dir := newBaseDir(t)
	text := `Orphan=1
[General]
ConsoleLog=1
ConsoleLog=0
SomethingWithoutEquals
[Drivers]
Active=TCP
[TCP]
TYPE=TCPIP
TYPE=TCPIP
Secure=1
Port=1234
[ENVIRONMENT]
SourcePath=C:\TOTVS\apo
SourcePath=C:\TOTVS\apo2
[update.extra]
Whatever=1
[UPDATE]
Enable=off
`
	cfg, err := ParseConfig("AppServer.ini", []byte(text), dir)
	if err != nil {
		t.Fatal(err)
	}
	checkConfig(t, cfg, &Config{File: "AppServer.ini", Port: 1234, Folders: map[string]string{}})

	// ini.v1 cannot shadow a bare key; the same bare line twice in a TOTVS
	// section must still not make the file unreadable.
	text = "[General]\nBareLine\nBareLine\nConsoleLog\nConsoleLog=1\n[TCP]\nPort=1234\n[UPDATE]\nEnable=0\n"
	if _, err := ParseConfig("AppServer.ini", []byte(text), dir); err != nil {
		t.Errorf("repeated bare keys in [General]: %v", err)
	}
	// ...while in [UPDATE] they are still duplicates.
	text = "[General]\nBareLine\nBareLine\n[TCP]\nPort=1234\n[UPDATE]\nEnable\nEnable\n"
	_, err = ParseConfig("AppServer.ini", []byte(text), dir)
	if errs := configErrors(t, err); len(errs) != 1 || errs[0].Key != "Enable" || !strings.Contains(errs[0].Problem, "given 2 times") {
		t.Errorf("repeated bare Enable: got %v, want one duplicate error", err)
	}
}

// TestParseConfigDisabled checks that with updates off the folders are
// resolved but need not exist, and that Build is optional but still checked.
func TestParseConfigDisabled(t *testing.T) {
	dir := newBaseDir(t)
	// A path rooted without a drive is on the drive of the INI's folder on
	// Windows; elsewhere the volume name is empty and it is absolute.
	root := filepath.VolumeName(dir) + string(filepath.Separator)
	tests := []struct {
		name   string
		update string
		want   *Config
	}{
		{
			name:   "Enable absent",
			update: "PathLinux=nope\n",
			want:   &Config{Folders: map[string]string{"linux": filepath.Join(dir, "nope")}},
		},
		{
			name:   "Enable=0 with missing folders",
			update: "Enable=0\nPathLinux=../nope/linux\nPathWindows=/nonexistent/windows\nBuild=7.00.240501A\nMinClientBuild=7.00.231101A\n",
			want: &Config{
				Folders: map[string]string{
					"linux":   filepath.Join(filepath.Dir(dir), "nope", "linux"),
					"windows": filepath.Join(root, "nonexistent", "windows"),
				},
				Build:          mustBuild(t, "7.00.240501A"),
				MinClientBuild: mustBuild(t, "7.00.231101A"),
			},
		},
		{
			name:   "Enable=no with empty keys",
			update: "Enable=no\nPathLinux=\nBuild=\nMinClientBuild=\nPreserve=\n",
			want:   &Config{Folders: map[string]string{}},
		},
		{
			name:   "empty section",
			update: "",
			want:   &Config{Folders: map[string]string{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := "[TCP]\nPort=1234\n[UPDATE]\n" + tt.update
			cfg, err := ParseConfig("AppServer.ini", []byte(text), dir)
			if err != nil {
				t.Fatal(err)
			}
			tt.want.File, tt.want.Port = "AppServer.ini", 1234
			checkConfig(t, cfg, tt.want)
		})
	}
}

func TestParseConfigEnableForms(t *testing.T) {
	dir := newBaseDir(t)
	for _, tt := range []struct {
		value string
		want  bool
	}{
		{"1", true}, {"true", true}, {"TRUE", true}, {"yes", true}, {"on", true}, {"On", true},
		{"0", false}, {"false", false}, {"no", false}, {"off", false}, {"OFF", false},
	} {
		t.Run(tt.value, func(t *testing.T) {
			text := "[TCP]\nPort=1234\n[UPDATE]\nEnable=" + tt.value + "\nPathLinux=linux\nBuild=7.00.240501A\n"
			cfg, err := ParseConfig("AppServer.ini", []byte(text), dir)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Enable != tt.want {
				t.Errorf("Enable=%s gave %v, want %v", tt.value, cfg.Enable, tt.want)
			}
		})
	}
	// A bare "Enable" line means Enable=1, as AllowBooleanKeys has it.
	text := "[TCP]\nPort=1234\n[UPDATE]\nEnable\nPathLinux=linux\nBuild=7.00.240501A\n"
	cfg, err := ParseConfig("AppServer.ini", []byte(text), dir)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Enable {
		t.Error("a bare Enable line gave Enable=false")
	}
}

func TestParseConfigErrors(t *testing.T) {
	const (
		tcp    = "[TCP]\nPort=1234\n"
		update = "[UPDATE]\nEnable=1\nBuild=7.00.240501A\n"
	)
	// A path through a file is ENOTDIR on Unix, and ERROR_PATH_NOT_FOUND,
	// which is fs.ErrNotExist, on Windows.
	belowFile := `cannot use folder "{dir}{/}afile{/}linux"`
	if runtime.GOOS == "windows" {
		belowFile = `folder "{dir}{/}afile{/}linux" does not exist`
	}
	tests := []struct {
		name    string
		text    string // "{dir}" is replaced by the base folder
		section string
		key     string
		problem string // substring of Problem; "{/}" is the path separator, "{vol}" the base folder's volume
	}{
		{"no folder at all", tcp + update, "UPDATE", "", "no folder is set"},
		{"empty folder", tcp + update + "PathLinux=\n", "UPDATE", "PathLinux", "is empty"},
		{"nonexistent folder", tcp + update + "PathLinux={dir}/nope\n", "UPDATE", "PathLinux", `folder "{dir}{/}nope" does not exist`},
		{"file instead of folder", tcp + update + "PathWindows=afile\n", "UPDATE", "PathWindows", `"{dir}{/}afile" is a file, not a folder`},
		{"relative path that does not resolve", tcp + update + "PathMacOSX=../nope/macosx\n", "UPDATE", "PathMacOSX", `"../nope/macosx" is relative to "{dir}"`},
		{"relative base folder", tcp + update + "PathMacOSX=nope\n", "UPDATE", "PathMacOSX", `folder "{dir}{/}nope" does not exist ("nope" is relative to "{dir}")`},
		{"path below a file", tcp + update + "PathLinux=afile/linux\n", "UPDATE", "PathLinux", belowFile},
		{"bare path key", tcp + update + "PathLinux\n", "UPDATE", "PathLinux", "has no value"},
		{"Windows path as written", tcp + update + "PathWindows=C:\\TOTVS\\upd\n", "UPDATE", "PathWindows", `C:\TOTVS\upd" does not exist`},
		{"Port=0", "[TCP]\nPort=0\n" + update + "PathLinux=linux\n", "TCP", "Port", `"0" is not a valid port`},
		{"Port=70000", "[TCP]\nPort=70000\n" + update + "PathLinux=linux\n", "TCP", "Port", `"70000" is not a valid port`},
		{"Port=abc", "[TCP]\nPort=abc\n" + update + "PathLinux=linux\n", "TCP", "Port", `"abc" is not a valid port`},
		{"Port=+80", "[TCP]\nPort=+80\n" + update + "PathLinux=linux\n", "TCP", "Port", `"+80" is not a valid port`},
		{"Port empty", "[TCP]\nPort=\n" + update + "PathLinux=linux\n", "TCP", "Port", `"" is not a valid port`},
		{"Port missing", "[TCP]\nTYPE=TCPIP\n" + update + "PathLinux=linux\n", "TCP", "Port", "is missing"},
		{"Port only in another section", "[WebApp]\nPort=8089\n[TCP]\nTYPE=TCPIP\n" + update + "PathLinux=linux\n", "TCP", "Port", "is missing"},
		{"TCP missing", update + "PathLinux=linux\n", "TCP", "", "section is missing"},
		{"Port twice", "[TCP]\nPort=1234\nPort=4321\n" + update + "PathLinux=linux\n", "TCP", "Port", "given 2 times"},
		{"Port twice, same value", "[TCP]\nPort=1234\nport=1234\n" + update + "PathLinux=linux\n", "TCP", "Port", "given 2 times"},
		{"Port twice in two TCP sections", "[TCP]\nPort=1234\n" + update + "PathLinux=linux\n[TCP]\nPort=1235\n", "TCP", "Port", "given 2 times"},
		{"PathLinux twice", tcp + update + "PathLinux=linux\nPathLinux=linux2\n", "UPDATE", "PathLinux", "given 2 times"},
		{"PathLinux twice, second empty", tcp + update + "PathLinux=linux\nPathLinux=\n", "UPDATE", "PathLinux", "given 2 times"},
		{"PathLinux twice, first empty", tcp + update + "PathLinux=\nPathLinux=linux\n", "UPDATE", "PathLinux", "given 2 times"},
		{"unknown key", tcp + update + "PathLinux=linux\nPathLinx=linux\n", "UPDATE", "PathLinx", "unknown key (did you mean PathLinux?); known keys are Enable, PathWindows"},
		{"unknown key far from any", tcp + update + "PathLinux=linux\nColour=blue\n", "UPDATE", "Colour", "unknown key; known keys are"},
		{"Build does not parse", tcp + "[UPDATE]\nEnable=1\nPathLinux=linux\nBuild=7.00.241301A\n", "UPDATE", "Build", `invalid build "7.00.241301A": month 13`},
		{"Build lower-case suffix", tcp + "[UPDATE]\nEnable=1\nPathLinux=linux\nBuild=7.00.240501a\n", "UPDATE", "Build", `invalid build "7.00.240501a"`},
		{"Build missing", tcp + "[UPDATE]\nEnable=1\nPathLinux=linux\n", "UPDATE", "Build", "is required when updates are enabled"},
		{"Build empty", tcp + "[UPDATE]\nEnable=1\nPathLinux=linux\nBuild=\n", "UPDATE", "Build", "is required when updates are enabled"},
		{"Build bad while disabled", tcp + "[UPDATE]\nEnable=0\nBuild=abc\n", "UPDATE", "Build", `invalid build "abc"`},
		{"MinClientBuild does not parse", tcp + update + "PathLinux=linux\nMinClientBuild=7.00.240230A\n", "UPDATE", "MinClientBuild", `invalid build "7.00.240230A": day 30`},
		{"MinClientBuild newer than Build", tcp + update + "PathLinux=linux\nMinClientBuild=7.00.240501B\n", "UPDATE", "MinClientBuild", "7.00.240501B is newer than Build 7.00.240501A"},
		{"MinClientBuild of another scheme", tcp + update + "PathLinux=linux\nMinClientBuild=17.3.0.14\n", "UPDATE", "MinClientBuild", "17.3.0.14 is a dotted version but Build 7.00.240501A is a TOTVS build"},
		{"dotted MinClientBuild newer", tcp + "[UPDATE]\nEnable=1\nBuild=17.3.0.9\nPathLinux=linux\nMinClientBuild=17.3.0.14\n", "UPDATE", "MinClientBuild", "17.3.0.14 is newer than Build 17.3.0.9"},
		{"Enable=maybe", tcp + "[UPDATE]\nEnable=maybe\n", "UPDATE", "Enable", `"maybe" is not a yes/no value`},
		{"Enable empty", tcp + "[UPDATE]\nEnable=\n", "UPDATE", "Enable", `"" is not a yes/no value`},
		{"Enable twice", tcp + "[UPDATE]\nEnable=1\nEnable=0\n", "UPDATE", "Enable", "given 2 times"},
		{"UPDATE missing", tcp + "[General]\nConsoleLog=1\n", "UPDATE", "", "section is missing"},
		{"Preserve with ..", tcp + update + "PathLinux=linux\nPreserve=a.ini, ../b.ini\n", "UPDATE", "Preserve", `"../b.ini" goes outside`},
		{"Preserve absolute", tcp + update + "PathLinux=linux\nPreserve=/etc/passwd\n", "UPDATE", "Preserve", `"/etc/passwd" is absolute`},
		{"Preserve backslash", tcp + update + "PathLinux=linux\nPreserve=config\\user.ini\n", "UPDATE", "Preserve", "contains a backslash"},
		{"Preserve drive letter", tcp + update + "PathLinux=linux\nPreserve=C:/x.ini\n", "UPDATE", "Preserve", "contains a colon"},
		{"Preserve unclean", tcp + update + "PathLinux=linux\nPreserve=./a//b.ini\n", "UPDATE", "Preserve", `write "a/b.ini"`},
		{"Preserve dot", tcp + update + "PathLinux=linux\nPreserve=.\n", "UPDATE", "Preserve", "install folder itself"},
		{"KeepReleases=0", tcp + update + "PathLinux=linux\nKeepReleases=0\n", "UPDATE", "KeepReleases", `"0" is not a number of releases from 1 to 1000`},
		{"KeepReleases=1001", tcp + update + "PathLinux=linux\nKeepReleases=1001\n", "UPDATE", "KeepReleases", `"1001" is not a number of releases from 1 to 1000`},
		{"KeepReleases=x", tcp + update + "PathLinux=linux\nKeepReleases=x\n", "UPDATE", "KeepReleases", `"x" is not a number of releases from 1 to 1000`},
		{"syntax error", tcp + "[UPDATE\nEnable=1\n", "", "", "not a valid INI file: unclosed section"},
	}
	if runtime.GOOS == "windows" {
		tests = append(tests, []struct {
			name    string
			text    string
			section string
			key     string
			problem string
		}{
			{"rooted path without a drive", tcp + update + "PathWindows=\\smartsync-nope\\upd\n", "UPDATE", "PathWindows", `folder "{vol}\smartsync-nope\upd" does not exist ("\smartsync-nope\upd" is on the drive of "{dir}")`},
			{"rooted slash path without a drive", tcp + update + "PathWindows=/smartsync-nope/upd\n", "UPDATE", "PathWindows", `folder "{vol}\smartsync-nope\upd" does not exist ("/smartsync-nope/upd" is on the drive of "{dir}")`},
			{"drive without a root", tcp + update + "PathWindows=D:upd\\windows\n", "UPDATE", "PathWindows", `"D:upd\windows" is relative to the current folder of drive D:, which depends on how the server was started; write the full path, as in "D:\upd\windows"`},
			{"drive without a root, updates off", tcp + "[UPDATE]\nEnable=0\nPathWindows=C:upd\n", "UPDATE", "PathWindows", `"C:upd" is relative to the current folder of drive C:`},
		}...)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := newBaseDir(t)
			text := strings.ReplaceAll(tt.text, "{dir}", dir)
			cfg, err := ParseConfig("AppServer.ini", []byte(text), dir)
			if err == nil {
				t.Fatalf("ParseConfig succeeded with %+v, want an error", cfg)
			}
			if cfg != nil {
				t.Errorf("ParseConfig returned a Config with the error")
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a *ConfigError: %v", err, err)
			}
			// Each case has exactly one mistake, so a second message would
			// be noise an administrator has to read through.
			if errs := configErrors(t, err); len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs), err)
			}
			problem := strings.NewReplacer("{dir}", dir, "{/}", string(filepath.Separator), "{vol}", filepath.VolumeName(dir)).Replace(tt.problem)
			if ce.File != "AppServer.ini" || ce.Section != tt.section || ce.Key != tt.key || !strings.Contains(ce.Problem, problem) {
				t.Errorf("got File=%q Section=%q Key=%q Problem=%q\nwant File=%q Section=%q Key=%q Problem containing %q",
					ce.File, ce.Section, ce.Key, ce.Problem, "AppServer.ini", tt.section, tt.key, problem)
			}
		})
	}
}

func TestConfigErrorMessage(t *testing.T) {
	tests := []struct {
		err  *ConfigError
		want string
	}{
		{
			&ConfigError{File: "AppServer.ini", Section: "UPDATE", Key: "PathLinux", Problem: `folder "/srv/x" does not exist`},
			`AppServer.ini: [UPDATE] PathLinux: folder "/srv/x" does not exist`,
		},
		{
			&ConfigError{File: "AppServer.ini", Section: "UPDATE", Problem: "section is missing"},
			"AppServer.ini: [UPDATE] section is missing",
		},
		{
			&ConfigError{File: "AppServer.ini", Problem: "not a valid INI file: unclosed section: [UPDATE"},
			"AppServer.ini: not a valid INI file: unclosed section: [UPDATE",
		},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

// TestParseConfigUnwrap checks that the cause of a problem can be tested
// through the joined error.
func TestParseConfigUnwrap(t *testing.T) {
	dir := newBaseDir(t)
	// An absolute path, so that the message has no note on how it was
	// resolved: C:\srv\... on Windows.
	absent := filepath.Join(filepath.VolumeName(dir)+string(filepath.Separator), "srv", "x-does-not-exist")
	text := "[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nBuild=7.00.240501A\nPathLinux=" + absent + "\n"
	_, err := ParseConfig("AppServer.ini", []byte(text), dir)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false", err)
	}
	want := `AppServer.ini: [UPDATE] PathLinux: folder "` + absent + `" does not exist`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "AppServer.ini")
	_, err := LoadConfig(path)
	errs := configErrors(t, err)
	if len(errs) != 1 {
		t.Fatalf("got %v, want one *ConfigError", err)
	}
	if errs[0].File != path || !strings.Contains(errs[0].Problem, "cannot read the file") {
		t.Errorf("got %+v", errs[0])
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false", err)
	}
}

// TestParseConfigReportsEverything checks that an administrator sees every
// mistake in one go, not one per restart.
func TestParseConfigReportsEverything(t *testing.T) {
	dir := newBaseDir(t)
	text := `[TCP]
TYPE=TCPIP
Port=70000

[UPDATE]
Enable=1
PathLinux=nope
PathWindows=afile
PathLinx=linux
Build=7.00.240501A
MinClientBuild=7.00.241301A
Preserve=ok.ini, ../bad.ini
Preserve=again.ini
`
	_, err := ParseConfig("AppServer.ini", []byte(text), dir)
	type where struct{ section, key string }
	var got []where
	for _, ce := range configErrors(t, err) {
		got = append(got, where{ce.Section, ce.Key})
	}
	want := []where{
		{"TCP", "Port"},
		{"UPDATE", "PathLinx"},
		{"UPDATE", "PathWindows"},
		{"UPDATE", "PathLinux"},
		{"UPDATE", "MinClientBuild"},
		{"UPDATE", "Preserve"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got errors at %v, want %v; full error:\n%v", got, want, err)
	}
	// The joined message has one line per problem, each naming the file.
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Errorf("error has %d lines, want %d:\n%v", len(lines), len(want), err)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "AppServer.ini: [") {
			t.Errorf("line %q does not start with the file and section", l)
		}
	}
}

// FuzzParseConfig checks that no input makes ParseConfig panic and that any
// error is made only of *ConfigError values.
func FuzzParseConfig(f *testing.F) {
	names, err := filepath.Glob(filepath.Join("..", "testdata", "ini", "*.ini"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(""))
	f.Add([]byte("[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nPathLinux=linux\nBuild=7.00.240501A\n"))
	f.Add([]byte("[UPDATE]\nPathLinux=\"\"\"\nmulti\n\"\"\"\nPort\n`x`=1\n-=a\n"))
	// The self-update sections, valid and broken.
	f.Add([]byte("[TCP]\nPort=1234\n[UPDATE]\nEnable=0\n" +
		"[ADMIN]\nUser=admin\nPasswordHash=$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy\n" +
		"[SELFUPDATE]\nPublicKey=ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=, ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n" +
		"Carry=license.key, certs/extra.pem\nHealthTimeout=60\n" +
		"[MAIL]\nHost=smtp.example.com\nPort=587\nFrom=ERP <erp@example.com>\nUser=erp\nPassword=`s3cret ;x`\nStartTLS=1\n"))
	f.Add([]byte("[TCP]\nPort=1234\n[UPDATE]\n[admin]\npasswordhash=$2y$04$x\nuser=a b\n" +
		"[selfupdate]\npublickey=ed25519:!!\npublickey=rsa:x\ncarry=../x,/y\nhealthtimeout=4\n" +
		"[mail]\nhost=h:25\nport=0\nfrom=x\nuser=u\nstarttls\n"))

	dir := newBaseDir(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig("AppServer.ini", data, dir)
		if err == nil {
			if cfg == nil {
				t.Fatal("ParseConfig returned neither a Config nor an error")
			}
			if cfg.Port < 1 || cfg.Port > 65535 {
				t.Fatalf("accepted Port %d", cfg.Port)
			}
			if cfg.Enable && (len(cfg.Folders) == 0 || cfg.Build.IsZero()) {
				t.Fatalf("accepted an enabled config without folders or Build: %+v", cfg)
			}
			if cfg.SelfUpdateEnabled() && len(cfg.SelfUpdate.PublicKeys) == 0 {
				t.Fatalf("accepted a password hash without a public key: %+v", cfg)
			}
			if cfg.Admin.User == "" {
				t.Fatal("accepted an empty [ADMIN] User")
			}
			for _, k := range cfg.SelfUpdate.PublicKeys {
				if len(k) != 32 {
					t.Fatalf("accepted a public key of %d bytes", len(k))
				}
			}
			for _, c := range cfg.SelfUpdate.Carry {
				if checkRelPath(c, "x") != "" {
					t.Fatalf("accepted Carry entry %q", c)
				}
			}
			if d := cfg.SelfUpdate.HealthTimeout; d < 5*time.Second || d > 600*time.Second {
				t.Fatalf("accepted HealthTimeout %v", d)
			}
			if cfg.Mail.Host != "" && cfg.Mail.From == "" || cfg.Mail.Port < 1 || cfg.Mail.Port > 65535 {
				t.Fatalf("accepted mail settings %+v", cfg.Mail)
			}
			return
		}
		if cfg != nil {
			t.Fatal("ParseConfig returned a Config with an error")
		}
		for _, ce := range configErrors(t, err) {
			if ce.Problem == "" {
				t.Fatalf("ConfigError without a Problem: %#v", ce)
			}
		}
	})
}
