package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/erpupdate/smartsync/internal/cmdline/cmdlinetest"
)

// runMain runs the smartclient command without a terminal.
func runMain(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(t.Context(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// TestHelpEverywhere: --help and -h on every command print its usage on
// stdout and exit 0, as does "help COMMAND".
func TestHelpEverywhere(t *testing.T) {
	// root, sync, run, status, restore, admin, update-server, check,
	// completion and its 4 shells, help
	cmdlinetest.HelpEverywhere(t, "smartclient", (&env{}).root(), func(args ...string) (int, string, string) {
		return runMain(t, args...)
	}, 13)
	_, out, _ := runMain(t, "--help")
	for _, want := range []string{"sync", "run", "status", "restore", "admin", "completion", "100"} {
		if !strings.Contains(out, want) {
			t.Errorf("smartclient --help does not mention %s:\n%s", want, out)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runMain(t, "--version")
	if code != ExitOK || !strings.HasPrefix(out, "smartclient ") || !strings.Contains(out, runtime.Version()) || !strings.Contains(out, "commit") {
		t.Errorf("--version: exit %d, %q; want the version, the commit and %s", code, out, runtime.Version())
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		code, out, _ := runMain(t, "completion", shell)
		if code != ExitOK || !strings.Contains(out, "smartclient") || len(out) < 200 {
			t.Errorf("completion %s: exit %d, %d bytes", shell, code, len(out))
		}
	}
}

// TestUnknownFlagsAndCommands: the command line names what it did not
// understand, points to --help, and exits 2 without touching anything.
func TestUnknownFlagsAndCommands(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"help", "frobnicate"}, `unknown help topic "frobnicate"`},
		{[]string{"help", "admin", "frobnicate"}, `unknown help topic "admin frobnicate"`},
		{nil, "missing command"},
		{[]string{"admin"}, "missing command"},
		{[]string{"sync", "--frobnicate"}, "unknown flag: --frobnicate"},
		{[]string{"sync", "--dir", dir, "extra"}, `unknown command "extra"`},
		{[]string{"status", "--backup", "2"}, "unknown flag: --backup"},
		{[]string{"restore", "--dir", dir, "--backup", "x"}, `invalid argument "x"`},
		{[]string{"run", "--dir", dir, "--server", "h:1"}, "run needs a program after --"},
		{[]string{"admin", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"admin", "update-server", "--force"}, "unknown flag: --force"},
		{[]string{"sync", "--dir", dir, "--server", "h:1", "--os", "beos"}, `--os "beos"`},
		{[]string{"sync", "--dir", dir, "--server", "h:1", "--compress", "maybe"}, `--compress "maybe"`},
		{[]string{"sync", "--dir", filepath.Join(dir, "no", "such"), "--server", "h:1"}, "does not exist; create it first"},
	} {
		code, out, errOut := runMain(t, tc.args...)
		if code != ExitUsage || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "--help' for usage") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d and %q with a pointer to --help", tc.args, code, out, errOut, ExitUsage, tc.want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("a refused command line wrote into the install folder: %v", ents)
	}
}

// csi matches the terminal control sequences the progress line uses.
var csi = regexp.MustCompile("\x1b\\[[0-9;]*[A-Za-z]")

// TestProgressFitsTheTerminal draws the progress of a large download on a
// real pseudo-terminal 80 columns wide, and on narrower ones: every redraw
// must fit in a line (one that does not wraps, and each redraw then adds a
// line on the user's screen).
func TestProgressFitsTheTerminal(t *testing.T) {
	for _, cols := range []uint16{80, 60, 40, 20} {
		ptmx, tty, err := pty.Open()
		if err != nil {
			t.Skipf("no pseudo-terminal: %v", err)
		}
		if err := pty.Setsize(tty, &pty.Winsize{Rows: 24, Cols: cols}); err != nil {
			t.Fatal(err)
		}
		got := make(chan []byte)
		go func() {
			var b bytes.Buffer
			buf := make([]byte, 4096)
			for {
				n, err := ptmx.Read(buf)
				b.Write(buf[:n])
				if err != nil {
					break
				}
			}
			got <- b.Bytes()
		}()
		p := newProgress(tty).(*textProgress)
		if !p.terminal {
			t.Fatal("a pseudo-terminal was not taken for a terminal")
		}
		p.every = 0 // redraw at every Add
		const files, size = 123456, 987654321098
		p.Start(files, size)
		for i := range 50 {
			p.Add(size / 50)
			p.FileDone()
			if i%10 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		p.Finish()
		tty.Close()
		out := <-got
		ptmx.Close()

		// The terminal turns "\n" into "\r\n". After the first line,
		// every redraw starts with "\r"; the screen holds one line per
		// "\n" written.
		text := strings.ReplaceAll(string(out), "\r\n", "\n")
		lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
		if len(lines) != 2 {
			t.Errorf("%d columns: %d lines, want the announcement and one progress line: %q", cols, len(lines), lines)
			continue
		}
		redraws := strings.Split(lines[1], "\r")
		drawn := 0
		for _, r := range redraws {
			visible := csi.ReplaceAllString(r, "")
			if visible == "" {
				continue
			}
			drawn++
			if w := len([]rune(visible)); w >= int(cols) {
				t.Errorf("%d columns: a redraw of %d columns wraps: %q", cols, w, visible)
			}
		}
		if drawn < 50 {
			t.Errorf("%d columns: %d redraws, want at least 50", cols, drawn)
		}
		if cols == 80 && !strings.Contains(lines[1], "[") {
			t.Errorf("80 columns: no bar drawn: %q", redraws[len(redraws)-1])
		}
	}
}
