package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/release"
	"github.com/erpupdate/smartsync/internal/cmdline/cmdlinetest"
)

// run runs the appserver command with stdin from a file holding input.
func run(t *testing.T, input string, args ...string) (int, string, string) {
	t.Helper()
	in := filepath.Join(t.TempDir(), "stdin")
	if err := os.WriteFile(in, []byte(input), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out, errb bytes.Buffer
	code := Main(t.Context(), args, f, &out, &errb)
	return code, out.String(), errb.String()
}

// TestHelpEverywhere: --help and -h on every command print its usage on
// stdout and exit 0, as does "help COMMAND".
func TestHelpEverywhere(t *testing.T) {
	// root, passwd, publish, releases, release, keygen, sign, verify, feed, sign-update, rotate,
	// completion and its 4 shells, help
	cmdlinetest.HelpEverywhere(t, "appserver", (&env{}).root(), func(args ...string) (int, string, string) {
		return run(t, "", args...)
	}, 17)
	// The root's help names every command an administrator may need.
	_, out, _ := run(t, "", "--help")
	for _, want := range []string{"passwd", "release", "service", "completion", "--config", "--check"} {
		if !strings.Contains(out, want) {
			t.Errorf("appserver --help does not mention %s:\n%s", want, out)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := run(t, "", "--version")
	if code != ExitOK || !strings.HasPrefix(out, "appserver ") || !strings.Contains(out, runtime.Version()) || !strings.Contains(out, "commit") {
		t.Errorf("--version: exit %d, %q; want the version, the commit and %s", code, out, runtime.Version())
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		code, out, _ := run(t, "", "completion", shell)
		if code != ExitOK || !strings.Contains(out, "appserver") || len(out) < 200 {
			t.Errorf("completion %s: exit %d, %d bytes", shell, code, len(out))
		}
	}
}

// TestUnknownFlagsAndCommands: the command line names what it did not
// understand, points to --help, and exits 2, before any configuration is
// read or anything listens.
func TestUnknownFlagsAndCommands(t *testing.T) {
	t.Chdir(t.TempDir()) // no AppServer.ini here
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--port", "1"}, "unknown flag: --port"},
		{[]string{"--config", "x.ini", "serve"}, `unknown command "serve"`},
		{[]string{"release", "nope"}, `unknown command "nope"`},
		{[]string{"help", "nope"}, `unknown help topic "nope"`},
		{[]string{"release"}, "missing command"},
		{[]string{"release", "keygen", "--force"}, "unknown flag: --force"},
		{[]string{"release", "keygen"}, "keygen needs --out FILE"},
		{[]string{"release", "keygen", "--out", "x", "extra"}, "want no arguments"},
		{[]string{"release", "sign", "a.tar.gz"}, "sign needs --key FILE"},
		{[]string{"release", "sign", "--key", "k"}, "want one ARCHIVE"},
		{[]string{"release", "verify", "a.tar.gz"}, "verify needs --public-key"},
		{[]string{"release", "feed", "a.tar.gz"}, "feed needs --key FILE"},
		{[]string{"release", "feed", "--key", "k"}, "want one or more ARCHIVEs"},
		{[]string{"release", "feed", "--key", "k", "--expires", "0d", "a.tar.gz"}, "--expires"},
		{[]string{"release", "feed", "--key", "k", "--number", "0", "a.tar.gz"}, "numbers start at 1"},
		{[]string{"release", "verify", "--public-key", "ed25519:AAAA", "a.tar.gz"}, "--public-key"},
		{[]string{"passwd", "secret"}, "takes no arguments"},
		{[]string{"passwd", "--cost=4"}, "unknown flag: --cost"},
	} {
		code, out, errOut := run(t, "correct horse\n", tc.args...)
		if code != ExitUsage || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "--help' for usage") || out != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d and %q with a pointer to --help", tc.args, code, out, errOut, ExitUsage, tc.want)
		}
	}
	if _, err := os.Stat("AppServer.ini"); err == nil {
		t.Error("a refused command line created an AppServer.ini")
	}
	// A configuration that is missing is a usage error too, naming it.
	code, _, errOut := run(t, "", "--config", "none.ini", "--check")
	if code != ExitUsage || !strings.Contains(errOut, "none.ini") {
		t.Errorf("--config none.ini: exit %d, %q", code, errOut)
	}
}

