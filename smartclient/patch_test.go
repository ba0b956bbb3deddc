package smartclient_test

// Patches from history, against the liar: an honest patch installs the
// new file, the whole file the server sends instead of a patch does too,
// and every lie about offers or patches fails the sync with its own error
// and leaves the install as it was.

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/smartclient/internal/hostiletest"
	"github.com/erpupdate/smartsync/smartclient/internal/installtest"
	"github.com/erpupdate/smartsync/smartclient/internal/state"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/zeebo/blake3"
)

// recordInstall writes the client's state as the sync that installed
// old left it: every file with its size, mtime and hash. It returns the
// files recorded.
func recordInstall(t *testing.T, dir string, old []hostiletest.File) map[string]state.FileState {
	t.Helper()
	st := &state.State{Version: state.Version, ClientID: "0123456789abcdef0123456789abcdef", Build: "7.00.240101A", OS: "linux",
		Files: map[string]state.FileState{}}
	for _, f := range old {
		fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(f.Path)))
		if err != nil {
			t.Fatal(err)
		}
		sum := blake3.Sum256(f.Content)
		st.Files[f.Path] = state.FileState{Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano(), ServerMtimeNs: fi.ModTime().UnixNano(), Hash: hex.EncodeToString(sum[:])}
	}
	files := st.Files
	if err := st.Save(installtest.OpenDisk(t, dir)); err != nil {
		t.Fatal(err)
	}
	return files
}

// patchOldRelease is the install of the patch scene: an application
// binary the next release rebuilds, a library it leaves alone, and one
// more file to replace.
func patchOldRelease() []hostiletest.File {
	app := make([]byte, 300<<10)
	rand.NewChaCha8([32]byte{23}).Read(app)
	return []hostiletest.File{
		{Path: "app.bin", Mode: 0o755, Content: app},
		{Path: "lib/lib.so", Mode: 0o644, Content: []byte("a library both releases have")},
		{Path: "readme.txt", Mode: 0o644, Content: []byte("read me, old")},
		{Path: "smartclient.ini", Mode: 0o644, Content: []byte("[TCP]\nServer=erp\nPort=1234\n")},
	}
}

// patchRelease is the release of the patch scene: app.bin rebuilt (a
// byte changed here and there, some inserted), readme.txt replaced.
func patchRelease() []hostiletest.File {
	old := patchOldRelease()
	app := bytes.Clone(old[0].Content)
	for i := 50; i < len(app); i += 1499 {
		app[i] ^= 0xa5
	}
	app = slices.Insert(app, len(app)/3, []byte("a function added by the rebuild")...)
	return []hostiletest.File{
		{Path: "app.bin", Mode: 0o755, Content: app},
		{Path: "lib/lib.so", Mode: 0o644, Content: old[1].Content, Mtime: oldMtime},
		{Path: "readme.txt", Mode: 0o644, Content: []byte("read me, new")},
	}
}

var patchScene = scene{old: patchOldRelease, release: patchRelease, recorded: true}

// appPatch is the liar's patch of app.bin from the installed version.
func appPatch() hostiletest.Patch {
	return hostiletest.Patch{Index: 0, Base: patchOldRelease()[0].Content}
}

