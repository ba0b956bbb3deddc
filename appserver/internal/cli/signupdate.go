package cli

import (
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/appserver"
	"github.com/erpupdate/smartsync/appserver/release"
	"github.com/spf13/cobra"
)

// signUpdateCommand is the publisher's signature of an OS update folder.
func (e *env) signUpdateCommand() *cobra.Command {
	var config, osName, key, expires, chain string
	var number uint64
	var rollback bool
	c := &cobra.Command{
		Use:   "sign-update --config AppServer.ini --os OS --key FILE --number N [--expires 90d] [--chain FILE] [--rollback]",
		Short: "Sign the release in an OS update folder for the clients",
		Long: `sign-update indexes the update folder of OS as the server does (its build,
Preserve and PostInstall from AppServer.ini), signs the statement of that
release (OS, build, release number, expiry, the digest of every entry and
of the post-install step) with the private key in FILE, and writes it
beside the folder as <folder>.release. The server serves it; clients
verify it against the publisher keys they trust before they fetch a byte.

The release number must grow with every release; a client refuses a lower
number than one it has seen, unless --rollback signs that this release
may replace a newer one. --chain adds the key chain made by 'rotate'.`,
		Example: "  appserver release sign-update --config AppServer.ini --os linux --key publisher.key --number 12 --expires 90d",
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" || osName == "" || number == 0 {
				return usagef("sign-update needs --os, --key and --number (from 1)")
			}
			d, err := parseDays(expires)
			if err != nil {
				return usagef("--expires: %w", err)
			}
			cfg, err := appserver.LoadConfig(config)
			if err != nil {
				return ran(fmt.Errorf("%w: %w", appserver.ErrUsage, err))
			}
			priv, err := release.ReadPrivateKey(key)
			if err != nil {
				return ran(err)
			}
			o := appserver.SignOptions{OS: osName, Key: priv, Number: number, Expires: d, Rollback: rollback, Now: time.Now()}
			if chain != "" {
				if o.Chain, err = appserver.ReadChain(chain); err != nil {
					return ran(err)
				}
			}
			log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			path, st, err := appserver.SignUpdate(e.ctx, log, cfg, o)
			if err != nil {
				return ran(err)
			}
			pub := priv.Public().(ed25519.PublicKey)
			fmt.Fprintf(e.stdout, "%s: signed release %d of %s, build %s, digest %s, expires %s, by key ID %s\n",
				path, st.Number, st.OS, st.Build, st.Digest, st.Expires.Format(time.RFC3339), release.KeyID(pub))
			fmt.Fprintf(e.stdout, "Clients trust it with [UPDATE] PublisherKey=%s in smartclient.ini\n", release.FormatPublicKey(pub))
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&config, "config", "AppServer.ini", "AppServer.ini naming the update folders")
	fl.StringVar(&osName, "os", "", "the folder's OS: windows, linux or darwin")
	fl.StringVar(&key, "key", "", "the publisher's private key file (made by keygen)")
	fl.Uint64Var(&number, "number", 0, "the release number; larger than every earlier release's")
	fl.StringVar(&expires, "expires", "90d", "how long the signature holds: days (90d) or a Go duration (36h)")
	fl.StringVar(&chain, "chain", "", "the key chain file made by rotate, when the keys were rotated")
	fl.BoolVar(&rollback, "rollback", false, "allow this release to replace one with a higher number")
	return c
}

// rotateCommand appends a key list to the publisher's chain.
func (e *env) rotateCommand() *cobra.Command {
	var key, chain, keys string
	c := &cobra.Command{
		Use:   "rotate --key CURRENT --chain FILE --keys ed25519:NEW1,ed25519:NEW2",
		Short: "Replace the publisher keys the clients trust, signed by the current key",
		Long: `rotate appends to the chain FILE (made when missing) the next list of publisher
keys, signed by the current private key, which must be in the chain's last list.
Sign the next releases with a new key and --chain FILE: a client that trusts
the current keys walks the chain to the new ones, and from then on refuses a
key the new list leaves out.`,
		Example: "  appserver release rotate --key old.key --chain publisher.chain --keys ed25519:BASE64",
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" || chain == "" || keys == "" {
				return usagef("rotate needs --key, --chain and --keys")
			}
			pubs, err := release.ParsePublicKeys(keys)
			if err != nil {
				return usagef("--keys: %w", err)
			}
			priv, err := release.ReadPrivateKey(key)
			if err != nil {
				return ran(err)
			}
			c, err := appserver.RotateChain(chain, priv, pubs)
			if err != nil {
				return ran(err)
			}
			last := c[len(c)-1].List
			fmt.Fprintf(e.stdout, "%s: key list version %d, signed by key ID %s, holds key IDs %s\n",
				chain, last.Version, release.KeyID(priv.Public().(ed25519.PublicKey)), last.IDs())
			fmt.Fprintf(e.stdout, "Sign the next releases with one of these keys and --chain %s; new installs get [UPDATE] PublisherKey=%s\n", chain, keys)
			return nil
		},
	}
	c.Flags().StringVar(&key, "key", "", "the current private key file")
	c.Flags().StringVar(&chain, "chain", "", "the key chain file")
	c.Flags().StringVar(&keys, "keys", "", "the new public keys, comma-separated ed25519:BASE64")
	return c
}

// parseDays parses "90d" or a Go duration.
func parseDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := strconv.Atoi(n)
		if err != nil || d <= 0 || d > 3650 {
			return 0, fmt.Errorf("%q is not 1d to 3650d", s)
		}
		return time.Duration(d) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a number of days (90d) or a positive duration (36h)", s)
	}
	return d, nil
}