// TestPasswdCommandLine: passwd reads one line of standard input and
// prints the PasswordHash line, without any configuration.
func TestPasswdCommandLine(t *testing.T) {
	t.Chdir(t.TempDir())
	code, out, errOut := run(t, "correct horse\n", "passwd")
	if code != ExitOK || !strings.HasPrefix(out, "PasswordHash=$2") {
		t.Errorf("passwd: exit %d, %q, %q", code, out, errOut)
	}
	code, out, errOut = run(t, "short\n", "passwd")
	if code != ExitFailed || out != "" || !strings.Contains(errOut, "shorter than 8 characters") {
		t.Errorf("passwd with a short password: exit %d, %q, %q", code, out, errOut)
	}
}

// TestRelease: keygen, sign and verify as the publisher runs them.
func TestRelease(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "vendor.key")
	archive := filepath.Join(dir, "r.tar.gz")
	writeArchive(t, archive, map[string]string{"BUILD": "7.00.240601A\n", "bin/appserver": "#!/bin/sh\necho hi\n"})
	code, pubLine, errOut := run(t, "", "release", "keygen", "--out", keyFile)
	if code != ExitOK {
		t.Fatalf("keygen: exit %d, %q", code, errOut)
	}
	if _, err := release.ParsePublicKey(pubLine); err != nil || strings.Count(pubLine, "\n") != 1 {
		t.Fatalf("keygen printed %q: %v", pubLine, err)
	}
	if code, _, errOut := run(t, "", "release", "keygen", "--out", keyFile); code != ExitFailed || !strings.Contains(errOut, "exists") {
		t.Errorf("keygen over an existing key: exit %d, %q", code, errOut)
	}
	if code, out, errOut := run(t, "", "release", "sign", "--key", keyFile, archive); code != ExitOK || !strings.Contains(out, "7.00.240601A") {
		t.Fatalf("sign: exit %d, %q, %q", code, out, errOut)
	}
	if code, out, errOut := run(t, "", "release", "verify", "--public-key", strings.TrimSpace(pubLine), archive); code != ExitOK || !strings.Contains(out, "good signature") {
		t.Fatalf("verify: exit %d, %q, %q", code, out, errOut)
	}
	other, err := release.GenerateKey(filepath.Join(dir, "other.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run(t, "", "release", "verify", "--public-key", release.FormatPublicKey(other), archive); code != ExitFailed || !strings.Contains(errOut, release.ErrUnknownKey.Error()) {
		t.Errorf("verify with another key: exit %d, %q; want 1 and %q", code, errOut, release.ErrUnknownKey)
	}
}

