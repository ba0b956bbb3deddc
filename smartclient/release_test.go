package smartclient_test

// Attack tests of the signed release (see trust.go and
// internal/releasemeta): a lying server over real TCP offers releases
// that a client must refuse before it asks for a byte, leaving the
// install and its .smartclient folder as they were and running nothing.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver"
	"github.com/erpupdate/smartsync/internal/releasemeta"
	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/smartclient/internal/hostiletest"
	"github.com/erpupdate/smartsync/syncproto"
)

func pubKey(b byte) (ed25519.PrivateKey, string) {
	k := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
	return k, releasemeta.PublicKey(k.Public().(ed25519.PublicKey)).String()
}

// releaseDigest is the digest the publisher signs of the files the liar
// serves honestly, with the post-install step post ("" for none).
func releaseDigest(files []hostiletest.File, post string) releasemeta.Digest {
	d := releasemeta.NewDigester()
	for _, e := range hostiletest.Entries(files) {
		d.Add(releasemeta.Entry{Path: e.Path, Size: e.Size, Mode: e.Mode, Hash: e.Hash})
	}
	return d.Sum(post, postTimeout)
}

const postTimeout = 10 * time.Second

// signed is a signed release of files, as the publisher makes it.
type signed struct {
	key      ed25519.PrivateKey
	chain    []releasemeta.SignedKeyList // nil: releasemeta.NewChain(key)
	os       string                      // "" linux
	number   uint64
	rollback bool
	expires  time.Time // zero: in a day
	// published is when the publisher signed it; zero: two hours ago.
	published time.Time
	files     []hostiletest.File
	post      string
}

func (s signed) meta(t *testing.T) []byte {
	t.Helper()
	st := releasemeta.Statement{OS: "linux", Build: hostiletest.Build, Number: s.number, Rollback: s.rollback,
		Published: time.Now().Add(-2 * time.Hour), Expires: s.expires, Digest: releaseDigest(s.files, s.post)}
	if !s.published.IsZero() {
		st.Published = s.published
	}
	if s.os != "" {
		st.OS = s.os
	}
	if st.Expires.IsZero() {
		st.Expires = time.Now().Add(24 * time.Hour)
	}
	chain := s.chain
	if chain == nil {
		chain = releasemeta.NewChain(s.key)
	}
	b, err := releasemeta.Sign(st, chain, s.key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// postName is the post-install step of the signed releases: a shell
// script, or on Windows a batch file.
var postName = "post.sh"

func init() {
	if runtime.GOOS == "windows" {
		postName = "post.cmd"
	}
}

// withPost adds to files the post-install step postName, which writes a
// marker beside the install when it runs.
func withPost(files []hostiletest.File, marker string) []hostiletest.File {
	script := "#!/bin/sh\necho ran > '" + marker + "'\n"
	if runtime.GOOS == "windows" {
		script = "@echo off\r\necho ran> \"" + marker + "\"\r\n"
	}
	files = slices.Clone(files)
	files = append(files, hostiletest.File{Path: postName, Mode: 0o755, Content: []byte(script)})
	return files
}

// syncSigned runs one sync against the liar telling l with the release
// files; opts change the client's options.
func syncSigned(t *testing.T, dir string, l hostiletest.Lie, files []hostiletest.File, opts func(*smartclient.Options)) (hostiletest.Saw, error) {
	t.Helper()
	addr, wait := hostiletest.Serve(t, l, files)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := smartclient.Options{Dir: dir, Server: addr, OS: "linux", Yes: true, Timeout: 5 * time.Second}
	if opts != nil {
		opts(&o)
	}
	_, err := smartclient.Sync(ctx, o)
	saw := wait()
	// A refusing client hangs up on the liar, which may then complain.
	if saw.ServerErr != nil && err == nil {
		t.Errorf("hostile server: %v", saw.ServerErr)
	}
	return saw, err
}

// refused checks what every refusal must show.
func refused(t *testing.T, err, want error, saw hostiletest.Saw, dir string, before map[string]string, marker string, msg ...string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("sync: %v; want %v", err, want)
	}
	for _, m := range msg {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not say %q", err, m)
		}
	}
	if len(saw.Asked) > 0 || saw.AskedEnd {
		t.Errorf("the client requested files %v (end %v) of a refused release", saw.Asked, saw.AskedEnd)
	}
	after := wholeTree(t, dir)
	for _, k := range slices.Sorted(maps.Keys(mergeKeys(before, after))) {
		// The state records the failed sync for status (when, why), as
		// after any failure; what it says is installed is checked below.
		if k == ".smartclient/state.bin" && before[k] != "" && after[k] != "" {
			continue
		}
		if before[k] != after[k] {
			t.Errorf("install changed: %s: was %q, is %q", k, before[k], after[k])
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the post-install program of a refused release ran")
	}
	if st, err := smartclient.Status(context.Background(), dir, nil); err != nil || st.Build != beforeBuild(before) {
		t.Errorf("status after the refusal: %+v, %v", st, err)
	}
}

// beforeBuild is the build the install held (status's), "" for none:
// the state records hostiletest.Build once a sync installed a release.
func beforeBuild(tree map[string]string) string {
	if tree[".smartclient/state.bin"] != "" {
		return hostiletest.Build
	}
	return ""
}

func mergeKeys(a, b map[string]string) map[string]string {
	m := maps.Clone(a)
	maps.Copy(m, b)
	return m
}

// installSigned installs s on a fresh install folder and returns it.
func installSigned(t *testing.T, s signed, opts func(*smartclient.Options)) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "install")
	oldInstall(t, dir, oldRelease())
	l := hostiletest.Lie{Release: s.meta(t)}
	if s.post != "" {
		l.Header = func(h *syncproto.ManifestHeader) {
			h.PostInstall, h.PostInstallTimeout = s.post, uint32(postTimeout/time.Second)
		}
	}
	if _, err := syncSigned(t, dir, l, s.files, opts); err != nil {
		t.Fatalf("installing signed release %d: %v", s.number, err)
	}
	return dir
}

