package smartclient

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"reflect"
	"time"

	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/erpupdate/smartsync/internal/releasemeta"
	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest"
	"github.com/erpupdate/smartsync/syncproto"
)

// The client's trust in the publisher (see internal/releasemeta): before
// it asks for a byte, the release the server offers must be signed by a
// publisher key it trusts, be for its OS, not be expired, and not be
// numbered below the highest release it has installed unless the
// publisher signed that rollback after every release it installed; once
// the manifest is read, its build and the digest of its entries and
// post-install step must be the signed ones.
//
// The highest number and the latest publication time move only when a
// release is installed (the switch succeeded) or confirmed (the server
// says the install is up to date with the signed release whose digest
// the client recorded installing), never on verification alone: under a
// staged rollout, a workstation that verified release N and failed to
// install it is served N-1 again when the rollout halts, signed N-1
// without Rollback, and must take it (README, "When a rollout halts").
// What this gives a server that lies: it may serve N, make its install
// fail (bytes that do not match), then serve N-1, or a rollback the
// publisher signed before N, which the client takes as long as it is
// not older than the installed release (or is a rollback signed after
// it) and its signature holds. That is no more than it could do by never
// serving N (holding a workstation back is bounded by the expiry of the
// installed release's signature, see ErrFrozen); a release older than
// the installed one is refused as before.
//
// The trusted keys live in TrustFile, under the install's bookkeeping
// folder, which no manifest may name (see manifest's validation): no sync
// can write them. [UPDATE] PublisherKey= in smartclient.ini is read only
// while there is no such file (a first install); from then on keys change
// only through a key chain the trusted keys signed. With neither, the
// client trusts on first use the keys of the first signed release it
// installs (the chain's key list version 1), as SSH trusts a host key:
// that first sync must reach the genuine server. A sync that only checks
// (sync --check) records nothing.

// TrustFile is the client's record of the publisher it trusts.
const TrustFile = install.MetaDir + "/publisher.json"

// ErrUnsigned marks a server that offers a release with no signed
// metadata to a client that does not allow unsigned releases.
var ErrUnsigned = errors.New("smartclient: the server's release is not signed by the publisher")

// ErrFrozen marks a server that says updates are disabled to a
// workstation whose signed release has expired: nothing signed comes
// with "disabled", so a server that holds workstations back from an
// update (a freeze) would be believed for ever; once the publisher's
// signature has run out, the workstation says so rather than report all
// is well.
var ErrFrozen = errors.New("smartclient: updates are disabled, and the installed release's signature has expired")

// frozen returns ErrFrozen, wrapped with the dates, when the install in
// dir holds a signed release that expired before now; serverSays is the
// server's reason for disabling updates.
func frozen(dir, serverSays string, now time.Time) error {
	t, _, err := readTrust(dir)
	if err != nil || t.Installed == nil || now.Before(t.Installed.Expires) {
		return nil
	}
	return fmt.Errorf("%w: the server says %q, but release %d installed here expired on %s; the workstation may be held back from a newer release: ask the administrator to enable updates or publish a newly signed release",
		ErrFrozen, serverSays, t.Installed.Number, t.Installed.Expires.UTC().Format("2006-01-02 15:04 MST"))
}

// trustRecord is TrustFile.
type trustRecord struct {
	Format int                 `json:"format"`
	Keys   releasemeta.KeyList `json:"keys"`
	// Highest is the highest release number installed or confirmed,
	// and Latest the latest publication time of a release installed or
	// confirmed (a rollback must be signed after it): verifying a
	// release records neither (see the top of this file).
	Highest uint64    `json:"highest"`
	Latest  time.Time `json:"latest_published,omitzero"`
	// Installed is the signed release the install holds; nil when it
	// holds an unsigned one or none.
	Installed *InstalledRelease `json:"installed,omitempty"`
}

// InstalledRelease is what the client recorded of the signed release it
// installed.
type InstalledRelease struct {
	Key     string             `json:"key"` // ID of the key that signed it
	Number  uint64             `json:"number"`
	Build   string             `json:"build"`
	Expires time.Time          `json:"expires"`
	Digest  releasemeta.Digest `json:"digest"`
}

