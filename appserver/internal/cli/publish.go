package cli

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/erpupdate/smartsync/appserver"
	"github.com/erpupdate/smartsync/appserver/release"
	"github.com/erpupdate/smartsync/internal/cmdline"
	"github.com/spf13/cobra"
)

// publishCommand makes a folder the release of an OS on a running server.
func (e *env) publishCommand() *cobra.Command {
	var config, state, osName, build, key, chain, expires string
	var rollback bool
	c := &cobra.Command{
		Use:   "publish --config AppServer.ini --os OS [--build BUILD] [--key FILE] SOURCE",
		Short: "Publish a folder as the next release of an OS, without a restart",
		Long: `publish validates the folder SOURCE with exactly the rules the clients apply
(names every client OS can hold, links inside the folder, modes, sizes),
copies what the server's release history lacks into it (STATE/releases,
each file once by its BLAKE3 hash), signs the release with --key when
given, and makes it the release of OS: a running server serves it from its
next client, with BUILD as its build (without --build, AppServer.ini's
[UPDATE] Build), no AppServer.ini edit and no restart. A refused release
names every offending path, and what is served does not change. The
releases beyond [UPDATE] KeepReleases are then removed from the history
(never the one served, the previous one, nor those a staged rollout
serves; when the rollout's state cannot be read, nothing is removed).

A build older than the one served is refused unless --rollback, which
also signs the release as one that may replace a newer one.

Publishing the release served again, same build and files, publishes
nothing, unless --key is given: then it is published as a new release
(the next number, the same files, nothing copied) with a new signature,
which is how a signature is renewed before it expires (--expires).`,
		Example: "  appserver publish --config AppServer.ini --os linux --build 7.00.240601A --key publisher.key /srv/erp/next_linux",
		Args:    exactArgs(1, "one SOURCE folder"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if osName == "" {
				return usagef("publish needs --os")
			}
			d, err := parseDays(expires)
			if err != nil {
				return usagef("--expires: %w", err)
			}
			cfg, err := appserver.LoadConfig(config)
			if err != nil {
				return ran(fmt.Errorf("%w: %w", appserver.ErrUsage, err))
			}
			o := appserver.PublishOptions{OS: osName, Build: build, Source: args[0], Expires: d, Rollback: rollback, Now: time.Now()}
			if key != "" {
				if o.Key, err = release.ReadPrivateKey(key); err != nil {
					return ran(err)
				}
				if chain != "" {
					if o.Chain, err = appserver.ReadChain(chain); err != nil {
						return ran(err)
					}
				}
			} else if chain != "" {
				return usagef("--chain needs --key")
			}
			log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			res, err := appserver.Publish(e.ctx, log, cfg, appserver.StateDir(config, state), o)
			if errors.Is(err, appserver.ErrNothingToPublish) {
				fmt.Fprintf(e.stdout, "%v; nothing published.\n", err)
				return nil
			}
			if err != nil {
				return ran(err)
			}
			r := res.Record
			if res.BuildFromConfig {
				fmt.Fprintf(e.stdout, "No --build: the release is build %s, AppServer.ini's [UPDATE] Build.\n", r.Build)
			}
			if res.Resigned {
				fmt.Fprintf(e.stdout, "Release %d is build %s with exactly these files: re-signed as release %d (no file copied).\n", res.Previous, r.Build, r.Number)
			}
			fmt.Fprintf(e.stdout, "Published release %d of %s: build %s, %d files, %s bytes (%d new files, %s bytes added to the history).\n",
				r.Number, r.OS, r.Build, len(r.Files), appserver.GroupDigits(r.Bytes()), res.Added.Objects, appserver.GroupDigits(res.Added.Bytes))
			if st := res.Statement; st != nil {
				pub := o.Key.Public().(ed25519.PublicKey)
				fmt.Fprintf(e.stdout, "Signed by key ID %s, expires %s.\n", release.KeyID(pub), st.Expires.Format(time.RFC3339))
			} else {
				fmt.Fprintf(e.stdout, "Unsigned: clients install it only with [UPDATE] AllowUnsigned=1 (see \"Signed releases\"); sign with --key.\n")
			}
			if res.Previous != 0 {
				fmt.Fprintf(e.stdout, "It replaces release %d, which is kept in the history.\n", res.Previous)
			}
			if n := len(res.Pruned.Releases); n > 0 {
				fmt.Fprintf(e.stdout, "Removed %d older release(s) beyond [UPDATE] KeepReleases=%d (%d files, %s bytes).\n", n, cfg.KeepReleases, res.Pruned.Objects, appserver.GroupDigits(res.Pruned.Bytes))
			}
			if res.NotPruned != nil {
				fmt.Fprintf(e.stdout, "Warning: %v.\n", res.NotPruned)
			}
			if res.Server != "" {
				fmt.Fprintf(e.stdout, "The running server (%s) serves it from its next client.\n", res.Server)
			} else {
				fmt.Fprintf(e.stdout, "No server runs on this state folder now; it serves this release when started.\n")
			}
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&config, "config", "AppServer.ini", "AppServer.ini of the server")
	fl.StringVar(&state, "state", "", "the server's state folder; default: appserver-state beside the configuration")
	fl.StringVar(&osName, "os", "", "the clients' OS: windows, linux or darwin")
	fl.StringVar(&build, "build", "", "the build the folder holds, e.g. 7.00.240601A; default: AppServer.ini's [UPDATE] Build")
	fl.StringVar(&key, "key", "", "the publisher's private key file (release keygen); without it the release is unsigned")
	fl.StringVar(&chain, "chain", "", "the key chain file made by 'release rotate', when the keys were rotated")
	fl.StringVar(&expires, "expires", "90d", "how long the signature holds: days (90d) or a Go duration (36h)")
	fl.BoolVar(&rollback, "rollback", false, "publish a build older than the one served, on purpose")
	return c
}

// releasesCommand lists the release history.
func (e *env) releasesCommand() *cobra.Command {
	var config, state string
	c := &cobra.Command{
		Use:   "releases [--config AppServer.ini]",
		Short: "List the published releases the server keeps",
		Long: `releases lists the release history of the server's state folder: every
release kept for each OS, with its number, build, date, files, bytes,
whether it is signed, and how many clients are on it (CLIENTS: those
whose last update installed it or found it up to date, from the client
records in the state folder, clients.db; ? when they cannot be read); *
marks the one served.`,
		Example: "  appserver releases --config AppServer.ini",
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := appserver.ListReleases(appserver.StateDir(config, state))
			if err != nil {
				return ran(err)
			}
			if len(list) == 0 {
				fmt.Fprintln(e.stdout, "No release was published (clients are served the update folders); see appserver publish --help.")
				return nil
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "OS\tRELEASE\tBUILD\tPUBLISHED (UTC)\tFILES\tBYTES\tSIGNED\tCLIENTS\tSERVED\t")
			for _, r := range list {
				signed, served := "no", ""
				if r.Signed {
					signed = "yes"
				}
				if r.Served {
					served = "*"
				}
				clients := appserver.GroupDigits(int64(r.Clients))
				if r.Clients < 0 {
					clients = "?"
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t\n", r.OS, r.Number, r.Build, r.Published.UTC().Format("2006-01-02 15:04"), r.Files, appserver.GroupDigits(r.Bytes), signed, clients, served)
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVar(&config, "config", "AppServer.ini", "AppServer.ini of the server")
	c.Flags().StringVar(&state, "state", "", "the server's state folder; default: appserver-state beside the configuration")
	return c
}

// rolloutCommand is the administrator's hand on a staged rollout.
func (e *env) rolloutCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "rollout status|halt|resume|promote --config AppServer.ini [--os OS]",
		Short: "Show, halt, resume or promote the staged rollout of a release",
		Long: `rollout acts on the staged rollout ([ROLLOUT]) of the newest release of an OS.
With a server running on the state folder, it asks that server (which
answers within a second); with none, it acts on the rollout's state file.

  status    where each OS's rollout stands (all OSes without --os)
  halt      serve the previous release again to every workstation that lacks
            the new one (--reason says why, for the log)
  resume    go back to where a halted rollout was, forgetting its failures
  promote   serve the new release to everyone now`,
		Example: "  appserver rollout status --config AppServer.ini\n  appserver rollout halt --config AppServer.ini --os windows --reason \"shop 12 reports a crash\"",
	}
	var config, state, osName, reason string
	for _, op := range []string{"status", "halt", "resume", "promote"} {
		sub := &cobra.Command{
			Use:   op + " --config AppServer.ini --os OS",
			Short: map[string]string{"status": "Show where the rollout stands", "halt": "Halt the rollout", "resume": "Resume a halted rollout", "promote": "Serve the new release to everyone"}[op],
			Args:  exactArgs(0, "no arguments"),
			RunE: func(cmd *cobra.Command, args []string) error {
				cfg, err := appserver.LoadConfig(config)
				if err != nil {
					return ran(fmt.Errorf("%w: %w", appserver.ErrUsage, err))
				}
				oses := []string{osName}
				if osName == "" {
					if op != "status" {
						return usagef("%s needs --os", op)
					}
					oses = oses[:0]
					for o := range cfg.Folders {
						oses = append(oses, o)
					}
					slices.Sort(oses)
				}
				var failed error
				for _, o := range oses {
					a, err := appserver.RolloutCommand(e.ctx, cfg, appserver.StateDir(config, state), o, appserver.RolloutRequest{Op: op, Reason: reason})
					if err != nil {
						return ran(err)
					}
					fmt.Fprintf(e.stdout, "%s: %s\n", o, a.Status)
					if a.Error != "" {
						failed = fmt.Errorf("%s: %s", o, a.Error)
					}
				}
				return ran(failed)
			},
		}
		fl := sub.Flags()
		fl.StringVar(&config, "config", "AppServer.ini", "AppServer.ini of the server")
		fl.StringVar(&state, "state", "", "the server's state folder; default: appserver-state beside the configuration")
		fl.StringVar(&osName, "os", "", "the clients' OS: windows, linux or darwin")
		if op == "halt" {
			fl.StringVar(&reason, "reason", "", "why, for the log and the status")
		}
		c.AddCommand(sub)
	}
	cmdline.Group(c)
	return c
}
