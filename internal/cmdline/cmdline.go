// Package cmdline holds what the command lines of both programs share on
// top of github.com/spf13/cobra: a group command (one that only holds
// others) and a help command that both refuse what they do not know, where
// cobra would print the help and exit 0, and the error that marks a
// command line that makes no sense (exit status 2).
//
// It imports cobra and the standard library only.
package cmdline

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// UsageError is a command line that makes no sense: the command prints
// it with a pointer to --help and exits 2.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Usagef makes a UsageError.
func Usagef(format string, args ...any) error {
	return UsageError{fmt.Errorf(format, args...)}
}

// IsUsage reports whether err is a UsageError.
func IsUsage(err error) bool {
	var ue UsageError
	return errors.As(err, &ue)
}

// Group makes cmd, which only holds other commands, refuse an unknown
// command and a missing one as usage errors.
func Group(cmd *cobra.Command) {
	var names []string
	for _, c := range cmd.Commands() {
		if !c.Hidden {
			names = append(names, c.Name())
		}
	}
	list := strings.Join(names, ", ")
	cmd.Args = func(_ *cobra.Command, args []string) error {
		if len(args) > 0 {
			return Usagef("unknown command %q; the commands are %s", args[0], list)
		}
		return nil
	}
	cmd.RunE = func(*cobra.Command, []string) error {
		return Usagef("missing command; the commands are %s", list)
	}
}

// Help replaces cobra's help command on root with one that prints the help
// of a command it finds on stdout, and refuses a topic it does not know as
// a usage error (cobra's prints "Unknown help topic" and exits 0).
func Help(root *cobra.Command) {
	root.SetHelpCommand(&cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Long:  "help prints the usage of any command, as COMMAND --help does.",
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := root.Find(args)
			if err != nil || cmd == nil || len(rest) > 0 {
				return Usagef("unknown help topic %q", strings.Join(args, " "))
			}
			cmd.InitDefaultHelpFlag()
			return cmd.Help()
		},
	})
}
