package appserver

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/index"
	"github.com/erpupdate/smartsync/appserver/internal/releases"
	"github.com/erpupdate/smartsync/appserver/internal/rollout"
	"github.com/erpupdate/smartsync/internal/releasemeta"
	"github.com/erpupdate/smartsync/internal/version"
)

// ErrNothingToPublish is returned by Publish when the release served for
// the OS already is the source, with the same build, and no key was given
// to sign it anew.
var ErrNothingToPublish = errors.New("nothing to publish")

// PublishOptions are what `appserver publish` is told.
type PublishOptions struct {
	OS string // "windows", "linux" or "darwin"
	// Build is the build the source holds; "" is the configuration's
	// [UPDATE] Build.
	Build  string
	Source string // the folder to publish
	// Key signs the release for the clients (nil: unsigned); Chain is
	// the publisher's key chain (nil: the key alone), Expires how long
	// the signature holds.
	Key     ed25519.PrivateKey
	Chain   []releasemeta.SignedKeyList
	Expires time.Duration
	// Rollback allows a build older than the one served, and signs the
	// release as one that may replace a newer one.
	Rollback bool
	Now      time.Time
}

// PublishResult says what Publish did.
type PublishResult struct {
	Record    *releases.Record
	Previous  uint64 // the release served before, 0 for none (the folder)
	Added     releases.Added
	Pruned    releases.Pruned
	Statement *releasemeta.Statement // nil when unsigned
	// BuildFromConfig: no build was given, so the release is
	// [UPDATE] Build's.
	BuildFromConfig bool
	// Resigned: the source is the release served, with the same build;
	// it was published again as a new release only to sign it anew
	// (a signature expires).
	Resigned bool
	// NotPruned says why the history was not pruned, or what its
	// pruning failed to remove; nil when pruned.
	NotPruned error
	// Server is the server that runs on the state folder, which serves
	// the release from its next client, or "" when none runs.
	Server string
}