// TestPatchFromHistory: a file whose installed version the server holds
// a patch from is asked for as that patch and installed, and the patch's
// bytes are the wire bytes; a check lists it as a patch. A whole file
// sent instead of the patch (the server's cache was damaged) installs
// too.
func TestPatchFromHistory(t *testing.T) {
	rel := patchRelease()
	patch := hostiletest.MakePatch(patchOldRelease()[0].Content, rel[0].Content)
	sync := func(t *testing.T, l hostiletest.Lie, o smartclient.Options) (*smartclient.Result, hostiletest.Saw, string) {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "install")
		oldInstall(t, dir, patchOldRelease())
		recordInstall(t, dir, patchOldRelease())
		addr, wait := hostiletest.Serve(t, l, rel)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		o.AllowUnsigned, o.Dir, o.Server, o.OS, o.Yes, o.Timeout = true, dir, addr, "linux", true, 5*time.Second
		res, err := smartclient.Sync(ctx, o)
		saw := wait()
		if err != nil || saw.ServerErr != nil {
			t.Fatalf("sync: %v; server: %v", err, saw.ServerErr)
		}
		return res, saw, dir
	}
	installed := func(t *testing.T, dir string) {
		t.Helper()
		for _, f := range rel {
			if got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Path))); err != nil || !bytes.Equal(got, f.Content) {
				t.Errorf("%s: %d bytes, %v; want the release's", f.Path, len(got), err)
			}
		}
	}
	t.Run("the patch", func(t *testing.T) {
		res, saw, dir := sync(t, hostiletest.Lie{Patches: []hostiletest.Patch{appPatch()}}, smartclient.Options{})
		if !saw.PatchesAsked || saw.Patches[0] == nil || !slices.Equal(saw.Asked, []uint32{0, 2}) {
			t.Fatalf("asked %v, patches %v (asked for offers: %v); want app.bin as a patch, readme.txt", saw.Asked, saw.Patches, saw.PatchesAsked)
		}
		installed(t, dir)
		if res.Patched != 1 || res.WireBytes > int64(len(patch))+int64(len(rel[2].Content))+64 || res.WireBytes < int64(len(patch)) {
			t.Errorf("%d patched, %d bytes on the wire; want 1 and the patch's %d bytes and readme.txt's", res.Patched, res.WireBytes, len(patch))
		}
		if len(patch) > len(rel[0].Content)/10 {
			t.Errorf("a patch of %d bytes for %d: the scene is not a rebuild", len(patch), len(rel[0].Content))
		}
	})
	t.Run("listed by a check", func(t *testing.T) {
		res, _, _ := sync(t, hostiletest.Lie{Patches: []hostiletest.Patch{appPatch()}}, smartclient.Options{CheckOnly: true, List: true})
		want := []smartclient.Change{{Kind: "patch", Path: "app.bin"}, {Kind: "fetch", Path: "readme.txt"}, {Kind: "remove", Path: "smartclient.ini"}}
		if !slices.Equal(res.Planned, want) {
			t.Errorf("planned %v; want %v", res.Planned, want)
		}
	})
	t.Run("the whole file instead", func(t *testing.T) {
		res, saw, dir := sync(t, hostiletest.Lie{Patches: []hostiletest.Patch{appPatch()}, Send: func(s *hostiletest.Stream) {
			s.File(0)
			s.File(2)
		}}, smartclient.Options{})
		if saw.Patches[0] == nil {
			t.Fatalf("app.bin not asked for as a patch")
		}
		installed(t, dir)
		if res.Patched != 0 {
			t.Errorf("%d patched; want none", res.Patched)
		}
	})
	t.Run("no patch from another base", func(t *testing.T) {
		_, saw, dir := sync(t, hostiletest.Lie{Patches: []hostiletest.Patch{{Index: 0, Base: []byte("a version this client never had")}}}, smartclient.Options{})
		if len(saw.Patches) != 0 {
			t.Errorf("asked for patches %v from a base the client does not hold", saw.Patches)
		}
		installed(t, dir)
	})
	t.Run("no patch from an installed file changed since", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "install")
		oldInstall(t, dir, patchOldRelease())
		recordInstall(t, dir, patchOldRelease())
		// The same content, touched: the record no longer vouches for it.
		later := oldMtime.Add(time.Minute)
		if err := os.Chtimes(filepath.Join(dir, "app.bin"), later, later); err != nil {
			t.Fatal(err)
		}
		addr, wait := hostiletest.Serve(t, hostiletest.Lie{Patches: []hostiletest.Patch{appPatch()}}, rel)
		_, err := smartclient.Sync(context.Background(), smartclient.Options{AllowUnsigned: true, Dir: dir, Server: addr, OS: "linux", Yes: true, Timeout: 5 * time.Second})
		saw := wait()
		if err != nil || len(saw.Patches) != 0 {
			t.Fatalf("sync %v; asked for patches %v; want the file fetched another way", err, saw.Patches)
		}
		installed(t, dir)
	})
}

