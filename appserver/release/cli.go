package release

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"
)

// ErrUsage marks errors in the command line; appserver maps it to its own
// usage error (exit status 2).
var ErrUsage = errors.New("release: usage error")

const usage = `usage:
  appserver release keygen --out FILE
  appserver release sign --key FILE ARCHIVE
  appserver release verify --public-key ed25519:... [--public-key ...] ARCHIVE`

// Run is the "appserver release" command, the vendor's side of the server
// self-update; args follow the word "release".
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: missing subcommand\n%s", ErrUsage, usage)
	}
	fl := pflag.NewFlagSet("appserver release "+args[0], pflag.ContinueOnError)
	fl.SetOutput(stderr)
	switch args[0] {
	case "keygen":
		out := fl.String("out", "", "file to write the new private key to (must not exist)")
		if err := parse(fl, args[1:], 0); err != nil {
			return err
		}
		if *out == "" {
			return fmt.Errorf("%w: keygen needs --out FILE", ErrUsage)
		}
		pub, err := GenerateKey(*out, nil)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, FormatPublicKey(pub))
		fmt.Fprintf(stderr, "wrote the private key to %s (key ID %s); keep it secret.\n"+
			"Administrators add the line above to AppServer.ini as [SELFUPDATE] PublicKey=...\n", *out, KeyID(pub))
		return nil
	case "sign":
		key := fl.String("key", "", "private key file made by keygen")
		if err := parse(fl, args[1:], 1); err != nil {
			return err
		}
		if *key == "" {
			return fmt.Errorf("%w: sign needs --key FILE", ErrUsage)
		}
		priv, err := ReadPrivateKey(*key)
		if err != nil {
			return err
		}
		archive := fl.Arg(0)
		info, err := Sign(archive, priv)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: signed build %s with key ID %s\n", SigPath(archive), info.Build, info.KeyID)
		return nil
	case "verify":
		pubs := fl.StringArray("public-key", nil, "a trusted public key, ed25519:...; repeat for several")
		if err := parse(fl, args[1:], 1); err != nil {
			return err
		}
		var keys []ed25519.PublicKey
		for _, p := range *pubs {
			k, err := ParsePublicKeys(p)
			if err != nil {
				return fmt.Errorf("%w: --public-key: %w", ErrUsage, err)
			}
			keys = append(keys, k...)
		}
		if len(keys) == 0 {
			return fmt.Errorf("%w: verify needs --public-key", ErrUsage)
		}
		archive := fl.Arg(0)
		info, err := Verify(archive, SigPath(archive), keys)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: good signature of build %s by key ID %s\n", archive, info.Build, info.KeyID)
		return nil
	}
	return fmt.Errorf("%w: unknown subcommand %q\n%s", ErrUsage, args[0], usage)
}

// parse parses flags and checks the number of positional arguments.
func parse(fl *pflag.FlagSet, args []string, nargs int) error {
	if err := fl.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if fl.NArg() != nargs {
		return fmt.Errorf("%w: want %d argument(s), got %q\n%s", ErrUsage, nargs, fl.Args(), usage)
	}
	return nil
}
