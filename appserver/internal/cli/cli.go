// Package cli is the appserver command line: its commands and flags (with
// github.com/spf13/cobra), usage texts, and the one switch from an error to
// an exit code. The appserver library and the release package it drives
// return errors; cmd/appserver's main only calls Main.
//
// It may import appserver, appserver/release, internal/buildinfo,
// internal/cmdline and internal/atomicfile;
// nothing imports it but cmd/appserver and tests.
package cli

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/erpupdate/smartsync/appserver"
	"github.com/erpupdate/smartsync/appserver/internal/service"
	"github.com/erpupdate/smartsync/appserver/release"
	"github.com/erpupdate/smartsync/internal/buildinfo"
	"github.com/erpupdate/smartsync/internal/cmdline"
	"github.com/spf13/cobra"
)

// Exit codes of the appserver command (see the README).
const (
	ExitOK     = 0
	ExitFailed = 1
	ExitUsage  = 2
)

var usagef = cmdline.Usagef

// env is what every command is run with.
type env struct {
	ctx            context.Context
	stdin          *os.File
	stdout, stderr io.Writer
	args           []string
}

// Main runs the appserver command with args (without the program name) and
// returns the process exit code.
func Main(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer) int {
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, args: args}
	root := e.root()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	if err == nil {
		return ExitOK
	}
	name := "appserver"
	if cmd != nil {
		name = cmd.CommandPath()
	}
	switch {
	case cmdline.IsUsage(err) || !errors.Is(err, errRan):
		// cobra's own errors (an unknown command or flag) and ours.
		fmt.Fprintf(stderr, "%s: %v\nRun '%s --help' for usage.\n", name, err, name)
		return ExitUsage
	}
	err = errors.Unwrap(err)
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	if errors.Is(err, appserver.ErrUsage) {
		return ExitUsage
	}
	return ExitFailed
}

// errRan marks an error of a command that ran, as opposed to a command
// line cobra refused.
var errRan = errors.New("ran")

type ranError struct{ err error }

func (e ranError) Error() string        { return e.err.Error() }
func (e ranError) Unwrap() error        { return e.err }
func (e ranError) Is(target error) bool { return target == errRan }

// ran wraps a command's error so that Main tells it from cobra's.
func ran(err error) error {
	if err == nil {
		return nil
	}
	if cmdline.IsUsage(err) {
		return err
	}
	return ranError{err}
}

func (e *env) root() *cobra.Command {
	var o appserver.ServeOptions
	root := &cobra.Command{
		Use:   "appserver [--config AppServer.ini] [flags]",
		Short: "Serve SmartClient update folders",
		Long: `appserver keeps one update folder per OS and hands every connecting
smartclient exactly what it lacks. It serves in the foreground until
SIGINT or SIGTERM, which drain and stop it; --check validates the
configuration, indexes every update folder, prints a summary and exits.

Exit codes: 0 stopped cleanly (or --check passed), 1 failed, 2 usage or
configuration error.`,
		Example: `  appserver --config /srv/erp/AppServer.ini
  appserver --config AppServer.ini --check`,
		Version:       buildinfo.String(),
		SilenceErrors: true,
		SilenceUsage:  true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q; the commands are publish, releases, rollout, passwd, cert, release, service and completion", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Args = e.args
			return ran(service.Serve(e.ctx, o.ServiceName, func(ctx context.Context) error {
				return appserver.RunServer(ctx, o, e.stdout, e.stderr)
			}))
		},
	}
	root.SetVersionTemplate("appserver {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cmdline.UsageError{Err: err} })
	fl := root.Flags()
	fl.StringVar(&o.Config, "config", "AppServer.ini", "AppServer.ini to use")
	fl.BoolVar(&o.Check, "check", false, "validate the configuration, index every update folder, print a summary and exit")
	fl.StringVar(&o.State, "state", "", "folder for the server's state (hash caches); default: appserver-state beside the configuration")
	fl.StringVar(&o.Listen, "listen", "", "address to listen on, overriding [TCP] Port (e.g. 127.0.0.1:0)")
	// The installed service's command line names the service, so that
	// the server knows it by name (see appserver service).
	fl.StringVar(&o.ServiceName, service.NameFlag, "", "the service this server runs as (set by appserver service install)")
	fl.MarkHidden(service.NameFlag)
	root.AddCommand(e.passwdCommand(), e.certCommand(), e.publishCommand(), e.releasesCommand(), e.clientsCommand(), e.rolloutCommand(), e.releaseCommand(), e.serviceCommand(), e.helperCommand())
	cmdline.Help(root)
	return root
}

func (e *env) passwdCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "passwd",
		Short: "Print the [ADMIN] PasswordHash line for a new administrator password",
		Long: `passwd reads the administrator's password (twice, without echo, on a
terminal; one line of standard input otherwise) and prints the PasswordHash
line for the [ADMIN] section of AppServer.ini. It reads no configuration.`,
		Example: `  appserver passwd >> AppServer.ini   # then move the line into [ADMIN]
  printf '%s\n' "$PW" | appserver passwd`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("appserver passwd takes no arguments, got %q", args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return ran(appserver.Passwd(e.stdin, e.stdout, e.stderr))
		},
	}
}