func TestSignedReleaseAttacks(t *testing.T) {
	pub, pubText := pubKey(1)
	other, _ := pubKey(2)
	trusting := func(o *smartclient.Options) { o.PublisherKeys = []string{pubText} }
	v1 := liarRelease()
	v2 := slices.Clone(v1)
	v2[0] = hostiletest.File{Path: "app.bin", Mode: 0o755, Content: []byte("application binary of release 5")}

	tests := []struct {
		name string
		// installed, when set, is installed first (trusting pub).
		installed *signed
		offer     signed
		unsigned  bool // the liar sends no Release
		files     func() []hostiletest.File
		clientOS  string // "" linux
		want      error
		msg       []string
	}{
		{name: "rogue server, unsigned release", unsigned: true, want: smartclient.ErrUnsigned, msg: []string{"AllowUnsigned=1"}},
		{name: "release signed by another key", offer: signed{key: other, number: 5}, want: releasemeta.ErrUnknownKey},
		{name: "replay of the older genuine release", installed: &signed{key: pub, number: 5, files: v2},
			offer: signed{key: pub, number: 4}, want: releasemeta.ErrRollback, msg: []string{"release 4", "release 5"}},
		{name: "expired metadata", offer: signed{key: pub, number: 5, expires: time.Now().Add(-time.Hour).Truncate(time.Second)},
			want: releasemeta.ErrExpired, msg: []string{"expired on"}},
		{name: "linux release offered to a windows client", offer: signed{key: pub, number: 5}, clientOS: "windows", want: releasemeta.ErrWrongOS},
		{name: "statement of one release, entries of another", offer: signed{key: pub, number: 5, files: v2}, want: releasemeta.ErrDigest},
		{name: "post-install step not the signed one", offer: signed{key: pub, number: 5, post: ""}, files: func() []hostiletest.File { return nil }, want: releasemeta.ErrDigest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "post-ran")
			files := withPost(v1, marker)
			if tt.offer.files == nil {
				tt.offer.files = files
			} else {
				tt.offer.files = withPost(tt.offer.files, marker)
			}
			if tt.offer.post == "" && tt.files == nil {
				tt.offer.post = postName
			}
			var dir string
			if tt.installed != nil {
				in := *tt.installed
				in.files = withPost(in.files, marker)
				in.post = postName
				dir = installSigned(t, in, trusting)
				os.Remove(marker)
			} else {
				dir = filepath.Join(t.TempDir(), "install")
				oldInstall(t, dir, oldRelease())
			}
			before := wholeTree(t, dir)
			l := hostiletest.Lie{Header: func(h *syncproto.ManifestHeader) {
				h.PostInstall, h.PostInstallTimeout = postName, uint32(postTimeout/time.Second)
			}}
			if !tt.unsigned {
				l.Release = tt.offer.meta(t)
			}
			saw, err := syncSigned(t, dir, l, files, func(o *smartclient.Options) {
				trusting(o)
				if tt.clientOS != "" {
					o.OS = tt.clientOS
				}
			})
			refused(t, err, tt.want, saw, dir, before, marker, tt.msg...)
		})
	}
}