func writeArchive(t *testing.T, path string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSignUpdateAndRotate: the publisher signs an update folder, rotates
// its key, and signs again with the new key and the chain.
func TestSignUpdateAndRotate(t *testing.T) {
	dir := t.TempDir()
	upd := filepath.Join(dir, "linux_upd")
	if err := os.MkdirAll(upd, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(upd, "app"), []byte("app"), 0o755); err != nil {
		t.Fatal(err)
	}
	ini := filepath.Join(dir, "AppServer.ini")
	if err := os.WriteFile(ini, []byte("[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nPathLinux=linux_upd\nBuild=7.00.240501A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	oldKey, newKey := filepath.Join(dir, "old.key"), filepath.Join(dir, "new.key")
	run(t, "", "release", "keygen", "--out", oldKey)
	_, newPub, _ := run(t, "", "release", "keygen", "--out", newKey)
	code, out, errOut := run(t, "", "release", "sign-update", "--config", ini, "--os", "linux", "--key", oldKey, "--number", "1")
	if code != ExitOK || !strings.Contains(out, "signed release 1 of linux, build 7.00.240501A") || !strings.Contains(out, "PublisherKey=ed25519:") {
		t.Fatalf("sign-update: exit %d, %q, %q", code, out, errOut)
	}
	if _, err := os.Stat(upd + ".release"); err != nil {
		t.Fatalf("no signed release beside the folder: %v", err)
	}
	chain := filepath.Join(dir, "publisher.chain")
	code, out, errOut = run(t, "", "release", "rotate", "--key", oldKey, "--chain", chain, "--keys", strings.TrimSpace(newPub))
	if code != ExitOK || !strings.Contains(out, "key list version 2") {
		t.Fatalf("rotate: exit %d, %q, %q", code, out, errOut)
	}
	if code, out, errOut := run(t, "", "release", "sign-update", "--config", ini, "--os", "linux", "--key", newKey, "--number", "2", "--chain", chain, "--expires", "30d"); code != ExitOK {
		t.Fatalf("sign-update with the new key: exit %d, %q, %q", code, out, errOut)
	}
	// The old key is no longer in the chain's last list.
	if code, _, errOut := run(t, "", "release", "sign-update", "--config", ini, "--os", "linux", "--key", oldKey, "--number", "3", "--chain", chain); code != ExitFailed || !strings.Contains(errOut, "not in the chain's last key list") {
		t.Errorf("sign-update with the rotated-out key: exit %d, %q", code, errOut)
	}
	for _, args := range [][]string{
		{"release", "sign-update", "--config", ini, "--os", "linux", "--key", oldKey},
		{"release", "sign-update", "--config", ini, "--os", "linux", "--key", oldKey, "--number", "4", "--expires", "soon"},
	} {
		if code, _, _ := run(t, "", args...); code != ExitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, ExitUsage)
		}
	}
}

// TestReleaseFeed is the vendor's round trip: sign two archives, make
// the feed of them, and verify it as a server does.
func TestReleaseFeed(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "vendor.key")
	_, pubLine, _ := run(t, "", "release", "keygen", "--out", keyFile)
	pub, err := release.ParsePublicKey(pubLine)
	if err != nil {
		t.Fatal(err)
	}
	linux := filepath.Join(dir, "appserver-7.01.250101A-linux-amd64.tar.gz")
	writeArchive(t, linux, map[string]string{"BUILD": "7.01.250101A\n", "appserver": "x", "NOTES": "Faster start\nand more\n"})
	win := filepath.Join(dir, "appserver-7.01.250101A-windows-amd64.tar.gz")
	writeArchive(t, win, map[string]string{"BUILD": "7.01.250101A\n", "appserver.exe": "x"})
	out := filepath.Join(dir, "feed.json")
	if code, _, errOut := run(t, "", "release", "feed", "--key", keyFile, "--out", out, linux); code != ExitFailed || !strings.Contains(errOut, "signature") {
		t.Fatalf("feed of an unsigned archive: exit %d, %q", code, errOut)
	}
	for _, a := range []string{linux, win} {
		if code, _, errOut := run(t, "", "release", "sign", "--key", keyFile, a); code != ExitOK {
			t.Fatalf("sign: %s", errOut)
		}
	}
	code, _, errOut := run(t, "", "release", "feed", "--key", keyFile, "--out", out, "--base-url", "https://dl.example.com/a", "--number", "42", "--expires", "7d", linux, win)
	if code != ExitOK || !strings.Contains(errOut, "feed 42 of 2 releases") {
		t.Fatalf("feed: exit %d, %q", code, errOut)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	f, err := release.VerifyFeed(data, out, []ed25519.PublicKey{pub}, time.Now(), 42)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := f.Newest("linux/amd64", "7.00.240601A")
	if !ok || r.URL != "https://dl.example.com/a/appserver-7.01.250101A-linux-amd64.tar.gz" || r.FirstLine() != "Faster start" {
		t.Fatalf("newest for linux: %+v", r)
	}
	if _, err := release.VerifyFeed(data, out, []ed25519.PublicKey{pub}, time.Now().Add(8*24*time.Hour), 0); !errors.Is(err, release.ErrFeedExpired) {
		t.Errorf("after --expires: %v", err)
	}
	// Without --number, the number grows by itself: the Unix time.
	code, stdout, _ := run(t, "", "release", "feed", "--key", keyFile, linux)
	if code != ExitOK {
		t.Fatal("feed to stdout failed")
	}
	f2, err := release.VerifyFeed([]byte(stdout), "stdout", []ed25519.PublicKey{pub}, time.Now(), 42)
	if err != nil || f2.Number < uint64(time.Now().Add(-time.Hour).Unix()) || f2.Releases[0].URL != filepath.Base(linux) {
		t.Fatalf("default number: %+v, %v", f2, err)
	}
}

// TestCheckExitsTwoOnAFolderClientsRefuse: appserver --check exits 2, as
// for any configuration error, on an update folder every client would
// refuse, and says which files.
func TestCheckExitsTwoOnAFolderClientsRefuse(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows would open the device AUX")
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "linux"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"smartclient", "aux.log"} {
		if err := os.WriteFile(filepath.Join(dir, "linux", name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ini := filepath.Join(dir, "AppServer.ini")
	if err := os.WriteFile(ini, []byte("[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nPathLinux=linux\nBuild=7.00.240501A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, "", "--config", ini, "--check")
	if code != ExitUsage || !strings.Contains(errOut, `the name "aux.log" is the Windows device AUX`) || !strings.Contains(out, `refused  the name "aux.log"`) {
		t.Errorf("exit %d, stdout %q, stderr %q; want 2 naming aux.log", code, out, errOut)
	}
}