func (e *env) certCommand() *cobra.Command {
	var o appserver.CertOptions
	cmd := &cobra.Command{
		Use:   "cert [--config AppServer.ini] | cert --host NAME[,NAME] --out PREFIX",
		Short: "Print the fingerprint of the server's TLS key, or make a certificate for host names",
		Long: `cert prints the fingerprint of the key the server's TLS certificate holds
(the one in [SSL] Certificate, or the one the server makes in its state
folder at its first start: made now if it is not there yet). Workstations
trust that key on their first sync and refuse another at the same address
from then on; to pin it from the start, put the printed Fingerprint line in
smartclient.ini's [SSL] section.

With --host, cert makes a new key and a self-signed certificate for those
names in PREFIX.crt and PREFIX.key (never over existing files), for [SSL]
Certificate and Key.`,
		Example: `  appserver cert --config AppServer.ini
  appserver cert --host erp.example.com,10.0.0.5 --out /etc/appserver/tls/server`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return ran(appserver.Cert(o, e.stdout))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Config, "config", "AppServer.ini", "AppServer.ini to use")
	fl.StringVar(&o.State, "state", "", "folder for the server's state; default: appserver-state beside the configuration")
	fl.StringSliceVar(&o.Hosts, "host", nil, "make a certificate for these host names or addresses instead")
	fl.StringVar(&o.Out, "out", "", "with --host: write PREFIX.crt and PREFIX.key")
	return cmd
}

// helperCommand is the self-update helper the server starts; it is not
// for people, so it is hidden and parses its own flags.
func (e *env) helperCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "selfupdate-helper --journal FILE",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return ran(appserver.RunHelper(e.ctx, args, e.stderr))
		},
	}
}

// exactArgs is cobra.ExactArgs as a usage error that names what is missing.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("want %s, got %q", what, args)
		}
		return nil
	}
}

func (e *env) releaseCommand() *cobra.Command {
	rel := &cobra.Command{
		Use:   "release",
		Short: "The publisher's tools: keygen, sign, verify, feed, sign-update, rotate",
		Long: `release holds the vendor's side of the server self-update: make a signing
key, sign a release archive, verify a signature as the server will, and
make the signed release feed that servers check daily.`,
	}
	var out string
	keygen := &cobra.Command{
		Use:     "keygen --out FILE",
		Short:   "Make a release signing key",
		Long:    "keygen writes a new ed25519 private key to FILE (which must not exist) and prints the public key line for AppServer.ini's [SELFUPDATE] PublicKey.",
		Example: "  appserver release keygen --out vendor.key",
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("keygen needs --out FILE")
			}
			pub, err := release.GenerateKey(out, nil)
			if err != nil {
				return ran(err)
			}
			fmt.Fprintln(e.stdout, release.FormatPublicKey(pub))
			fmt.Fprintf(e.stderr, "wrote the private key to %s (key ID %s); keep it secret.\n"+
				"For server releases, administrators add the line above to AppServer.ini as [SELFUPDATE] PublicKey=...;\n"+
				"for signed client releases (release sign-update), to smartclient.ini as [UPDATE] PublisherKey=...\n", out, release.KeyID(pub))
			return nil
		},
	}
	keygen.Flags().StringVar(&out, "out", "", "file to write the new private key to (must not exist)")

	var key string
	sign := &cobra.Command{
		Use:     "sign --key FILE ARCHIVE",
		Short:   "Sign a release archive",
		Long:    "sign writes ARCHIVE.sig, the signature of the release archive ARCHIVE and its build, with the private key in FILE.",
		Example: "  appserver release sign --key vendor.key appserver-7.00.240601A.tar.gz",
		Args:    exactArgs(1, "one ARCHIVE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" {
				return usagef("sign needs --key FILE")
			}
			priv, err := release.ReadPrivateKey(key)
			if err != nil {
				return ran(err)
			}
			info, err := release.Sign(args[0], priv)
			if err != nil {
				return ran(err)
			}
			fmt.Fprintf(e.stdout, "%s: signed build %s with key ID %s\n", release.SigPath(args[0]), info.Build, info.KeyID)
			return nil
		},
	}
	sign.Flags().StringVar(&key, "key", "", "private key file made by keygen")

	var pubs []string
	verify := &cobra.Command{
		Use:     "verify --public-key ed25519:... [--public-key ...] ARCHIVE",
		Short:   "Verify a release archive's signature as the server will",
		Example: "  appserver release verify --public-key ed25519:BASE64 appserver-7.00.240601A.tar.gz",
		Args:    exactArgs(1, "one ARCHIVE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var keys []ed25519.PublicKey
			for _, p := range pubs {
				k, err := release.ParsePublicKeys(p)
				if err != nil {
					return usagef("--public-key: %w", err)
				}
				keys = append(keys, k...)
			}
			if len(keys) == 0 {
				return usagef("verify needs --public-key")
			}
			info, err := release.Verify(args[0], release.SigPath(args[0]), keys)
			if err != nil {
				return ran(err)
			}
			fmt.Fprintf(e.stdout, "%s: good signature of build %s by key ID %s\n", args[0], info.Build, info.KeyID)
			return nil
		},
	}
	verify.Flags().StringArrayVar(&pubs, "public-key", nil, "a trusted public key, ed25519:...; repeat for several")
	rel.AddCommand(keygen, sign, verify, e.feedCommand(), e.signUpdateCommand(), e.rotateCommand())
	cmdline.Group(rel)
	return rel
}