// Publish validates the folder o.Source with the clients' own rules
// (through the index that serves it), copies into the release history of
// state what it lacks, signs its statement when o.Key is set, and makes it
// the release of o.OS: a server running on state serves it from its next
// manifest, without a restart. A refused release changes nothing. Then
// the releases beyond cfg.KeepReleases are pruned.
func Publish(ctx context.Context, log *slog.Logger, cfg *Config, state string, o PublishOptions) (*PublishResult, error) {
	folder, ok := cfg.Folders[o.OS]
	if !ok {
		return nil, fmt.Errorf("%w: %s has no update folder for %q ([UPDATE] %s): its clients could not be served", ErrUsage, cfg.File, o.OS, pathKeyFor(o.OS))
	}
	var build version.Build
	if o.Build == "" {
		if cfg.Build.IsZero() {
			return nil, fmt.Errorf("%w: no --build, and %s has no [UPDATE] Build to take it from", ErrUsage, cfg.File)
		}
		build = cfg.Build
	} else {
		var err error
		if build, err = version.Parse(o.Build); err != nil {
			return nil, fmt.Errorf("%w: --build: %w", ErrUsage, err)
		}
	}
	if min := cfg.MinClientBuild; !min.IsZero() {
		switch {
		case !build.SameScheme(min):
			return nil, fmt.Errorf("%w: --build %s is a %s, [UPDATE] MinClientBuild %s a %s: they cannot be ordered", ErrUsage, build, build.Scheme(), min, min.Scheme())
		case build.Compare(min) < 0:
			return nil, fmt.Errorf("%w: --build %s is older than [UPDATE] MinClientBuild %s: every client would be incompatible", ErrUsage, build, min)
		}
	}
	if fi, err := os.Stat(o.Source); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%w: the release to publish must be a folder: %s", ErrUsage, cmpErr(err, o.Source+" is not a folder"))
	}
	store, err := releases.Open(state)
	if err != nil {
		return nil, err
	}
	// The source is indexed as the server indexes an update folder, with
	// the same rules (links, names every client OS can hold) and the
	// configuration's Preserve and PostInstall; its hashes are kept in
	// the store, so that publishing from the same folder again rehashes
	// only what changed.
	rel := index.Release{Build: build.String(), Preserve: cfg.Preserve, PostInstall: cfg.PostInstall, PostInstallTimeout: cfg.PostInstallTimeout}
	cache := filepath.Join(store.Dir, "hashcache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("making %s: %w", cache, err)
	}
	ix, err := index.Open(ctx, log, o.OS, o.Source, cache, rel)
	if err != nil {
		return nil, fmt.Errorf("the release in %s is refused, nothing was published: %w", o.Source, err)
	}
	defer ix.Close()
	man := ix.Latest()

	unlock, err := store.Lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	res := &PublishResult{BuildFromConfig: o.Build == ""}
	if res.Previous, err = store.Current(o.OS); err != nil {
		return nil, err
	}
	files := make([]releases.Entry, len(man.Files))
	for i, f := range man.Files {
		files[i] = releases.Entry{Path: f.Path, Size: f.Size, MtimeNs: f.MtimeNs, Mode: uint32(f.Mode.Perm()), Hash: f.Hash, Target: f.Target, Dir: f.Dir}
		if f.Dir || f.Target != "" {
			files[i].MtimeNs = 0
		}
	}
	// A signed number must grow past every one the clients may have
	// seen: the releases kept, and the folder's own signed release.
	var after uint64
	// A release's Published must be after every one the clients may
	// have seen: they refuse a rollback published before the newest
	// release they know.
	var lastPublished time.Time
	rollback := o.Rollback
	if res.Previous != 0 {
		prev, err := store.Record(o.OS, res.Previous)
		if err != nil {
			return nil, err
		}
		lastPublished = prev.Published
		pb, err := version.Parse(prev.Build)
		if err == nil && pb.SameScheme(build) && build.Compare(pb) < 0 && !o.Rollback {
			return nil, fmt.Errorf("%w: build %s is older than release %d's build %s, which is served: publish it with --rollback to put it back on purpose", ErrUsage, build, prev.Number, pb)
		}
		if prev.Build == build.String() && slices.Equal(prev.Files, files) && slices.Equal(prev.Preserve, cfg.Preserve) &&
			prev.PostInstall == cfg.PostInstall && prev.PostInstallTimeout == int64(cfg.PostInstallTimeout/time.Second) {
			if o.Key == nil {
				return nil, fmt.Errorf("%w: release %d of %s already is build %s with exactly these files (with --key it would be signed anew)", ErrNothingToPublish, prev.Number, o.OS, prev.Build)
			}
			// Signed anew: the clients that were given a rollback
			// must take its renewal over the newer release they
			// may still hold.
			res.Resigned = true
			if f, err := releasemeta.Decode(prev.Signed); err == nil && f.Statement.Rollback {
				rollback = true
			}
		}
	}
	if ns, err := store.Numbers(o.OS); err == nil && len(ns) > 0 {
		if last, err := store.Record(o.OS, ns[len(ns)-1]); err == nil && last.Published.After(lastPublished) {
			lastPublished = last.Published
		}
	}
	if b, err := os.ReadFile(ReleaseFile(folder)); err == nil {
		if f, err := releasemeta.Decode(b); err == nil {
			after = f.Statement.Number
		}
	}
	number, err := store.Next(o.OS, after)
	if err != nil {
		return nil, err
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC().Truncate(time.Second)
	if !lastPublished.IsZero() && !now.After(lastPublished) {
		// Published has whole seconds: a release published in the
		// same second as the last (a --rollback undoing it at once),
		// or with the clock set back, is dated one second after it.
		now = lastPublished.UTC().Truncate(time.Second).Add(time.Second)
	}
	rec := &releases.Record{OS: o.OS, Number: number, Build: build.String(), Published: now, Files: files,
		Preserve: cfg.Preserve, PostInstall: cfg.PostInstall, PostInstallTimeout: int64(cfg.PostInstallTimeout / time.Second)}
	if rec.Source, err = filepath.Abs(o.Source); err != nil {
		rec.Source = o.Source
	}
	if o.Key != nil {
		chain := o.Chain
		if chain == nil {
			chain = releasemeta.NewChain(o.Key)
		}
		expires := o.Expires
		if expires <= 0 {
			expires = 90 * 24 * time.Hour
		}
		st := releasemeta.Statement{OS: o.OS, Build: rec.Build, Number: number, Published: now,
			Expires: now.Add(expires), Rollback: rollback, Digest: man.ReleaseDigest()}
		if rec.Signed, err = releasemeta.Sign(st, chain, o.Key); err != nil {
			return nil, fmt.Errorf("signing release %d of %s: %w", number, o.OS, err)
		}
		res.Statement = &st
	}
	if res.Added, err = store.Add(ctx, files, func(e releases.Entry) (io.ReadCloser, error) {
		return man.OpenFile(index.File{Path: e.Path})
	}); err != nil {
		return nil, fmt.Errorf("copying the release into the history: %w (nothing was published)", err)
	}
	if err := store.Commit(rec); err != nil {
		return nil, err
	}
	res.Record = rec
	// The previous release stays whatever the count: a staged rollout
	// serves it to the clients not yet given the new one.
	var pinned []uint64
	if res.Previous != 0 {
		pinned = append(pinned, res.Previous)
	}
	// And whatever a staged rollout serves: a release published while
	// the last one was still with the pilot ring leaves the clients
	// outside it on an older release still. The state is the running
	// server's: it is only read here. When it cannot be read, what the
	// rollout serves is unknown, and nothing is pruned.
	ro, err := rollout.Peek(filepath.Join(rolloutDir(state), o.OS+".json"))
	if err != nil {
		res.NotPruned = fmt.Errorf("the history was not pruned: the staged rollout's releases are unknown: %w", err)
	} else if res.Pruned, err = store.Prune(o.OS, cfg.KeepReleases, append(pinned, ro...)...); err != nil {
		res.NotPruned = fmt.Errorf("pruning the release history: %w", err)
	}
	if h, inUse, err := StateHolderOf(state); err == nil && inUse {
		res.Server = h.String()
	}
	return res, nil
}