// readTrust reads dir's TrustFile; a missing file is a zero record.
func readTrust(dir string) (trustRecord, bool, error) {
	var t trustRecord
	err := atomicfile.ReadJSON(filepath.Join(dir, TrustFile), &t)
	if errors.Is(err, fs.ErrNotExist) {
		return trustRecord{}, false, nil
	}
	if err != nil {
		return trustRecord{}, false, fmt.Errorf("reading the trusted publisher keys: %w", err)
	}
	return t, true, nil
}

// firstSource is the session with the message read ahead of the manifest
// put back in front.
type firstSource struct {
	c     *conn
	first syncproto.Message
	err   error
	used  bool
}

func (s *firstSource) Read() (syncproto.Message, error) {
	if !s.used {
		s.used = true
		if s.first != nil || s.err != nil {
			return s.first, s.err
		}
	}
	return s.c.Read()
}

func (s *firstSource) Expect(t syncproto.MsgType) (syncproto.Message, error) {
	if !s.used && (s.first != nil || s.err != nil) {
		m, err := s.Read()
		if err == nil && m.Type() != t {
			return nil, fmt.Errorf("expected %v, got %v: %w", t, m.Type(), syncproto.ErrUnexpected)
		}
		return m, err
	}
	s.used = true
	return s.c.Expect(t)
}

// verifyRelease reads what the server sent first in answer to
// GetManifest: its signed release, verified here before anything else is
// read, or (no Release) the answer itself, which a client that does not
// allow unsigned releases refuses. It returns where the manifest is read
// from.
func (a *attempt) verifyRelease() (manifest.Source, error) {
	a.rel = nil
	m, err := a.c.Read()
	if err != nil {
		return &firstSource{c: a.c, err: err}, nil
	}
	r, ok := m.(syncproto.Release)
	if !ok {
		if a.o.AllowUnsigned && len(a.trust.Keys.Keys) > 0 {
			// A workstation that verified the publisher's releases does
			// not go back to unsigned ones on a setting that may be left
			// over from its first steps.
			return nil, fmt.Errorf("%w: the update server %s sent its release unsigned, and this workstation has verified releases signed by publisher keys %s: it does not go back to unsigned releases, whatever [UPDATE] AllowUnsigned says (to allow it, remove %s)",
				ErrUnsigned, a.o.Server, a.trust.Keys.IDs(), TrustFile)
		}
		if !a.o.AllowUnsigned {
			return nil, fmt.Errorf("%w: the update server %s sent its release unsigned, so nothing from it is installed; "+
				"the administrator signs releases with 'appserver release sign-update', or allows unsigned releases with [UPDATE] AllowUnsigned=1 in smartclient.ini",
				ErrUnsigned, a.o.Server)
		}
		if !a.warnedUnsigned {
			a.warnedUnsigned = true
			fmt.Fprintf(a.o.Out, "Warning: the release of %s is not signed; installing it because [UPDATE] AllowUnsigned=1.\n", a.o.Server)
		}
		return &firstSource{c: a.c, first: m}, nil
	}
	ring, tofu := a.trust.Keys, false
	if len(ring.Keys) == 0 {
		if len(a.o.PublisherKeys) > 0 {
			var keys []releasemeta.PublicKey
			for _, s := range a.o.PublisherKeys {
				k, err := releasemeta.ParsePublicKey(s)
				if err != nil {
					return nil, fmt.Errorf("[UPDATE] PublisherKey: %w", err)
				}
				keys = append(keys, k)
			}
			if ring, err = releasemeta.Deployed(r.Meta, keys); err != nil {
				return nil, fmt.Errorf("verifying the signed release of %s: %w", a.o.Server, err)
			}
		} else if ring, err = releasemeta.FirstUse(r.Meta); err != nil {
			return nil, fmt.Errorf("verifying the signed release of %s (trust on first use): %w", a.o.Server, err)
		} else {
			tofu = true
		}
	}
	v, err := releasemeta.Verify(r.Meta, ring, time.Now(), a.o.OS)
	if err != nil {
		return nil, fmt.Errorf("verifying the signed release of %s: %w", a.o.Server, err)
	}
	if err := releasemeta.CheckNumber(v.Statement, a.trust.Highest, a.trust.Latest); err != nil {
		return nil, fmt.Errorf("verifying the signed release of %s: %w", a.o.Server, err)
	}
	if tofu {
		a.o.Log.Warn("trusting the publisher key of the first signed release (no [UPDATE] PublisherKey in smartclient.ini)",
			"server", a.o.Server, "keys", v.Keys.IDs(), "key_list_version", v.Keys.Version)
	}
	a.rel = v
	return &firstSource{c: a.c, used: true}, nil
}