// TestHostilePatch: lies about offers and patches fail the sync with an
// error naming what, and leave the install and its state as they were.
func TestHostilePatch(t *testing.T) {
	old, rel := patchOldRelease(), patchRelease()
	app := rel[0].Content
	honest := hostiletest.MakePatch(old[0].Content, app)
	// resize has the offers say size for app.bin's patch.
	resize := func(size int) func([]syncproto.PatchRef) []syncproto.PatchOffer {
		return func(h []syncproto.PatchRef) []syncproto.PatchOffer {
			h = slices.Clone(h)
			h[0].Size = uint64(size)
			return []syncproto.PatchOffer{{Offers: h}}
		}
	}
	// sendPatch sends p as app.bin's patch, then readme.txt honestly.
	sendPatch := func(p []byte) func(s *hostiletest.Stream) {
		return func(s *hostiletest.Stream) {
			s.Msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
			s.PatchData(p)
			s.Msg(syncproto.FileEnd{Hash: blake3.Sum256(app)})
			s.File(2)
		}
	}
	longer := hostiletest.MakePatch(old[0].Content, append(slices.Clone(app), "and more"...))
	overrun := slices.Clone(longer)
	copy(overrun[12:20], honest[12:20]) // the header says the file's size; the segments rebuild more
	wrong := slices.Clone(app)
	wrong[1000] ^= 1
	wrongPatch := hostiletest.MakePatch(old[0].Content, wrong)
	patches := []hostiletest.Patch{appPatch()}
	lies := []hostiletest.Lie{
		{Name: "a patch rebuilding more bytes than declared", Offers: resize(len(overrun)), Send: sendPatch(overrun),
			Want: smartclient.ErrVerify, WantMsg: []string{"app.bin", "does not apply", "past the"}},
		{Name: "a patch made for a longer file", Offers: resize(len(longer)), Send: sendPatch(longer),
			Want: smartclient.ErrVerify, WantMsg: []string{"app.bin", "does not apply"}},
		{Name: "a patch whose result has the wrong hash", Offers: resize(len(wrongPatch)), Send: sendPatch(wrongPatch),
			Want: smartclient.ErrVerify, WantMsg: []string{"app.bin", "content has BLAKE3"}},
		{Name: "a truncated patch", Send: sendPatch(honest[:len(honest)-100]),
			Want: smartclient.ErrVerify, WantMsg: []string{"app.bin", fmt.Sprintf("ended after %d of the %d bytes offered", len(honest)-100, len(honest))}},
		{Name: "a truncated patch, offered so", Offers: resize(len(honest) - 100), Send: sendPatch(honest[:len(honest)-100]),
			Want: smartclient.ErrVerify, WantMsg: []string{"app.bin", "does not apply"}},
		{Name: "a patch longer than offered", Send: sendPatch(append(slices.Clone(honest), make([]byte, 100)...)),
			Want: smartclient.ErrVerify, WantMsg: []string{"app.bin", fmt.Sprintf("longer than the %d bytes offered", len(honest))}},
		{Name: "FileData mixed into a patch", Send: func(s *hostiletest.Stream) {
			s.Msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
			s.PatchData(honest[:100])
			s.Data(app[:100])
		}, Want: syncproto.ErrUnexpected, WantMsg: []string{"app.bin", "mixed FileData into a patch"}},
		{Name: "FilePatch for a file asked for whole", Send: func(s *hostiletest.Stream) {
			s.Patch(0)
			s.Msg(syncproto.FileStart{Index: 2, Size: uint64(len(rel[2].Content))})
			s.PatchData([]byte("SZP1"))
		}, Want: syncproto.ErrUnexpected, WantMsg: []string{"readme.txt", "a patch for a file not asked for as one"}},
		{Name: "an offer for an index past the manifest", Offers: func(h []syncproto.PatchRef) []syncproto.PatchOffer {
			return []syncproto.PatchOffer{{Offers: append(h, syncproto.PatchRef{Index: 3, Size: 1})}}
		}, Want: syncproto.ErrUnexpected, WantMsg: []string{"offer 1 names entry 3, past the manifest's 3 entries"}},
		{Name: "offers out of order across frames", Offers: func(h []syncproto.PatchRef) []syncproto.PatchOffer {
			return []syncproto.PatchOffer{{More: true, Offers: []syncproto.PatchRef{{Index: 2, Size: 1}}}, {Offers: h}}
		}, Want: syncproto.ErrUnexpected, WantMsg: []string{"offer 1 (entry 0) is not after offer 0 (entry 2)"}},
		{Name: "offers out of order in a frame", Offers: func(h []syncproto.PatchRef) []syncproto.PatchOffer {
			return []syncproto.PatchOffer{{Offers: append([]syncproto.PatchRef{{Index: 2, Size: 1}}, h...)}}
		}, Want: syncproto.ErrMalformed, WantMsg: []string{"not after offer 0"}},
		{Name: "offers over the session's limit", Offers: func(h []syncproto.PatchRef) []syncproto.PatchOffer {
			var frames []syncproto.PatchOffer
			for n := 0; n <= syncproto.MaxSessionPatchOffers; {
				o := make([]syncproto.PatchRef, syncproto.MaxPatchOffers)
				for k := range o {
					o[k] = syncproto.PatchRef{Index: 2, Size: 1}
					o[k].Base[29], o[k].Base[30], o[k].Base[31] = byte(n>>16), byte(n>>8), byte(n)
					n++
				}
				frames = append(frames, syncproto.PatchOffer{More: true, Offers: o})
			}
			return frames
		}, Want: syncproto.ErrUnexpected, WantMsg: []string{fmt.Sprintf("more than the %d offers", syncproto.MaxSessionPatchOffers)}},
	}
	for _, l := range lies {
		t.Run(l.Name, func(t *testing.T) {
			if l.Patches == nil {
				l.Patches = patches
			}
			hostileRunIn(t, l, patchScene)
		})
	}
}