// ReleaseInfo is one release of the history, for `appserver releases`.
type ReleaseInfo struct {
	OS        string
	Number    uint64
	Build     string
	Published time.Time
	Files     int
	Bytes     int64
	Signed    bool
	Served    bool
	Source    string
	// Expires is when the release's signature expires; zero when it is
	// unsigned (or its signed file cannot be read).
	Expires time.Time
	// Clients is how many workstations the client records have on the
	// release (their last update installed it, or found it up to date;
	// see records.go); -1 when the records cannot be read.
	Clients int
}

// ListReleases lists the releases kept in state's history, by OS and
// number, with how many clients are on each.
func ListReleases(state string) ([]ReleaseInfo, error) {
	store := releases.At(state)
	oses, err := store.OSes()
	if err != nil {
		return nil, err
	}
	slices.Sort(oses)
	var out []ReleaseInfo
	for _, o := range oses {
		cur, err := store.Current(o)
		if err != nil {
			return nil, err
		}
		ns, err := store.Numbers(o)
		if err != nil {
			return nil, err
		}
		// An unreadable record of the clients is -1 clients, not an
		// error of the listing.
		counts, countErr := countClients(state, o)
		for _, n := range ns {
			r, err := store.Record(o, n)
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, releases.ErrNoRelease) {
				continue // pruned meanwhile
			}
			if err != nil {
				return nil, err
			}
			info := ReleaseInfo{OS: o, Number: n, Build: r.Build, Published: r.Published,
				Files: len(r.Files), Bytes: r.Bytes(), Signed: len(r.Signed) > 0, Served: n == cur, Source: r.Source,
				Clients: counts[n]}
			if info.Signed {
				if f, err := releasemeta.Decode(r.Signed); err == nil {
					info.Expires = f.Statement.Expires
				}
			}
			out = append(out, info)
			if countErr != nil {
				out[len(out)-1].Clients = -1
			}
		}
	}
	return out, nil
}