// checkRelease checks the manifest read against the verified statement
// (build, and the digest of every entry and of the post-install step), and
// records the keys verified unless the sync only checks.
func (a *attempt) checkRelease(man *manifest.Manifest) error {
	if a.rel == nil {
		return nil
	}
	if err := releasemeta.CheckRelease(a.rel.Statement, man.Build(), releaseDigest(man)); err != nil {
		return fmt.Errorf("checking the manifest of %s against its signed release: %w", a.o.Server, err)
	}
	return a.recordTrust(trustVerified)
}

// releaseDigest is the digest of man as the publisher signs it.
func releaseDigest(man *manifest.Manifest) releasemeta.Digest {
	d := releasemeta.NewDigester()
	for _, f := range man.All() {
		d.Add(releasemeta.Entry{Path: f.Path, Size: uint64(f.Size), Mode: uint32(f.Mode.Perm()), Symlink: f.Target != "",
			Dir: f.Dir, Preserve: f.Preserve, Hash: f.Hash, Target: f.Target})
	}
	return d.Sum(man.PostInstall())
}

// installedCurrent reports whether the verified release is the one the
// install holds, as recorded: only then is the server's "up to date"
// believed.
func (a *attempt) installedCurrent() bool {
	return a.rel == nil || a.trust.Installed != nil && a.trust.Installed.Digest == a.rel.Statement.Digest
}

// trustStep is how far a sync got with the release it verified, which
// says what recordTrust records.
type trustStep int

const (
	// trustVerified: the release is verified and its manifest checked;
	// only the key list is recorded (a key the chain removed stays
	// removed).
	trustVerified trustStep = iota
	// trustConfirmed: the server says the install is up to date, and
	// the verified release is the one the client recorded installing
	// (installedCurrent); the newer signature of it (a later expiry, a
	// higher number) is recorded.
	trustConfirmed
	// trustInstalled: the switch to the release is done.
	trustInstalled
)

// recordTrust writes the trusted keys and, once the release is installed
// or confirmed, the highest release number and latest publication time,
// and the release the install holds. A sync that only checks writes
// nothing, and neither does one with an unsigned release on a client
// that never recorded a signed one.
func (a *attempt) recordTrust(step trustStep) error {
	if a.o.CheckOnly || a.rel == nil && !a.hasTrust {
		return nil
	}
	t := a.trust
	t.Format = 1
	if a.rel != nil {
		st := a.rel.Statement
		t.Keys = a.rel.Keys
		// The release the install holds, or the same release signed
		// again (a new expiry, a new number): its record follows the
		// newest signature, so that status and the freeze check see it.
		// Only then do the number and time a release must not go below
		// move (see the top of this file).
		if step == trustInstalled || step == trustConfirmed && t.Installed != nil && t.Installed.Digest == st.Digest {
			t.Highest = max(t.Highest, st.Number)
			if st.Published.After(t.Latest) {
				t.Latest = st.Published
			}
			t.Installed = &InstalledRelease{Key: a.rel.Key.ID(), Number: st.Number, Build: st.Build, Expires: st.Expires, Digest: st.Digest}
		}
	} else if step == trustInstalled {
		t.Installed = nil
	}
	if a.hasTrust && reflect.DeepEqual(t, a.trust) {
		// An up-to-date sync of the same release writes nothing.
		return nil
	}
	if err := atomicfile.WriteJSON(filepath.Join(a.o.Dir, TrustFile), t, 0o644); err != nil {
		return fmt.Errorf("recording the trusted publisher: %w", err)
	}
	a.trust, a.hasTrust = t, true
	return nil
}

// PublisherStatus is what 'status' shows of the publisher.
type PublisherStatus struct {
	KeyListVersion uint64
	Keys           string // IDs, comma-separated
	Highest        uint64 // the highest release number installed or confirmed
	Installed      *InstalledRelease
}

// readPublisherStatus reads it; nil when the client never verified a
// signed release.
func readPublisherStatus(dir string) *PublisherStatus {
	t, ok, err := readTrust(dir)
	if err != nil || !ok {
		return nil
	}
	return &PublisherStatus{KeyListVersion: t.Keys.Version, Keys: t.Keys.IDs(), Highest: t.Highest, Installed: t.Installed}
}
