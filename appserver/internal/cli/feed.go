package cli

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/erpupdate/smartsync/appserver/release"
	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/spf13/cobra"
)

// feedCommand makes the vendor's release feed.
func (e *env) feedCommand() *cobra.Command {
	var keys []string
	var out, baseURL, expires, platform string
	var number uint64
	c := &cobra.Command{
		Use:   "feed --key FILE [--out FILE] [--base-url URL] [--number N] [--expires 30d] [--platform GOOS/GOARCH] ARCHIVE...",
		Short: "Make the signed feed of server releases that servers check daily",
		Long: `feed writes the release feed: a signed list of the server releases ARCHIVE...
(each already signed with 'release sign', its ARCHIVE.sig beside it), with
their builds, platforms, sizes, SHA-256 digests, URLs and release notes (the
NOTES file at the archive's root, if any). Servers whose AppServer.ini names
the feed in [SELFUPDATE] Feed check it at start and daily, and tell the
administrator of a release newer than their own.

Each archive's URL is --base-url followed by its file name; without
--base-url, its file name alone, relative to where the feed is published.
Its platform comes from its file name (appserver-7.01.250101A-linux-amd64.tar.gz)
unless --platform gives it. The feed's number must grow with every feed
published (servers refuse a lower one than they have seen); it defaults to
the current Unix time. The feed is signed with every --key.`,
		Example: `  appserver release feed --key vendor.key --out feed.json --base-url https://dl.example.com/appserver/ \
      appserver-7.01.250101A-linux-amd64.tar.gz appserver-7.01.250101A-windows-amd64.zip`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("want one or more ARCHIVEs")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(keys) == 0 {
				return usagef("feed needs --key FILE")
			}
			d, err := parseDays(expires)
			if err != nil {
				return usagef("--expires: %w", err)
			}
			now := time.Now().UTC().Truncate(time.Second)
			if !cmd.Flags().Changed("number") {
				number = uint64(now.Unix())
			} else if number == 0 {
				return usagef("--number: feed numbers start at 1")
			}
			var privs []ed25519.PrivateKey
			var pubs []ed25519.PublicKey
			for _, k := range keys {
				priv, err := release.ReadPrivateKey(k)
				if err != nil {
					return ran(err)
				}
				privs = append(privs, priv)
				pubs = append(pubs, priv.Public().(ed25519.PublicKey))
			}
			f := release.Feed{Format: release.FeedFormat, Number: number, Published: now, Expires: now.Add(d).Truncate(time.Second),
				Releases: []release.FeedRelease{}}
			for _, a := range args {
				r, err := release.MakeFeedRelease(e.ctx, a, pubs, baseURL, platform)
				if err != nil {
					return ran(err)
				}
				f.Releases = append(f.Releases, r)
				fmt.Fprintf(e.stderr, "%s: build %s for %s, %d bytes, url %s\n", a, r.Build, r.Platform, r.Size, r.URL)
			}
			data, err := release.SignFeed(f, privs...)
			if err != nil {
				return ran(err)
			}
			if out == "" {
				_, err := e.stdout.Write(data)
				return ran(err)
			}
			// Renamed into place, so that a web server never serves half a feed.
			if err := atomicfile.Write(out, data, 0o644); err != nil {
				return ran(fmt.Errorf("writing the feed: %w", err))
			}
			fmt.Fprintf(e.stderr, "%s: feed %d of %d releases, expires %s, signed with key ID", out, f.Number, len(f.Releases), f.Expires.Format(time.RFC3339))
			for _, p := range pubs {
				fmt.Fprintf(e.stderr, " %s", release.KeyID(p))
			}
			fmt.Fprintln(e.stderr)
			return nil
		},
	}
	fl := c.Flags()
	fl.StringArrayVar(&keys, "key", nil, "the publisher's private key file (made by keygen); repeat to sign with several during a key rotation")
	fl.StringVar(&out, "out", "", "file to write the feed to (default: standard output)")
	fl.StringVar(&baseURL, "base-url", "", "URL of the folder the archives are published in (default: beside the feed)")
	fl.Uint64Var(&number, "number", 0, "the feed's number, larger than every earlier feed's (default: the current Unix time)")
	fl.StringVar(&expires, "expires", "30d", "how long servers believe the feed: days (30d) or a Go duration (36h); publish a new one before")
	fl.StringVar(&platform, "platform", "", "GOOS/GOARCH of every ARCHIVE (default: from each archive's file name)")
	return c
}
