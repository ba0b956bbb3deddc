// Package cmdlinetest checks, for the tests of both command lines, what
// every command must do: answer --help, -h and "help COMMAND" with its usage
// on stdout and exit status 0.
//
// It is for tests only, and imports cobra and the standard library.
package cmdlinetest

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// Run runs the program with args and returns its exit status, stdout and
// stderr.
type Run func(args ...string) (code int, stdout, stderr string)

// Paths lists the command paths of root's tree, hidden commands aside,
// with the help and completion commands cobra adds as it starts.
func Paths(root *cobra.Command) [][]string {
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var walk func(c *cobra.Command, prefix []string) [][]string
	walk = func(c *cobra.Command, prefix []string) [][]string {
		out := [][]string{prefix}
		for _, sub := range c.Commands() {
			if !sub.Hidden {
				out = append(out, walk(sub, append(append([]string{}, prefix...), sub.Name()))...)
			}
		}
		return out
	}
	return walk(root, nil)
}

// HelpEverywhere checks every command of root, which the program named
// program runs through run: at least minCommands of them.
func HelpEverywhere(t *testing.T, program string, root *cobra.Command, run Run, minCommands int) {
	t.Helper()
	all := Paths(root)
	if len(all) < minCommands {
		t.Fatalf("only %d commands, want at least %d: %q", len(all), minCommands, all)
	}
	for _, path := range all {
		name := strings.Join(append([]string{program}, path...), " ")
		for _, flag := range []string{"--help", "-h"} {
			args := append(append([]string{}, path...), flag)
			code, out, errOut := run(args...)
			if code != 0 || !strings.Contains(out, "Usage:") || !strings.Contains(out, name) || errOut != "" {
				t.Errorf("%q: exit %d, stdout %q, stderr %q; want 0 and the usage of %q on stdout", args, code, out, errOut, name)
			}
		}
		if len(path) > 0 && path[0] != "help" {
			code, out, errOut := run(append([]string{"help"}, path...)...)
			if code != 0 || !strings.Contains(out, "Usage:") || !strings.Contains(out, name) {
				t.Errorf("help %q: exit %d, stdout %q, stderr %q", path, code, out, errOut)
			}
		}
	}
}