// TestSignedReleaseInstalls: a genuine signed release installs, records
// what was installed for status, and a signed rollback is accepted.
func TestSignedReleaseInstalls(t *testing.T) {
	pub, pubText := pubKey(1)
	trusting := func(o *smartclient.Options) { o.PublisherKeys = []string{pubText} }
	v5 := liarRelease()
	dir := installSigned(t, signed{key: pub, number: 5, files: v5}, trusting)
	st, err := smartclient.Status(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := st.Publisher; p == nil || p.Installed == nil || p.Installed.Number != 5 || p.Highest != 5 || p.KeyListVersion != 1 {
		t.Fatalf("status after the install: %+v", st.Publisher)
	}
	// The publisher signs release 4 as a deliberate rollback.
	v4 := slices.Clone(v5)
	v4[0] = hostiletest.File{Path: "app.bin", Mode: 0o755, Content: []byte("the application binary of release 4")}
	back := signed{key: pub, number: 4, rollback: true, files: v4, published: time.Now().Add(-time.Hour)}
	if _, err := syncSigned(t, dir, hostiletest.Lie{Release: back.meta(t)}, v4, nil); err != nil {
		t.Fatalf("signed rollback: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "app.bin")); string(got) != string(v4[0].Content) {
		t.Errorf("after the rollback app.bin is %q", got)
	}
	st, _ = smartclient.Status(context.Background(), dir, nil)
	if p := st.Publisher; p == nil || p.Installed == nil || p.Installed.Number != 4 || p.Highest != 5 {
		t.Fatalf("status after the rollback: %+v", st.Publisher)
	}
	// Release 4 without the rollback signature is refused now.
	before := wholeTree(t, dir)
	plain := signed{key: pub, number: 4, files: v5}
	saw, err := syncSigned(t, dir, hostiletest.Lie{Release: plain.meta(t)}, v5, nil)
	refused(t, err, releasemeta.ErrRollback, saw, dir, before, filepath.Join(t.TempDir(), "none"))
	// An unsigned release is refused now, [UPDATE] AllowUnsigned or not:
	// the workstation has verified the publisher's releases.
	saw, err = syncSigned(t, dir, hostiletest.Lie{}, v5, func(o *smartclient.Options) { o.AllowUnsigned = true })
	refused(t, err, smartclient.ErrUnsigned, saw, dir, before, filepath.Join(t.TempDir(), "none"), "does not go back to unsigned")
	// And so is a rollback the publisher signed before the releases seen
	// since: replayed, it would take the workstation back further.
	old := signed{key: pub, number: 3, rollback: true, files: v5, published: time.Now().Add(-3 * time.Hour)}
	saw, err = syncSigned(t, dir, hostiletest.Lie{Release: old.meta(t)}, v5, nil)
	refused(t, err, releasemeta.ErrRollback, saw, dir, before, filepath.Join(t.TempDir(), "none"))
}

// TestSignedReleaseKeyRotation: after a release that carries the signed
// rotation, the new key is trusted and the removed key refused, even in
// a release without a chain; PublisherKey= is not read again.
func TestSignedReleaseKeyRotation(t *testing.T) {
	oldKey, oldText := pubKey(1)
	newKey, newText := pubKey(2)
	chain, err := releasemeta.Rotate(releasemeta.NewChain(oldKey), oldKey, []releasemeta.PublicKey{releasemeta.PublicKey(newKey.Public().(ed25519.PublicKey))})
	if err != nil {
		t.Fatal(err)
	}
	files := liarRelease()
	dir := installSigned(t, signed{key: oldKey, number: 1, files: files}, func(o *smartclient.Options) { o.PublisherKeys = []string{oldText} })
	files2 := slices.Clone(files)
	files2[0] = hostiletest.File{Path: "app.bin", Mode: 0o755, Content: []byte("release 2, signed by the new key")}
	// The new key signs release 2, with the chain: accepted.
	if _, err := syncSigned(t, dir, hostiletest.Lie{Release: signed{key: newKey, chain: chain, number: 2, files: files2}.meta(t)}, files2, nil); err != nil {
		t.Fatalf("the rotated key after the signed rotation: %v", err)
	}
	st, _ := smartclient.Status(context.Background(), dir, nil)
	if p := st.Publisher; p == nil || p.KeyListVersion != 2 || p.Installed == nil || p.Installed.Number != 2 {
		t.Fatalf("status after the rotation: %+v", st.Publisher)
	}
	// The removed key signs release 3: refused, even with PublisherKey=
	// naming it again in smartclient.ini.
	files3 := slices.Clone(files2)
	files3[0] = hostiletest.File{Path: "app.bin", Mode: 0o755, Content: []byte("release 3, signed by the removed key")}
	before := wholeTree(t, dir)
	saw, err := syncSigned(t, dir, hostiletest.Lie{Release: signed{key: oldKey, number: 3, files: files3}.meta(t)}, files3,
		func(o *smartclient.Options) { o.PublisherKeys = []string{oldText} })
	refused(t, err, releasemeta.ErrUnknownKey, saw, dir, before, filepath.Join(t.TempDir(), "none"))
	_ = newText
}

// TestSignedReleaseTOFU: with no PublisherKey, the first signed release's
// key is trusted once it is installed; another key is refused after, and
// a check (sync --check) records nothing.
func TestSignedReleaseTOFU(t *testing.T) {
	first, _ := pubKey(1)
	rogue, _ := pubKey(3)
	files := liarRelease()
	dir := filepath.Join(t.TempDir(), "install")
	oldInstall(t, dir, oldRelease())
	// A check trusts nothing for good.
	if _, err := syncSigned(t, dir, hostiletest.Lie{Release: signed{key: first, number: 1, files: files}.meta(t)}, files,
		func(o *smartclient.Options) { o.CheckOnly = true }); err != nil {
		t.Fatalf("check: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(smartclient.TrustFile))); err == nil {
		t.Fatal("sync --check recorded a trusted key")
	}
	if _, err := syncSigned(t, dir, hostiletest.Lie{Release: signed{key: first, number: 1, files: files}.meta(t)}, files, nil); err != nil {
		t.Fatalf("first signed release, trusted on first use: %v", err)
	}
	files2 := slices.Clone(files)
	files2[0] = hostiletest.File{Path: "app.bin", Mode: 0o755, Content: []byte("a rogue release")}
	before := wholeTree(t, dir)
	saw, err := syncSigned(t, dir, hostiletest.Lie{Release: signed{key: rogue, number: 9, files: files2}.meta(t)}, files2, nil)
	refused(t, err, releasemeta.ErrUnknownKey, saw, dir, before, filepath.Join(t.TempDir(), "none"))
}

// TestUnsignedAllowed: AllowUnsigned installs an unsigned release with a
// one-line warning.
func TestUnsignedAllowed(t *testing.T) {
	files := liarRelease()
	dir := filepath.Join(t.TempDir(), "install")
	oldInstall(t, dir, oldRelease())
	var out bytes.Buffer
	if _, err := syncSigned(t, dir, hostiletest.Lie{}, files, func(o *smartclient.Options) { o.AllowUnsigned, o.Out = true, &out }); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "not signed"); n != 1 {
		t.Errorf("want one warning, got %d in %q", n, out.String())
	}
}

// signFolder signs the linux folder of s as the publisher does, with the
// server's own configuration.
func signFolder(t *testing.T, s *server, key ed25519.PrivateKey, number uint64) {
	t.Helper()
	cfg, err := appserver.LoadConfig(filepath.Join(filepath.Dir(s.state), "AppServer.ini"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := appserver.SignUpdate(context.Background(), slog.New(slog.DiscardHandler), cfg,
		appserver.SignOptions{OS: "linux", Key: key, Number: number, Expires: time.Hour, Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

// TestSignedReleaseRealServer: the real server's index and the client's
// manifest agree on the signed digest (with a post-install step); an "up
// to date" is believed only for the release the client recorded
// installing, and otherwise the manifest is asked for and checked; a folder
// changed after signing is refused.
func TestSignedReleaseRealServer(t *testing.T) {
	key, keyText := pubKey(4)
	s := newServer(t, defaultConf)
	script := "#!/bin/sh\necho done > data-upgraded.txt\n"
	if runtime.GOOS == "windows" {
		script = "@echo off\r\necho done> data-upgraded.txt\r\n"
	}
	s.write("linux", upgradeStep, script)
	s.makeExecutable("linux", upgradeStep)
	conf := defaultConf
	conf.post, conf.postMax = upgradeStep, 30
	s.start(conf)
	dir := filepath.Join(t.TempDir(), "install")
	// Installed unsigned first, as before the publisher signed anything.
	mustSync(t, s, dir, yes)
	signFolder(t, s, key, 1)
	signedOnly := func(o *smartclient.Options) { o.AllowUnsigned, o.PublisherKeys = false, []string{keyText} }

	// The server says "up to date", but the client recorded no signed
	// install: it asks for the manifest and checks it against the
	// signature.
	res := mustSync(t, s, dir, signedOnly)
	if res.Outcome != syncproto.OutcomeUpToDate || res.Fetched != 0 {
		t.Fatalf("first signed sync: %+v", res)
	}
	st, err := smartclient.Status(context.Background(), dir, nil)
	if err != nil || st.Publisher == nil || st.Publisher.Installed == nil || st.Publisher.Installed.Number != 1 {
		t.Fatalf("status after the signed sync: %+v %v", st, err)
	}
	// Now the recorded digest is the signed one: "up to date" is enough.
	first := res.Received
	res = mustSync(t, s, dir, signedOnly)
	// The first one received the Release twice and the manifest; this
	// one the Release and "up to date" alone.
	if res.Outcome != syncproto.OutcomeUpToDate {
		t.Errorf("second signed sync: %+v", res)
	} else if res.Received+500 > first {
		t.Errorf("an up-to-date sync received %d bytes, the first signed one %d: the manifest was asked again", res.Received, first)
	}

	// The publisher signs the same files again, as release 2 (a new
	// signature before the old one expires): "up to date", and the
	// installed release's record follows the new signature.
	signFolder(t, s, key, 2)
	if res := mustSync(t, s, dir, signedOnly); res.Outcome != syncproto.OutcomeUpToDate {
		t.Errorf("the same files signed again: %+v", res)
	}
	if st, err := smartclient.Status(context.Background(), dir, nil); err != nil || st.Publisher == nil || st.Publisher.Installed == nil || st.Publisher.Installed.Number != 2 || st.Publisher.Highest != 2 {
		// Confirmed up to date with the release it installed: the
		// number a release must not go below follows.
		t.Fatalf("status after the same release signed again: %+v %v", st.Publisher, err)
	}

	// The publisher's release 3 changes a file: fetched and verified.
	s.write("linux", "lang/pt-br.txt", "release 3")
	signFolder(t, s, key, 3)
	if res := mustSync(t, s, dir, signedOnly); res.Fetched != 1 {
		t.Errorf("release 3: %+v", res)
	}

	// Someone edits the folder after signing: the server sends no
	// signature, and the client refuses.
	s.write("linux", "lang/pt-br.txt", "not the publisher's")
	before := wholeTree(t, dir)
	_, err = sync1(t, s, dir, signedOnly)
	if !errors.Is(err, smartclient.ErrUnsigned) {
		t.Fatalf("sync of an edited folder: %v", err)
	}
	for k, v := range wholeTree(t, dir) {
		if k != ".smartclient/state.bin" && before[k] != v {
			t.Errorf("install changed: %s", k)
		}
	}
	if !strings.Contains(s.log.String(), "changed after release 3 was signed") {
		t.Errorf("the server did not log the edited folder:\n%s", s.log)
	}
}

// TestSignedReleasePostInstallRuns: the post-install step of the attack
// tests runs when its release is genuine, so that its not running there
// means something.
func TestSignedReleasePostInstallRuns(t *testing.T) {
	key, keyText := pubKey(1)
	marker := filepath.Join(t.TempDir(), "post-ran")
	installSigned(t, signed{key: key, number: 1, files: withPost(liarRelease(), marker), post: postName},
		func(o *smartclient.Options) { o.PublisherKeys = []string{keyText} })
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the post-install step of a genuine release did not run: %v", err)
	}
}

// TestSignedReleaseFailedInstallTakesFallback: a release verified but not
// installed does not raise the number a release must not go below. The
// client holds release 3; release 5 is verified, and its post-install
// step fails, so the switch is undone; then it is served release 4,
// signed without Rollback, as a halted staged rollout serves the
// previous release again: it installs, since it is newer than the
// installed release 3. Once 4 is installed, 3 without the rollback
// signature is refused as before.
func TestSignedReleaseFailedInstallTakesFallback(t *testing.T) {
	pub, pubText := pubKey(1)
	trusting := func(o *smartclient.Options) { o.PublisherKeys = []string{pubText} }
	release := func(n int) []hostiletest.File {
		files := liarRelease()
		files[0] = hostiletest.File{Path: "app.bin", Mode: 0o755, Content: []byte("the application binary of release " + strconv.Itoa(n))}
		return files
	}
	withHeader := func(s signed) hostiletest.Lie {
		return hostiletest.Lie{Release: s.meta(t), Header: func(h *syncproto.ManifestHeader) {
			if s.post != "" {
				h.PostInstall, h.PostInstallTimeout = s.post, uint32(postTimeout/time.Second)
			}
		}}
	}
	appBin := func(dir string) string {
		b, _ := os.ReadFile(filepath.Join(dir, "app.bin"))
		return string(b)
	}
	status := func(dir string) *smartclient.PublisherStatus {
		t.Helper()
		st, err := smartclient.Status(context.Background(), dir, nil)
		if err != nil || st.Publisher == nil || st.Publisher.Installed == nil {
			t.Fatalf("status: %+v, %v", st, err)
		}
		return st.Publisher
	}

	v3 := signed{key: pub, number: 3, files: release(3), published: time.Now().Add(-3 * time.Hour)}
	dir := installSigned(t, v3, trusting)

	// Release 5's post-install step fails: verified, switched, undone.
	fail := "#!/bin/sh\nexit 1\n"
	if runtime.GOOS == "windows" {
		fail = "@exit /b 1\r\n"
	}
	v5files := append(release(5), hostiletest.File{Path: postName, Mode: 0o755, Content: []byte(fail)})
	v5 := signed{key: pub, number: 5, files: v5files, post: postName, published: time.Now().Add(-time.Hour)}
	if _, err := syncSigned(t, dir, withHeader(v5), v5files, trusting); err == nil {
		t.Fatal("release 5, whose post-install step fails, installed")
	}
	if got := appBin(dir); got != string(v3.files[0].Content) {
		t.Fatalf("after the failed install app.bin is %q", got)
	}
	if p := status(dir); p.Installed.Number != 3 || p.Highest != 3 {
		t.Fatalf("status after the failed install of release 5: installed %d, highest %d; want 3, 3", p.Installed.Number, p.Highest)
	}

	// The rollout halts: release 4, signed before 5 and without
	// Rollback, is served again. It is newer than the installed 3.
	v4 := signed{key: pub, number: 4, files: release(4), published: time.Now().Add(-2 * time.Hour)}
	if _, err := syncSigned(t, dir, withHeader(v4), v4.files, trusting); err != nil {
		t.Fatalf("release 4 after release 5 failed to install: %v", err)
	}
	if got := appBin(dir); got != string(v4.files[0].Content) {
		t.Errorf("after release 4 app.bin is %q", got)
	}
	if p := status(dir); p.Installed.Number != 4 || p.Highest != 4 {
		t.Fatalf("status after release 4: installed %d, highest %d; want 4, 4", p.Installed.Number, p.Highest)
	}

	// Installed, 4 is the floor: 3 without the rollback signature is
	// refused before a byte is asked.
	before := wholeTree(t, dir)
	saw, err := syncSigned(t, dir, withHeader(v3), v3.files, trusting)
	refused(t, err, releasemeta.ErrRollback, saw, dir, before, filepath.Join(t.TempDir(), "none"), "release 3", "release 4")
}
