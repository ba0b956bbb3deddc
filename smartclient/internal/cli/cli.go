// Package cli is the smartclient command line: its commands and flags (with
// github.com/spf13/cobra), usage texts, prompts, progress rendering, the
// words the user reads, and the one switch from an error to an exit code.
// The smartclient library it drives returns errors, never exit codes;
// cmd/smartclient's main only calls Main.
//
// sync and run show their progress, question and failure through a ui:
// the terminal's text, or a window (smartclient/internal/desktop) when
// started without a terminal on a desktop; see ui.go and --ui.
//
// It may import the smartclient library, syncproto, internal/buildinfo and
// smartclient/internal/desktop; nothing imports it but cmd/smartclient and
// tests.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/erpupdate/smartsync/internal/buildinfo"
	"github.com/erpupdate/smartsync/internal/cmdline"
	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/smartclient/internal/desktop"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/spf13/cobra"
)

// Exit codes of the smartclient command (see the README).
const (
	ExitOK              = 0
	ExitFailed          = 1
	ExitUsage           = 2
	ExitDeclined        = 3
	ExitUpdateAvailable = 100 // sync --check: an update is available
	ExitInterrupted     = 130
)

// exitError carries an exit code the command has already explained to the
// user (or that is not a failure at all, such as 100 for --check, or the
// exit status of the program 'run' started).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

var usagef = cmdline.Usagef

// env is what every command is run with.
type env struct {
	ctx            context.Context
	stdin          io.Reader
	stdout, stderr io.Writer
}

// Main runs the smartclient command with args (without the program name)
// and returns the process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	root := e.root()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	return e.exit(cmd, err)
}

// exit is the one place where an error becomes an exit code.
func (e *env) exit(cmd *cobra.Command, err error) int {
	var ee exitError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.code
	case e.ctx.Err() != nil:
		return ExitInterrupted
	}
	// Everything else is a command line that makes no sense: cobra's own
	// errors (unknown command or flag, a missing value) and ours.
	name := "smartclient"
	if cmd != nil {
		name = cmd.CommandPath()
	}
	fmt.Fprintf(e.stderr, "%s: %v\nRun '%s --help' for usage.\n", name, err, name)
	var shown shownError
	if !errors.As(err, &shown) {
		// smartclientw.exe's stderr goes nowhere: a typo in a
		// shortcut must not do nothing visible.
		e.alert(fmt.Sprintf("%s: %v\n\nRun '%s --help' for usage.", name, err, name))
	}
	return ExitUsage
}

// shownError is an error the command has already shown in its window.
type shownError struct{ error }

func (e shownError) Unwrap() error { return e.error }

// alert shows message in a failure dialog where nobody reads stderr: where
// --ui auto would open a window (no terminal, a desktop, smartclientw.exe
// or zenity). Elsewhere it does nothing.
func (e *env) alert(message string) {
	s := e.situation()
	if kind, _ := chooseUI(uiAuto, s); kind != kindText {
		_ = desktop.Alert(s.zenity, message) // nowhere else to say it
	}
}

// code maps an error from the library to an exit code.
func (e *env) code(err error) int {
	switch {
	case err == nil, errors.Is(err, smartclient.ErrDisabled):
		return ExitOK
	case e.ctx.Err() != nil:
		return ExitInterrupted
	case errors.Is(err, smartclient.ErrUsage):
		return ExitUsage
	case errors.Is(err, smartclient.ErrDeclined):
		return ExitDeclined
	}
	return ExitFailed
}

func (e *env) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "smartclient",
		Short: "Keep a SmartClient install folder in step with its appserver",
		Long: `smartclient keeps the install folder of a SmartClient in step with the
update folder its appserver holds for this OS: it fetches what is missing
or changed, verifies every byte, keeps three backups and switches the files
so that the workstation is never left half updated.

Exit codes: 0 up to date or updated, 1 failed and nothing changed, 2 usage
or configuration error, 3 declined by the user, 100 an update is available
(sync --check), 130 interrupted.`,
		Version:       buildinfo.String(),
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetVersionTemplate("smartclient {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cmdline.UsageError{Err: err} })
	root.AddCommand(e.syncCommand(false), e.syncCommand(true), e.statusCommand(), e.restoreCommand(), e.adminCommand())
	cmdline.Group(root)
	cmdline.Help(root)
	return root
}

// installDir resolves --dir, defaulting to the executable's folder. The
// folder may not exist yet (a first install), but its parent must: a typo
// in a path must not install a client somewhere made up on the spot.
func installDir(dir string) (string, error) {
	if dir == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("finding the install folder: %w (use --dir)", err)
		}
		return filepath.Dir(exe), nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("--dir %s: %w", dir, err)
	}
	if fi, err := os.Stat(abs); err == nil {
		if !fi.IsDir() {
			return "", fmt.Errorf("--dir %s: not a folder", dir)
		}
		return abs, nil
	}
	parent := filepath.Dir(abs)
	if fi, err := os.Stat(parent); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("--dir %s: its parent folder %s does not exist; create it first", dir, parent)
	}
	return abs, nil
}

// orUnknown is s, or "unknown" when it is empty.
func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// plural writes n and the noun, "1 file" or "3 files".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// reason turns an error from the library into words for the failure
// message: without the package prefixes the wrapping repeats
// ("applying the update: smartclient: the update was rolled back:
// smartclient: ...").
func reason(err error) string {
	var pe *syncproto.Error
	if errors.As(err, &pe) {
		return "the update server refused: " + clean(pe.Error())
	}
	if smartclient.ConnectionLost(err) {
		return "the connection to the update server was lost (" + clean(err.Error()) + ")"
	}
	return clean(err.Error())
}

// packagePrefix is a package's name where a wrapped error begins: at the
// start of the message or after a colon ("receiving smartclient: ..."
// names a file, and stays).
var packagePrefix = regexp.MustCompile(`(^|: )(smartclient|syncproto): `)

// clean drops the "smartclient: " and "syncproto: " prefixes that wrapped
// errors repeat in the middle of a message, and the final period.
func clean(s string) string {
	return strings.TrimSuffix(packagePrefix.ReplaceAllString(s, "$1"), ".")
}
