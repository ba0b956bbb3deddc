package smartclient_test

// Hostile-server tests: a server that speaks the real protocol over real
// TCP, with lies built in, and an install folder that must come out of
// every lie byte for byte as it went in, with nothing written beside it.
// In the manner of go-tuf's attack tests, each case asserts the specific
// error the client gives, not merely that it failed.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/pending"

	"github.com/erpupdate/smartsync/internal/cdc"
	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/smartclient/internal/hostiletest"
	"github.com/erpupdate/smartsync/smartclient/internal/state"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"
)

// oldMtime is the old install's modification time.
var oldMtime = time.Date(2023, 11, 1, 8, 0, 0, 0, time.UTC)

// liarRelease is the release the liar serves when it tells the truth:
// one file that replaces a file of the old install, a new one of several
// chunks, a small last one, and one the old install already has as it
// is, which the client does not ask for.
func liarRelease() []hostiletest.File {
	big := make([]byte, 300<<10)
	rand.NewChaCha8([32]byte{7}).Read(big)
	return []hostiletest.File{
		{Path: "app.bin", Mode: 0o755, Content: []byte("the new application binary")},
		{Path: "lib/libnew.so", Mode: 0o644, Content: big},
		{Path: "data/last.dat", Mode: 0o644, Content: []byte("the last file of the release")},
		{Path: "readme.txt", Mode: 0o644, Content: []byte("read me"), Mtime: oldMtime},
	}
}

// oldRelease is what the install folder holds before each lie.
func oldRelease() []hostiletest.File {
	return []hostiletest.File{
		{Path: "app.bin", Mode: 0o755, Content: []byte("the old application binary")},
		{Path: "lib/libold.so", Mode: 0o644, Content: []byte("an old library")},
		{Path: "readme.txt", Mode: 0o644, Content: []byte("read me")},
		{Path: "smartclient.ini", Mode: 0o644, Content: []byte("[TCP]\nServer=erp\nPort=1234\n")},
	}
}

// scene is an install folder before a sync and the release the liar
// serves when it tells the truth.
type scene struct {
	old, release func() []hostiletest.File
	// kept: the install keeps the manifest of old, as the client keeps
	// the last one it received.
	kept bool
	// recorded: the client's state records the files of old, as after
	// the sync that installed them (see recordInstall).
	recorded bool
}

// classic is the scene of most lies: the files of the new release are
// small or new, so that each is asked for whole.
var classic = scene{old: oldRelease, release: liarRelease}

// oldInstall fills dir with an installed release: what every lie must
// leave as it is. The .smartclient folder is there, as after any earlier
// sync, but without a state file: a failed sync records its outcome there.
func oldInstall(t *testing.T, dir string, old []hostiletest.File) {
	t.Helper()
	for _, f := range old {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Content, fs.FileMode(f.Mode)); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, oldMtime, oldMtime); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, ".smartclient"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The id every install has, which a failed sync must not change.
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(smartclient.ClientIDFile)), []byte("0123456789abcdef0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// wholeTree describes everything under dir, the client's bookkeeping
// included: type, permissions, size, modification time and content hash
// of every file, type and permissions of every folder.
func wholeTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			m[filepath.ToSlash(rel)] = "folder " + fi.Mode().String()
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			m[filepath.ToSlash(rel)] = fmt.Sprintf("file %v %d %d %x", fi.Mode(), fi.Size(), fi.ModTime().UnixNano(), sha256.Sum256(data))
		default:
			target, _ := os.Readlink(p)
			m[filepath.ToSlash(rel)] = fmt.Sprintf("%v %s", fi.Mode(), target)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// hostileRun runs one sync against l in the classic scene; see
// hostileRunIn.
func hostileRun(t *testing.T, l hostiletest.Lie) (hostiletest.Saw, string) {
	t.Helper()
	return hostileRunIn(t, l, classic)
}

// hostileRunIn runs one sync against l and checks what must hold whatever
// the lie: the error is the one wanted, the install folder is byte for
// byte what it was, and nothing appeared beside it. It returns what the
// liar saw and the install folder.
func hostileRunIn(t *testing.T, l hostiletest.Lie, sc scene) (hostiletest.Saw, string) {
	t.Helper()
	parent := t.TempDir()
	dir := filepath.Join(parent, "install")
	oldInstall(t, dir, sc.old())
	if sc.kept {
		keepManifest(t, dir, sc.old())
	}
	var recorded map[string]state.FileState
	if sc.recorded {
		recorded = recordInstall(t, dir, sc.old())
	}
	before := wholeTree(t, dir)
	release := sc.release()
	addr, wait := hostiletest.Serve(t, l, release)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := smartclient.Sync(ctx, smartclient.Options{AllowUnsigned: true, Dir: dir, Server: addr, OS: "linux", Yes: true, Timeout: 5 * time.Second})
	saw := wait()
	if saw.ServerErr != nil {
		t.Errorf("hostile server: %v", saw.ServerErr)
	}
	switch {
	case l.Want == nil && err != nil:
		t.Errorf("sync failed: %v", err)
	case l.Want != nil && !errors.Is(err, l.Want) && (l.OrWant == nil || !errors.Is(err, l.OrWant)):
		t.Errorf("got %v; want %v", err, l.Want)
	}
	for _, s := range l.WantMsg {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("error %v does not say %s", err, s)
		}
	}
	if l.Want != nil {
		after := wholeTree(t, dir)
		all := maps.Clone(before)
		maps.Copy(all, after)
		for _, k := range slices.Sorted(maps.Keys(all)) {
			// Files received whole and verified before the lie are kept
			// aside for the next sync, which checks them again against
			// its own manifest (TestResetMidTransferLeavesInstallUnchanged); they are not in
			// the install.
			if k == ".smartclient/resume" || strings.HasPrefix(k, ".smartclient/resume/") {
				continue
			}
			// So is the chunk list of a file received and verified
			// before the lie, a cache for the next delta; but only
			// the true list of a file of the release.
			if k == ".smartclient/chunks" || strings.HasPrefix(k, ".smartclient/chunks/") && trueList(t, dir, k, release) {
				continue
			}
			// The kept manifest, when the lie made a wrong one of it,
			// is dropped.
			if k == ".smartclient/manifest.cache" && l.DropsKept && after[k] == "" {
				continue
			}
			// The report of the refused sync, which the lying server
			// did not take, is kept for the next session.
			if k == ".smartclient/"+pending.Name {
				continue
			}
			// A failed sync records its outcome in the state, whose
			// files must stay as they were (below).
			if k == state.File && sc.recorded {
				continue
			}
			if before[k] != after[k] {
				t.Errorf("install changed: %s: was %q, is %q", k, before[k], after[k])
			}
		}
	}
	if l.Want != nil && sc.recorded {
		st, err := state.Read(dir)
		if err == nil {
			err = st.LoadFiles()
		}
		if err != nil || !maps.Equal(st.Files, recorded) {
			t.Errorf("the state's files after the lie: %v, %v; want %v", st.Files, err, recorded)
		}
	}
	entries, rerr := os.ReadDir(parent)
	if rerr != nil || len(entries) != 1 || entries[0].Name() != "install" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("beside the install folder: %v, %v; want only install", names, rerr)
	}
	return saw, dir
}

// trueList reports whether the file k of dir, under .smartclient/chunks,
// is named for a file of the release and holds its chunk list, cut with
// the bits of its name.
func trueList(t *testing.T, dir, k string, release []hostiletest.File) bool {
	t.Helper()
	hash, bits, ok := strings.Cut(path.Base(k), "-")
	b, err := strconv.ParseUint(bits, 10, 8)
	if !ok || err != nil {
		return false
	}
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(k)))
	if err != nil {
		return false
	}
	for _, f := range release {
		if fmt.Sprintf("%x", blake3.Sum256(f.Content)) == hash {
			return bytes.Equal(data, cdc.AppendList(nil, uint8(b), hostiletest.CutChunks(f.Content, uint8(b))))
		}
	}
	return false
}

func moded(mode fs.FileMode) syncproto.ManifestEntry {
	e := hostiletest.Entry("bin/special")
	e.Mode = uint32(mode)
	return e
}

func TestHostileServerHonestControl(t *testing.T) {
	// The harness itself: the liar telling the truth installs the
	// release, so every refusal below is for the lie, not the harness.
	saw, dir := hostileRun(t, hostiletest.Lie{Name: "honest"})
	if !slices.Equal(saw.Asked, []uint32{0, 1, 2}) || saw.Report == nil || saw.Report.Outcome != syncproto.OutcomeUpdated {
		t.Fatalf("asked %v, report %+v; want the three changed files and an update", saw.Asked, saw.Report)
	}
	for _, f := range liarRelease() {
		if got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Path))); err != nil || !bytes.Equal(got, f.Content) {
			t.Errorf("%s: %.30q, %v; want the release's content", f.Path, got, err)
		}
	}
}

// TestHostileManifestRefusedBeforeAnyDownload: every manifest lie is
// refused with ErrBadManifest naming the entry and the reason, before the
// client requests a single file.
func TestHostileManifestRefusedBeforeAnyDownload(t *testing.T) {
	var lies []hostiletest.Lie
	for _, tc := range []struct{ name, path, why string }{
		{"absolute", "/etc/passwd", "absolute"},
		{"parent first", "../outside.txt", `".."`},
		{"parent inside", "lib/../../outside.txt", `".."`},
		{"drive letter", "C:/Windows/evil.dll", "drive letter"},
		{"drive-relative", "c:evil.dll", "drive letter"},
		{"UNC", `\\server\share\evil.dll`, "UNC"},
		{"UNC with slashes", "//server/share/evil.dll", "UNC"},
		{"long-path prefix", `\\?\C:\evil.dll`, "UNC"},
		{"device namespace", `\\.\PhysicalDrive0`, "UNC"},
		{"backslash", `lib\evil.dll`, "backslash"},
		{"backslash climbing out on Windows", `lib\..\..\evil.dll`, "backslash"},
		{"empty part", "lib//evil.dll", "empty part"},
		{"dot part", "lib/./evil.dll", `"."`},
		{"leading dot part", "./evil.dll", `"."`},
		{"trailing slash", "lib/", "empty part"},
		{"dot", ".", `"."`},
		{"empty", "", "empty path"},
		{"CON", "CON", "device CON"},
		{"NUL with extension", "NUL.txt", "device NUL"},
		{"com1 in a folder", "lib/com1.dll", "device COM1"},
		{"COM0", "com0", "device COM0"},
		{"LPT9", "Lpt9.log", "device LPT9"},
		{"PRN", "docs/prn", "device PRN"},
		{"AUX, two extensions", "aux.tar.gz", "device AUX"},
		{"COM superscript", "COM¹.txt", "device COM¹"},
		{"LPT superscript", "lpt³", "device LPT³"},
		{"device before a space", "NUL .txt", "device NUL"},
		{"CONIN$", "conin$", "device CONIN$"},
		{"trailing dot", "lib/evil.dll.", "dot or space"},
		{"trailing space", "evil.dll ", "dot or space"},
		{"trailing dot on a folder", "lib./x.so", "dot or space"},
		{"only dots", "...", "dot or space"},
		{"less than", "a<b", `'<'`},
		{"greater than", "a>b", `'>'`},
		{"colon (alternate data stream)", "app.bin:evil", `':'`},
		{"double quote", `a"b`, `'"'`},
		{"pipe", "a|b", `'|'`},
		{"question mark", "a?b", `'?'`},
		{"asterisk", "a*b", `'*'`},
		{"NUL byte", "a\x00b", "control character U+0000"},
		{"control character", "a\x01b", "control character U+0001"},
		{"newline", "a\nb", "control character U+000A"},
		{"unit separator", "a\x1fb", "control character U+001F"},
		{"DEL", "a\x7fb", "control character U+007F"},
		{"name over 255 bytes", "lib/" + strings.Repeat("a", 256), "limit 255"},
		{"UTF-8 name over 255 bytes", strings.Repeat("é", 128), "limit 255"},
		{"client state", ".smartclient/state.bin", "bookkeeping"},
		{"client journal, other case", ".SmartClient/journal.json", "bookkeeping"},
		{"client folder with a long s", ".ſmartclient/state.bin", "bookkeeping"},
		{"client folder behind an invisible character", ".smart\u200cclient/state.bin", "invisible"},
		{"client folder by its 8.3 name", "SMARTC~1/state.bin", "8.3"},
		{"backup folder", "bkp_remote.003/app.bin", "bookkeeping"},
		{"backup folder, other case", "BKP_REMOTE.001/x", "bookkeeping"},
		{"another file by its 8.3 name", "lib/LIBNEW~1.SO", "8.3"},
	} {
		lies = append(lies, hostiletest.Lie{Name: "path: " + tc.name, Entries: hostiletest.Bad(hostiletest.Entry(tc.path)), Want: smartclient.ErrBadManifest,
			WantMsg: []string{fmt.Sprintf("entry 4 %q", tc.path), tc.why}})
	}
	lies = append(lies,
		hostiletest.Lie{Name: "duplicate", Entries: hostiletest.Bad(hostiletest.Entry("app.bin")), Want: smartclient.ErrBadManifest,
			WantMsg: []string{`entries 0 and 4 are both "app.bin"`}},
		hostiletest.Lie{Name: "case-fold duplicate", Entries: hostiletest.Bad(hostiletest.Entry("App.BIN")), Want: smartclient.ErrBadManifest,
			WantMsg: []string{`entries 0 "app.bin" and 4 "App.BIN" are one file`}},
		hostiletest.Lie{Name: "case-fold duplicate ToLower misses (final sigma)", Entries: hostiletest.Bad(hostiletest.Entry("λόγος.txt"), hostiletest.Entry("ΛΌΓΟΣ.txt")), Want: smartclient.ErrBadManifest,
			WantMsg: []string{`"λόγος.txt" and 5 "ΛΌΓΟΣ.txt" are one file`}},
		hostiletest.Lie{Name: "NFC and NFD duplicate", Entries: hostiletest.Bad(hostiletest.Entry("café.txt"), hostiletest.Entry("cafe\u0301.txt")), Want: smartclient.ErrBadManifest,
			WantMsg: []string{fmt.Sprintf("%q and 5 %q are one file", "café.txt", "cafe\u0301.txt")}},
		hostiletest.Lie{Name: "NFC upper and NFD lower duplicate", Entries: hostiletest.Bad(hostiletest.Entry("CAFÉ.txt"), hostiletest.Entry("cafe\u0301.txt")), Want: smartclient.ErrBadManifest,
			WantMsg: []string{"are one file"}},
		hostiletest.Lie{Name: "file below a file", Entries: hostiletest.Bad(hostiletest.Entry("app.bin/evil")), Want: smartclient.ErrBadManifest,
			WantMsg: []string{`entry 0 "app.bin" is a file, and entry 4 "app.bin/evil"`}},
		hostiletest.Lie{Name: "file above a file, other case", Entries: hostiletest.Bad(hostiletest.Entry("LIB")), Want: smartclient.ErrBadManifest,
			WantMsg: []string{`entry 4 "LIB" is a file, and entry 1 "lib/libnew.so"`}},
		hostiletest.Lie{Name: "file above a file, a neighbour between them", Entries: hostiletest.Bad(hostiletest.Entry("lib"), hostiletest.Entry("lib-x")), Want: smartclient.ErrBadManifest,
			WantMsg: []string{`entry 4 "lib" is a file`}},
	)
	for _, tc := range []struct {
		name string
		mode fs.FileMode
		why  string
	}{
		{"folder", fs.ModeDir | 0o755, "a folder"},
		{"symbolic link", fs.ModeSymlink | 0o777, "a symbolic link"},
		{"named pipe", fs.ModeNamedPipe | 0o644, "a named pipe"},
		{"socket", fs.ModeSocket | 0o644, "a socket"},
		{"device", fs.ModeDevice | 0o644, "a device"},
		{"character device", fs.ModeDevice | fs.ModeCharDevice | 0o644, "a character device"},
		{"irregular", fs.ModeIrregular | 0o644, "an irregular file"},
		{"setuid", fs.ModeSetuid | 0o755, "setuid"},
		{"setgid", fs.ModeSetgid | 0o755, "setgid"},
		{"Unix setuid bit", 0o4755, "setuid"},
		{"sticky", fs.ModeSticky | 0o755, "other than the permissions"},
		{"raw st_mode", 0o100644, "other than the permissions"},
	} {
		lies = append(lies, hostiletest.Lie{Name: "mode: " + tc.name, Entries: hostiletest.Bad(moded(tc.mode)), Want: smartclient.ErrBadManifest,
			WantMsg: []string{`entry 4 "bin/special"`, tc.why}})
	}
	huge := hostiletest.Entry("huge.bin")
	huge.Size = 64<<30 + 1
	maxed := hostiletest.Entry("maxed.bin")
	maxed.Size = 1<<64 - 1
	past := hostiletest.Entry("past.bin")
	past.MtimeNs = -1
	lies = append(lies,
		hostiletest.Lie{Name: "size over the cap", Entries: hostiletest.Bad(huge), Want: smartclient.ErrBadManifest,
			WantMsg: []string{`entry 4 "huge.bin"`, "declares 68719476737 bytes, over the limit"}},
		hostiletest.Lie{Name: "size of 2^64-1, that would overflow the total", Entries: hostiletest.Bad(maxed), Want: smartclient.ErrBadManifest,
			WantMsg: []string{`entry 4 "maxed.bin"`, "over the limit"}},
		hostiletest.Lie{Name: "mtime before 1970", Entries: hostiletest.Bad(past), Want: smartclient.ErrBadManifest,
			WantMsg: []string{`entry 4 "past.bin"`, "before 1970"}},
		hostiletest.Lie{Name: "total bytes more than the entries", Header: func(h *syncproto.ManifestHeader) { h.TotalBytes++ },
			Want: smartclient.ErrBadManifest, WantMsg: []string{"header says"}},
		hostiletest.Lie{Name: "total bytes less than the entries", Header: func(h *syncproto.ManifestHeader) { h.TotalBytes = 1 },
			Want: smartclient.ErrBadManifest, WantMsg: []string{"header says 1"}},
		// A count the entries do not reach, then silence: the
		// connection was lost, whatever the server meant.
		hostiletest.Lie{Name: "count larger than the entries sent, then hang up", Header: func(h *syncproto.ManifestHeader) { h.Count += 2 },
			HangUp: true, Want: io.EOF, WantMsg: []string{"reading manifest entry 4 of 6"}},
		hostiletest.Lie{Name: "count over the protocol's limit", Header: func(h *syncproto.ManifestHeader) { h.Count = syncproto.MaxFiles + 1 },
			Want: syncproto.ErrMalformed, WantMsg: []string{"limit 1048576"}},
		hostiletest.Lie{Name: "path not UTF-8", Entries: hostiletest.Bad(hostiletest.Entry("a\xffb")), Want: syncproto.ErrMalformed, WantMsg: []string{"not valid UTF-8"}},
		hostiletest.Lie{Name: "another message among the entries", Header: func(h *syncproto.ManifestHeader) { h.Count++ },
			Among: syncproto.FileStart{Index: 0, Size: 1}, Want: syncproto.ErrUnexpected, WantMsg: []string{"expected ManifestEntry, got FileStart"}},
	)

	for _, l := range lies {
		t.Run(l.Name, func(t *testing.T) {
			saw, _ := hostileRun(t, l)
			if len(saw.Asked) > 0 || saw.AskedEnd {
				t.Errorf("the client requested %v after a bad manifest", saw.Asked)
			}
		})
	}
}

// TestHostileServerDeclaresMoreThanFreeSpace: a manifest of files each
// under the size cap that together do not fit on the disk is refused
// before a file is requested.
func TestHostileServerDeclaresMoreThanFreeSpace(t *testing.T) {
	const each = 60 << 30
	have, err := smartclient.FreeSpace(t.TempDir())
	if err != nil {
		t.Skipf("free space unknown here: %v", err)
	}
	n := int(have/each) + 1
	if n > 64 {
		t.Skipf("%d bytes free: a manifest that does not fit would need %d files of 60 GiB", have, n)
	}
	l := hostiletest.Lie{
		Entries: func(honest []syncproto.ManifestEntry) []syncproto.ManifestEntry {
			for i := range n {
				e := hostiletest.Entry(fmt.Sprintf("data/part%03d.bin", i))
				e.Size = each
				honest = append(honest, e)
			}
			return honest
		},
		// Preflight finds it; checkFreeSpace says the same with
		// ErrNoSpace, whichever of the two Sync ends up calling.
		Want: smartclient.ErrPreflight, OrWant: smartclient.ErrNoSpace,
		WantMsg: []string{"not enough free space", "need "},
	}
	saw, _ := hostileRun(t, l)
	// An empty RequestEnd asks for nothing: it goes before the report
	// of the failure (see syncproto's "Reports").
	if len(saw.Asked) > 0 {
		t.Errorf("the client requested %v of a release that does not fit", saw.Asked)
	}
}

// zstdBomb returns one zstd frame that decodes to n zero bytes. declared
// says whether the frame header states that size; window, when not 0,
// keeps the frame's window that small, so that a decoder cannot refuse
// it for its window and must count what it decodes.
func zstdBomb(t testing.TB, n int, declared bool, window int) []byte {
	t.Helper()
	zeros := make([]byte, n)
	var opts []zstd.EOption
	if window != 0 {
		opts = append(opts, zstd.WithWindowSize(window))
	}
	if declared {
		enc, err := zstd.NewWriter(nil, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer enc.Close()
		return enc.EncodeAll(zeros, nil)
	}
	var b bytes.Buffer
	enc, err := zstd.NewWriter(&b, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enc.Write(zeros); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	var h zstd.Header
	if err := h.Decode(b.Bytes()); err != nil || h.HasFCS {
		t.Fatalf("streamed zstd frame: header %+v, %v; want no content size", h, err)
	}
	return b.Bytes()
}

// streamLies are the lies told while files stream. Each is told after
// the client requested all three files of the release.
func streamLies(t testing.TB) []hostiletest.Lie {
	files := liarRelease()
	app, lib, last := files[0].Content, files[1].Content, files[2].Content
	bomb := zstdBomb(t, 64<<20, true, 0)
	bombSmallWindow := zstdBomb(t, 64<<20, true, 128<<10)
	bombNoSize := zstdBomb(t, 64<<20, false, 128<<10)
	var frames []byte
	small := zstdBomb(t, syncproto.MaxChunk, true, 0)
	for range 256 {
		frames = append(frames, small...) // 64 MiB in frames of 256 KiB
	}
	if len(frames) > syncproto.MaxChunk {
		t.Fatalf("the multi-frame bomb is %d bytes, over a chunk", len(frames))
	}
	return []hostiletest.Lie{
		{Name: "one chunk longer than the file", Want: smartclient.ErrVerify, WantMsg: []string{"app.bin", "more bytes than the 26 declared"},
			Send: func(s *hostiletest.Stream) {
				s.Msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.Data(append(slices.Clip(app), "and more"...))
				s.Msg(syncproto.FileEnd{Hash: blake3.Sum256(app)})
			}},
		{Name: "an extra chunk after the declared bytes", Want: syncproto.ErrUnexpected, WantMsg: []string{"app.bin", "expected FileEnd, got FileData"},
			Send: func(s *hostiletest.Stream) {
				s.Msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.Data(app)
				s.Data([]byte("extra"))
				s.Msg(syncproto.FileEnd{Hash: blake3.Sum256(app)})
			}},
		{Name: "fewer bytes, then FileEnd", Want: syncproto.ErrUnexpected, WantMsg: []string{"lib/libnew.so", "expected FileData or FileCopy, got FileEnd"},
			Send: func(s *hostiletest.Stream) {
				s.File(0)
				s.Msg(syncproto.FileStart{Index: 1, Size: uint64(len(lib))})
				s.Data(lib[:len(lib)-1])
				s.Msg(syncproto.FileEnd{Hash: blake3.Sum256(lib)})
			}},
		{Name: "hash mismatch on the last of three files", Want: smartclient.ErrVerify, WantMsg: []string{"data/last.dat", "BLAKE3"},
			Send: func(s *hostiletest.Stream) {
				s.File(0)
				s.File(1)
				forged := bytes.ToUpper(last) // same size, other content
				s.Msg(syncproto.FileStart{Index: 2, Size: uint64(len(forged))})
				s.Data(forged)
				s.Msg(syncproto.FileEnd{Hash: blake3.Sum256(last)}) // and a lie about it
			}},
		{Name: "right content, FileEnd with another hash", Want: smartclient.ErrVerify, WantMsg: []string{"data/last.dat"},
			Send: func(s *hostiletest.Stream) {
				s.File(0)
				s.File(1)
				s.Msg(syncproto.FileStart{Index: 2, Size: uint64(len(last))})
				s.Data(last)
				s.Msg(syncproto.FileEnd{Hash: blake3.Sum256([]byte("other"))})
			}},
		{Name: "zstd bomb: 64 MiB declared as RawLen 1000", Want: syncproto.ErrMalformed, WantMsg: []string{"lib/libnew.so", "decoding chunk"},
			Send: func(s *hostiletest.Stream) {
				s.File(0)
				s.Msg(syncproto.FileStart{Index: 1, Size: uint64(len(lib))})
				s.Msg(syncproto.FileData{Encoding: syncproto.EncodingZstd, RawLen: 1000, Data: bomb})
			}},
		{Name: "zstd bomb in a small window", Want: syncproto.ErrMalformed, WantMsg: []string{"lib/libnew.so", "decoding chunk"},
			Send: func(s *hostiletest.Stream) {
				s.File(0)
				s.Msg(syncproto.FileStart{Index: 1, Size: uint64(len(lib))})
				s.Msg(syncproto.FileData{Encoding: syncproto.EncodingZstd, RawLen: 1000, Data: bombSmallWindow})
			}},
		{Name: "zstd bomb in a small window, without a content size", Want: syncproto.ErrMalformed, WantMsg: []string{"lib/libnew.so", "decoding chunk"},
			Send: func(s *hostiletest.Stream) {
				s.File(0)
				s.Msg(syncproto.FileStart{Index: 1, Size: uint64(len(lib))})
				s.Msg(syncproto.FileData{Encoding: syncproto.EncodingZstd, RawLen: 1000, Data: bombNoSize})
			}},
		{Name: "zstd bomb of 256 frames in one chunk", Want: syncproto.ErrMalformed, WantMsg: []string{"lib/libnew.so", "decoding chunk"},
			Send: func(s *hostiletest.Stream) {
				s.File(0)
				s.Msg(syncproto.FileStart{Index: 1, Size: uint64(len(lib))})
				s.Msg(syncproto.FileData{Encoding: syncproto.EncodingZstd, RawLen: 1000, Data: frames})
			}},
		{Name: "zstd chunk decoding to less than its RawLen", Want: syncproto.ErrMalformed, WantMsg: []string{"app.bin", "decodes to 5"},
			Send: func(s *hostiletest.Stream) {
				s.Msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.Msg(syncproto.FileData{Encoding: syncproto.EncodingZstd, RawLen: uint32(len(app)), Data: zstdBomb(t, 5, true, 0)})
			}},
		{Name: "zstd chunk of garbage", Want: syncproto.ErrMalformed, WantMsg: []string{"app.bin"},
			Send: func(s *hostiletest.Stream) {
				s.Msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.Msg(syncproto.FileData{Encoding: syncproto.EncodingZstd, RawLen: uint32(len(app)), Data: []byte("not zstd at all, not at all")})
			}},
		{Name: "FileData frame of zero length", Want: syncproto.ErrMalformed, WantMsg: []string{"app.bin", "decoding FileData"},
			Send: func(s *hostiletest.Stream) {
				s.Msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.Raw(hostiletest.FrameHeader(syncproto.MsgFileData, 0))
			}},
		{Name: "FileData of zero raw bytes", Want: syncproto.ErrMalformed, WantMsg: []string{"app.bin", "chunk of 0 raw bytes"},
			Send: func(s *hostiletest.Stream) {
				s.Msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.Raw(append(hostiletest.FrameHeader(syncproto.MsgFileData, 5), syncproto.EncodingRaw, 0, 0, 0, 0))
			}},
		{Name: "raw FileData whose RawLen is not its length", Want: syncproto.ErrMalformed, WantMsg: []string{"app.bin", "declares 9 bytes, carries 3"},
			Send: func(s *hostiletest.Stream) {
				s.Msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.Raw(append(hostiletest.FrameHeader(syncproto.MsgFileData, 8), syncproto.EncodingRaw, 0, 0, 0, 9, 'a', 'b', 'c'))
			}},
		{Name: "frame length 0xFFFFFFFF", Want: syncproto.ErrTooLarge, WantMsg: []string{"app.bin", "4294967295 bytes"},
			Send: func(s *hostiletest.Stream) {
				s.Msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.Raw(hostiletest.FrameHeader(syncproto.MsgFileData, 0xFFFFFFFF))
			}},
		{Name: "frame length negative as an int32", Want: syncproto.ErrTooLarge, WantMsg: []string{"app.bin", "2147483648 bytes"},
			Send: func(s *hostiletest.Stream) {
				s.Msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.Raw(hostiletest.FrameHeader(syncproto.MsgFileData, 0x80000000))
			}},
		{Name: "frame just over the FileData limit", Want: syncproto.ErrTooLarge, WantMsg: []string{"app.bin"},
			Send: func(s *hostiletest.Stream) {
				limit, _ := syncproto.MaxPayload(syncproto.MsgFileData)
				s.Msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.Raw(hostiletest.FrameHeader(syncproto.MsgFileData, uint32(limit+1)))
			}},
		{Name: "unknown message type", Want: syncproto.ErrUnknownType, WantMsg: []string{"app.bin", "type 200"},
			Send: func(s *hostiletest.Stream) {
				s.Msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.Raw(hostiletest.FrameHeader(200, 0))
			}},
		{Name: "bad magic", Want: syncproto.ErrBadMagic, WantMsg: []string{"app.bin"},
			Send: func(s *hostiletest.Stream) { s.Raw([]byte("HTTP/1.1 200 OK\r\n\r\n")) }},
		{Name: "another protocol version", Want: syncproto.ErrVersion, WantMsg: []string{"app.bin"},
			Send: func(s *hostiletest.Stream) {
				h := hostiletest.FrameHeader(syncproto.MsgFileStart, 12)
				h[2] = syncproto.Version + 1
				s.Raw(append(h, make([]byte, 12)...))
			}},
		{Name: "a file not asked for", Want: syncproto.ErrUnexpected, WantMsg: []string{"app.bin", "server sent file 3"},
			Send: func(s *hostiletest.Stream) { s.File(3) }},
		{Name: "a file asked for, before its turn", Want: syncproto.ErrUnexpected, WantMsg: []string{"app.bin", "server sent file 1"},
			Send: func(s *hostiletest.Stream) { s.File(1) }},
		{Name: "an index outside the manifest", Want: syncproto.ErrUnexpected, WantMsg: []string{"app.bin", "server sent file 99"},
			Send: func(s *hostiletest.Stream) {
				s.Msg(syncproto.FileStart{Index: 99, Size: 5})
				s.Data([]byte("evil!"))
				s.Msg(syncproto.FileEnd{Hash: blake3.Sum256([]byte("evil!"))})
			}},
		{Name: "the files in another order", Want: syncproto.ErrUnexpected, WantMsg: []string{"lib/libnew.so", "server sent file 2"},
			Send: func(s *hostiletest.Stream) { s.File(0); s.File(2); s.File(1) }},
		{Name: "the right file with another size", Want: syncproto.ErrUnexpected, WantMsg: []string{"app.bin", "of 27 bytes, expected file 0 of 26 bytes"},
			Send: func(s *hostiletest.Stream) {
				s.Msg(syncproto.FileStart{Index: 0, Size: uint64(len(app) + 1)})
				s.Data(append(slices.Clip(app), '!'))
			}},
		{Name: "another message instead of a file", Want: syncproto.ErrUnexpected, WantMsg: []string{"app.bin", "expected FileStart, got Welcome"},
			Send: func(s *hostiletest.Stream) {
				s.Msg(syncproto.Welcome{ServerBuild: hostiletest.Build, Compatible: true, UpdatesEnabled: true})
			}},
	}
}

// TestHostileStreamAbortsTheWholeUpdate: a lie in any file, even the last
// of three, aborts the whole update with its own error; nothing of the
// release is applied and nothing staged is left.
func TestHostileStreamAbortsTheWholeUpdate(t *testing.T) {
	for _, l := range streamLies(t) {
		t.Run(l.Name, func(t *testing.T) {
			saw, _ := hostileRun(t, l)
			if !saw.AskedEnd || !slices.Equal(saw.Asked, []uint32{0, 1, 2}) {
				t.Errorf("the client asked for %v (end %v); want the lie told after it asked for 0 1 2", saw.Asked, saw.AskedEnd)
			}
			if saw.Report == nil || saw.Report.Outcome != syncproto.OutcomeFailed || saw.Report.Message == "" {
				t.Errorf("report %+v; want the failure and its reason told to the server", saw.Report)
			}
		})
	}
}

// TestHostileZstdBombIsBounded: a chunk that decompresses to 64 MiB costs
// the client a small, bounded amount of memory, not the 64 MiB.
func TestHostileZstdBombIsBounded(t *testing.T) {
	var bombs []hostiletest.Lie
	for _, l := range streamLies(t) {
		if strings.HasPrefix(l.Name, "zstd bomb") {
			bombs = append(bombs, l)
		}
	}
	if len(bombs) != 4 {
		t.Fatalf("%d bomb cases", len(bombs))
	}
	for _, l := range bombs {
		t.Run(l.Name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			hostileRun(t, l)
			runtime.ReadMemStats(&after)
			// Everything the process allocated meanwhile, the server's
			// side and the test's included, stays well under the bomb.
			if got := after.TotalAlloc - before.TotalAlloc; got > 24<<20 {
				t.Errorf("allocated %d MiB during the sync; the decoder is not bounded", got>>20)
			}
		})
	}
}

// Deltas. The client asks for a file of 1 KiB to under 1 MiB whose path
// holds a regular file of at least 1 KiB as a block delta; for a larger
// one, when its path holds a regular file of at least 4 KiB, as a delta
// from that file's chunks, with the new file's chunk list; a new file of
// 1 MiB or more it asks for with an empty base and the list. The delta
// scene has one file of each kind.

// deltaOldRelease is the install before each delta lie: older versions of
// two files large enough to be bases.
func deltaOldRelease() []hostiletest.File {
	rng := rand.NewChaCha8([32]byte{17})
	app := make([]byte, 64<<10)
	rng.Read(app)
	pack := make([]byte, 3<<19)
	rng.Read(pack)
	return []hostiletest.File{
		{Path: "app.bin", Mode: 0o755, Content: app},
		{Path: "data/pack.pak", Mode: 0o644, Content: pack},
		{Path: "readme.txt", Mode: 0o644, Content: []byte("read me")},
		{Path: "smartclient.ini", Mode: 0o644, Content: []byte("[TCP]\nServer=erp\nPort=1234\n")},
	}
}

// deltaRelease is the release of the delta scene, asked for as
//
//	0 app.bin        64 KiB, 4 KiB of it new: a block delta
//	1 data/pack.pak  1.5 MiB with 4 KiB inserted: a delta with its list
//	2 data/new.pak   1 MiB, new: an empty base with the list
//	3 data/last.dat  small and new: whole
//
// and readme.txt, which the install has as it is.
func deltaRelease() []hostiletest.File {
	old := deltaOldRelease()
	rng := rand.NewChaCha8([32]byte{18})
	patch := make([]byte, 4096)
	rng.Read(patch)
	app := slices.Clone(old[0].Content)
	copy(app[20<<10:], patch)
	pack := slices.Concat(old[1].Content[:700<<10], patch, old[1].Content[700<<10:])
	fresh := make([]byte, 1<<20)
	rng.Read(fresh)
	return []hostiletest.File{
		{Path: "app.bin", Mode: 0o755, Content: app},
		{Path: "data/pack.pak", Mode: 0o644, Content: pack},
		{Path: "data/new.pak", Mode: 0o644, Content: fresh},
		{Path: "data/last.dat", Mode: 0o644, Content: []byte("the last file of the release")},
		{Path: "readme.txt", Mode: 0o644, Content: []byte("read me"), Mtime: oldMtime},
	}
}

var deltaScene = scene{old: deltaOldRelease, release: deltaRelease}

// checkDeltaRequests checks that the client asked for the delta scene's
// files as the scene means: 0 as a block delta from the installed
// version, 1 as a delta from its chunks, 1 and 2 with their lists, 3
// whole.
func checkDeltaRequests(t *testing.T, saw hostiletest.Saw) {
	t.Helper()
	if !saw.AskedEnd || !slices.Equal(saw.Asked, []uint32{0, 1, 2, 3}) {
		t.Fatalf("the client asked for %v (end %v); want 0 1 2 3", saw.Asked, saw.AskedEnd)
	}
	old := deltaOldRelease()
	if b := saw.Blocks[0]; b == nil {
		t.Errorf("app.bin was not asked for as a block delta")
	} else {
		base := old[0].Content
		bs := cdc.BlockSize(int64(len(base)))
		var sums []syncproto.BlockSum
		for k := 0; k < len(base); k += bs {
			p := base[k:min(k+bs, len(base))]
			sums = append(sums, syncproto.BlockSum{Weak: cdc.WeakSum(p).Weak(), Strong: cdc.StrongSum(p)})
		}
		if int(b.BlockSize) != bs || b.BaseSize != uint64(len(base)) || !slices.Equal(b.Sums, sums) {
			t.Errorf("app.bin asked for with blocks of %d, a base of %d bytes and %d sums; want %d, %d and the %d sums of the installed version",
				b.BlockSize, b.BaseSize, len(b.Sums), bs, len(base), len(sums))
		}
	}
	for _, want := range []struct {
		i        int
		base     []byte // nil: an empty base
		wantList bool
	}{
		{1, old[1].Content, true},
		{2, nil, true},
	} {
		i := want.i
		d := saw.Deltas[uint32(i)]
		if d == nil {
			t.Fatalf("file %d was not asked for as a delta", i)
		}
		// The chunk size suits the base, or the new file when there is
		// none.
		bits := cdc.BitsFor(int64(len(deltaRelease()[i].Content)))
		var base []syncproto.ChunkRef
		if want.base != nil {
			bits = cdc.BitsFor(int64(len(want.base)))
			base = hostiletest.Refs(hostiletest.CutChunks(want.base, bits))
		}
		if d.Bits != bits || (d.Flags&syncproto.DeltaWantList != 0) != want.wantList || !slices.Equal(d.Chunks, base) {
			t.Errorf("file %d asked for with bits %d, flags %#x, %d chunks; want bits %d, list %v, the %d chunks of the installed version",
				i, d.Bits, d.Flags, len(d.Chunks), bits, want.wantList, len(base))
		}
	}
	if saw.Deltas[3] != nil || saw.Blocks[3] != nil {
		t.Errorf("data/last.dat asked for as a delta")
	}
}

func TestHostileServerHonestDeltaControl(t *testing.T) {
	// The delta harness itself: the liar telling the truth installs the
	// release from copies of the installed versions and data, and keeps
	// the lists the client asked for.
	saw, dir := hostileRunIn(t, hostiletest.Lie{Name: "honest"}, deltaScene)
	checkDeltaRequests(t, saw)
	if saw.Report == nil || saw.Report.Outcome != syncproto.OutcomeUpdated {
		t.Fatalf("report %+v; want an update", saw.Report)
	}
	release := deltaRelease()
	if least := int64(len(release[0].Content)+len(release[1].Content)) - 64<<10; saw.Copied < least {
		t.Errorf("%d bytes sent as copies; want at least %d", saw.Copied, least)
	}
	for _, f := range release {
		if got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Path))); err != nil || !bytes.Equal(got, f.Content) {
			t.Errorf("%s: %d bytes, %v; want the release's content", f.Path, len(got), err)
		}
	}
	lists, err := os.ReadDir(filepath.Join(dir, ".smartclient", "chunks"))
	if err != nil || len(lists) != 2 {
		t.Fatalf("kept lists %v, %v; want those of data/pack.pak and data/new.pak", lists, err)
	}
	for _, e := range lists {
		if !trueList(t, dir, ".smartclient/chunks/"+e.Name(), release[1:3]) {
			t.Errorf("kept list %s is not the true list of a large file of the release", e.Name())
		}
	}
}

// deltaStreamLies are the lies about deltas, told in the delta scene
// after the client asked for its four files.
func deltaStreamLies() []hostiletest.Lie {
	old, rel := deltaOldRelease(), deltaRelease()
	app, pack, fresh, last := rel[0].Content, rel[1].Content, rel[2].Content, rel[3].Content
	baseApp, basePack := int64(len(old[0].Content)), int64(len(old[1].Content))
	const appBits, packBits = 10, 13 // cdc.BitsFor of the bases
	_, _, packMax := cdc.Sizes(packBits)
	start := func(s *hostiletest.Stream, i int) {
		s.Msg(syncproto.FileStart{Index: uint32(i), Size: uint64(len(rel[i].Content))})
	}
	packList := hostiletest.Refs(hostiletest.CutChunks(pack, packBits))
	// packStart starts data/pack.pak after app.bin, honestly.
	packStart := func(s *hostiletest.Stream) {
		s.Delta(0)
		start(s, 1)
	}
	copyLie := func(name string, cp syncproto.FileCopy, msg string) hostiletest.Lie {
		return hostiletest.Lie{Name: name, Want: smartclient.ErrVerify, WantMsg: []string{"app.bin", msg},
			Send: func(s *hostiletest.Stream) {
				start(s, 0)
				s.Msg(cp)
				s.Data(app[min(int(cp.Len), len(app)):])
				s.Msg(syncproto.FileEnd{Hash: blake3.Sum256(app)})
			}}
	}
	return []hostiletest.Lie{
		{Name: "FileCopy for a file asked for whole", Want: syncproto.ErrUnexpected,
			WantMsg: []string{"data/last.dat", "a copy for a file asked for whole"},
			Send: func(s *hostiletest.Stream) {
				s.Delta(0)
				s.Delta(1)
				s.Delta(2)
				start(s, 3)
				s.Msg(syncproto.FileCopy{Off: 0, Len: uint32(len(last))})
				s.Msg(syncproto.FileEnd{Hash: blake3.Sum256(last)})
			}},
		{Name: "FileCopy for a file asked for with an empty base", Want: syncproto.ErrUnexpected,
			WantMsg: []string{"data/new.pak", "a copy for a file asked for whole"},
			Send: func(s *hostiletest.Stream) {
				s.Delta(0)
				s.Delta(1)
				start(s, 2)
				s.List(12, hostiletest.Refs(hostiletest.CutChunks(fresh, 12)), syncproto.MaxChunkRefs, false)
				s.Msg(syncproto.FileCopy{Off: 0, Len: 4096})
			}},
		copyLie("FileCopy running one byte past the end of the base", syncproto.FileCopy{Off: uint64(baseApp) - 10, Len: 11},
			fmt.Sprintf("copy of 11 bytes at %d from an installed version of %d", baseApp-10, baseApp)),
		copyLie("FileCopy at the end of the base", syncproto.FileCopy{Off: uint64(baseApp), Len: 1},
			fmt.Sprintf("copy of 1 bytes at %d from an installed version of %d", baseApp, baseApp)),
		copyLie("FileCopy offset past the end of the base", syncproto.FileCopy{Off: uint64(baseApp) + 4096, Len: 1},
			fmt.Sprintf("at %d from an installed version", baseApp+4096)),
		copyLie("FileCopy whose end overflows 64 bits", syncproto.FileCopy{Off: 1<<64 - 16, Len: 32},
			"copy of 32 bytes at 18446744073709551600"),
		copyLie("FileCopy offset negative as an int64", syncproto.FileCopy{Off: 1 << 63, Len: 1},
			"at 9223372036854775808"),
		copyLie("FileCopy longer than the base", syncproto.FileCopy{Off: 0, Len: 1<<32 - 1},
			"copy of 4294967295 bytes at 0"),
		{Name: "copies adding up to more than the file", Want: smartclient.ErrVerify,
			WantMsg: []string{"app.bin", fmt.Sprintf("more bytes than the %d declared", len(app))},
			Send: func(s *hostiletest.Stream) {
				start(s, 0)
				s.Msg(syncproto.FileCopy{Off: 0, Len: 40000})
				s.Msg(syncproto.FileCopy{Off: 0, Len: 40000})
				s.Msg(syncproto.FileEnd{Hash: blake3.Sum256(app)})
			}},
		{Name: "a copy after the file's last byte", Want: syncproto.ErrUnexpected,
			WantMsg: []string{"app.bin", "expected FileEnd, got FileCopy"},
			Send: func(s *hostiletest.Stream) {
				start(s, 0)
				s.Data(app)
				s.Msg(syncproto.FileCopy{Off: 0, Len: 1})
				s.Msg(syncproto.FileEnd{Hash: blake3.Sum256(app)})
			}},
		{Name: "copies of the right size, the base's content", Want: smartclient.ErrVerify,
			WantMsg: []string{"app.bin", "BLAKE3"},
			Send: func(s *hostiletest.Stream) {
				start(s, 0)
				s.Msg(syncproto.FileCopy{Off: 0, Len: uint32(baseApp)})
				s.Msg(syncproto.FileEnd{Hash: blake3.Sum256(app)}) // and a lie about it
			}},
		{Name: "copies from the wrong places, with a forged list", Want: smartclient.ErrVerify,
			WantMsg: []string{"data/pack.pak", "BLAKE3"},
			Send: func(s *hostiletest.Stream) {
				packStart(s)
				// The true lengths, other hashes: a list the client must
				// not keep for a file that fails its check.
				forged := slices.Clone(packList)
				for i := range forged {
					forged[i].Hash = [16]byte{byte(i), byte(i >> 8), 0xf0}
				}
				s.List(packBits, forged, syncproto.MaxChunkRefs, false)
				// The base whole, then the inserted bytes: the right
				// size and every byte but the insert from the base.
				s.Msg(syncproto.FileCopy{Off: 0, Len: uint32(basePack)})
				s.Data(pack[700<<10 : 704<<10])
				s.Msg(syncproto.FileEnd{Hash: blake3.Sum256(pack)})
			}},
		{Name: "ChunkList cut with other bits", Want: smartclient.ErrVerify,
			WantMsg: []string{"data/pack.pak", "chunk list cut with 14, asked for 13"},
			Send: func(s *hostiletest.Stream) {
				packStart(s)
				s.List(packBits+1, hostiletest.Refs(hostiletest.CutChunks(pack, packBits+1)), syncproto.MaxChunkRefs, false)
			}},
		{Name: "ChunkList longer than the file", Want: smartclient.ErrVerify,
			WantMsg: []string{"data/pack.pak", "chunk list longer than the file"},
			Send: func(s *hostiletest.Stream) {
				packStart(s)
				// The last chunk one byte longer.
				longer := slices.Clone(packList)
				longer[len(longer)-1].Len++
				s.List(packBits, longer, syncproto.MaxChunkRefs, false)
			}},
		{Name: "ChunkList shorter than the file", Want: smartclient.ErrVerify,
			WantMsg: []string{"data/pack.pak", fmt.Sprintf("chunk list of %d bytes for a file of %d", int64(len(pack))-int64(packList[len(packList)-1].Len), len(pack))},
			Send: func(s *hostiletest.Stream) {
				packStart(s)
				s.List(packBits, packList[:len(packList)-1], syncproto.MaxChunkRefs, false)
			}},
		{Name: "ChunkList of the right length with a chunk over its parameter's maximum", Want: smartclient.ErrVerify,
			WantMsg: []string{"data/pack.pak", fmt.Sprintf("over the %d its parameter allows", packMax)},
			Send: func(s *hostiletest.Stream) {
				packStart(s)
				// The first chunks merged into one just over the
				// maximum: the lengths still add up to the file's.
				var merged syncproto.ChunkRef
				k := 0
				for ; int(merged.Len) <= packMax; k++ {
					merged.Len += packList[k].Len
				}
				s.List(packBits, append([]syncproto.ChunkRef{merged}, packList[k:]...), syncproto.MaxChunkRefs, false)
			}},
		{Name: "ChunkList that never ends", Want: smartclient.ErrVerify,
			WantMsg: []string{"data/pack.pak", "chunk list longer than the file"},
			Send: func(s *hostiletest.Stream) {
				packStart(s)
				// More forever, one chunk of 1 KiB a frame; the liar stops
				// long after the client should have.
				for range 16 * len(pack) >> 10 {
					if s.W.Write(syncproto.ChunkList{Bits: packBits, More: true, Chunks: packList[:1]}) != nil {
						return
					}
				}
			}},
		{Name: "ChunkList that never ends, of empty frames", Want: smartclient.ErrVerify, OrWant: syncproto.ErrUnexpected,
			WantMsg: []string{"data/pack.pak"},
			Send: func(s *hostiletest.Stream) {
				packStart(s)
				// A million frames of 14 bytes, then silence; a client
				// that reads them all then times out.
				for range 1 << 20 {
					if s.W.Write(syncproto.ChunkList{Bits: packBits, More: true}) != nil {
						return
					}
				}
			}},
		{Name: "ChunkList with More, then the file's copies", Want: syncproto.ErrUnexpected,
			WantMsg: []string{"data/pack.pak", "expected ChunkList, got FileCopy"},
			Send: func(s *hostiletest.Stream) {
				packStart(s)
				s.List(packBits, packList, syncproto.MaxChunkRefs, true)
				s.Assemble(pack, packBits, hostiletest.Refs(hostiletest.CutChunks(old[1].Content, packBits)))
			}},
		{Name: "no ChunkList when one was asked for", Want: syncproto.ErrUnexpected,
			WantMsg: []string{"data/pack.pak", "expected ChunkList, got FileData"},
			Send: func(s *hostiletest.Stream) {
				packStart(s)
				s.Data(pack)
			}},
		{Name: "ChunkList for a delta asked for without one", Want: syncproto.ErrUnexpected,
			WantMsg: []string{"app.bin", "expected FileData or FileCopy, got ChunkList"},
			Send: func(s *hostiletest.Stream) {
				start(s, 0)
				s.List(appBits, hostiletest.Refs(hostiletest.CutChunks(app, appBits)), syncproto.MaxChunkRefs, false)
			}},
		{Name: "ChunkList for a file asked for whole", Want: syncproto.ErrUnexpected,
			WantMsg: []string{"data/last.dat", "expected FileData or FileCopy, got ChunkList"},
			Send: func(s *hostiletest.Stream) {
				s.Delta(0)
				s.Delta(1)
				s.Delta(2)
				start(s, 3)
				s.List(cdc.MinBits, hostiletest.Refs(hostiletest.CutChunks(last, cdc.MinBits)), syncproto.MaxChunkRefs, false)
			}},
	}
}

// TestHostileDeltaStreamAbortsTheWholeUpdate: a lie in a delta, or a
// delta's pieces where none were asked for, aborts the whole update with
// its own error; nothing of the release is applied, nothing staged is
// left, and no chunk list but the true one of a verified file is kept.
func TestHostileDeltaStreamAbortsTheWholeUpdate(t *testing.T) {
	for _, l := range deltaStreamLies() {
		t.Run(l.Name, func(t *testing.T) {
			if l.Bug != "" {
				t.Skip("BUG: " + l.Bug)
			}
			saw, _ := hostileRunIn(t, l, deltaScene)
			checkDeltaRequests(t, saw)
			if saw.Report == nil || saw.Report.Outcome != syncproto.OutcomeFailed || saw.Report.Message == "" {
				t.Errorf("report %+v; want the failure and its reason told to the server", saw.Report)
			}
		})
	}
}

// TestBlockMismatchSyncsAgainWithoutBlocks: a file built from block sums
// that fails its check may be a false match of those sums, which would
// fail the same way at every sync. The client syncs again, once, without
// block sums: the update succeeds, and a server that still lies gets the
// error of the second attempt.
func TestBlockMismatchSyncsAgainWithoutBlocks(t *testing.T) {
	app := deltaRelease()[0].Content
	// falseMatch sends app.bin, asked for by blocks, with the base's
	// first block where its sixth belongs: what a false match of the
	// sums does. Asked for another way, it tells the truth, or not.
	falseMatch := func(again bool) func(s *hostiletest.Stream) {
		return func(s *hostiletest.Stream) {
			for _, i := range s.Saw.Asked {
				r := s.Saw.Blocks[i]
				if i != 0 || (r == nil && again) {
					s.Honest(int(i))
					continue
				}
				bs := len(app) / 16 // any length will do
				if r != nil {
					bs = int(r.BlockSize)
				}
				s.Msg(syncproto.FileStart{Index: 0, Size: uint64(len(app))})
				s.Data(app[:5*bs])
				s.Msg(syncproto.FileCopy{Off: 0, Len: uint32(bs)})
				s.Data(app[6*bs:])
				s.Msg(syncproto.FileEnd{Hash: blake3.Sum256(app)})
			}
		}
	}
	t.Run("false match", func(t *testing.T) {
		saw, dir := hostileRunIn(t, hostiletest.Lie{Name: "false match", Send: falseMatch(true)}, deltaScene)
		checkDeltaRequests(t, saw)
		if saw.Report == nil || saw.Report.Outcome != syncproto.OutcomeFailed {
			t.Errorf("first session's report %+v; want the failure", saw.Report)
		}
		again := saw.Again
		if again == nil {
			t.Fatal("the client did not sync again")
		}
		if len(again.Blocks) != 0 {
			t.Errorf("the second attempt asked for %d files by block sums; want none", len(again.Blocks))
		}
		if !slices.Contains(again.Asked, 0) {
			t.Errorf("the second attempt asked for %v; want app.bin among them", again.Asked)
		}
		if again.Report == nil || again.Report.Outcome != syncproto.OutcomeUpdated {
			t.Errorf("second session's report %+v; want an update", again.Report)
		}
		// Two reports, each its own: a server drops a report whose id
		// it has taken already.
		if saw.Report != nil && again.Report != nil && (again.Report.ID == saw.Report.ID || again.Report.ID == 0) {
			t.Errorf("the second attempt's report has id %d, the first's %d: want another", again.Report.ID, saw.Report.ID)
		}
		for _, f := range deltaRelease() {
			if got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Path))); err != nil || !bytes.Equal(got, f.Content) {
				t.Errorf("%s: %d bytes, %v; want the release's content", f.Path, len(got), err)
			}
		}
	})
	t.Run("lies again", func(t *testing.T) {
		saw, _ := hostileRunIn(t, hostiletest.Lie{Name: "lies again", Send: falseMatch(false),
			Want: smartclient.ErrVerify, WantMsg: []string{"app.bin", "BLAKE3"}}, deltaScene)
		if saw.Again == nil || len(saw.Again.Blocks) != 0 {
			t.Fatalf("second session %+v; want one, without block sums", saw.Again)
		}
		if r := saw.Again.Report; r == nil || r.Outcome != syncproto.OutcomeFailed {
			t.Errorf("second session's report %+v; want the failure", r)
		}
	})
}

// TestHostileForgedListSpoilsLaterDeltas: a server may send the true
// content of a file with a chunk list whose lengths add up but whose
// hashes lie. The client cannot check the list against the file without
// cutting it, but it must not let the lie outlive the session: a later
// update from an honest server must still succeed.
//
// Here the forged list names the last chunk of data/pack.pak with the
// hash of the last chunk of the next version, which differs from it only
// in its last byte. Kept and used as the base of the next delta, it has
// the honest server send a copy of the old last chunk where the new one
// belongs: the file fails its check, on every retry.
func TestHostileForgedListSpoilsLaterDeltas(t *testing.T) {
	const packBits = 13
	rel := deltaRelease()
	v2 := rel[1].Content
	v3 := slices.Clone(v2)
	v3[len(v3)-1] ^= 0xff
	list2, list3 := hostiletest.Refs(hostiletest.CutChunks(v2, packBits)), hostiletest.Refs(hostiletest.CutChunks(v3, packBits))
	if len(list2) != len(list3) || !slices.Equal(list2[:len(list2)-1], list3[:len(list3)-1]) || list2[len(list2)-1].Len != list3[len(list3)-1].Len {
		t.Fatal("the next version is not cut as this one but for its last chunk's hash")
	}
	forged := slices.Clone(list2)
	forged[len(forged)-1].Hash = list3[len(list3)-1].Hash

	dir := filepath.Join(t.TempDir(), "install")
	oldInstall(t, dir, deltaOldRelease())
	sync := func(l hostiletest.Lie, release []hostiletest.File) error {
		t.Helper()
		addr, wait := hostiletest.Serve(t, l, release)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := smartclient.Sync(ctx, smartclient.Options{AllowUnsigned: true, Dir: dir, Server: addr, OS: "linux", Yes: true, Timeout: 5 * time.Second})
		if saw := wait(); saw.ServerErr != nil {
			t.Errorf("server: %v", saw.ServerErr)
		}
		return err
	}

	// The lie: every file honestly, but data/pack.pak with the forged list.
	err := sync(hostiletest.Lie{Send: func(s *hostiletest.Stream) {
		s.Delta(0)
		s.Msg(syncproto.FileStart{Index: 1, Size: uint64(len(v2))})
		s.List(packBits, forged, syncproto.MaxChunkRefs, false)
		s.Assemble(v2, packBits, s.Saw.Deltas[1].Chunks)
		s.Msg(syncproto.FileEnd{Hash: blake3.Sum256(v2)})
		s.Delta(2)
		s.File(3)
	}}, rel)
	if err != nil && !errors.Is(err, smartclient.ErrVerify) {
		t.Fatalf("sync with the forged list: %v; want success or ErrVerify", err)
	}

	// The next release, from an honest server: it must install, and so
	// must a retry.
	next := deltaRelease()
	next[1].Content = v3
	// A new mtime too: with the same size and mtime the client would not
	// fetch it at all (see TestPlanKnownFileWithOtherHash).
	next[1].Mtime = time.Unix(0, hostiletest.Mtime).Add(time.Hour)
	for try := range 2 {
		if err := sync(hostiletest.Lie{}, next); err != nil {
			t.Errorf("honest update, try %d, after the forged list: %v", try+1, err)
		}
	}
	if t.Failed() {
		return
	}
	for _, f := range next {
		if got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Path))); err != nil || !bytes.Equal(got, f.Content) {
			t.Errorf("%s: %d bytes, %v; want the next release's content", f.Path, len(got), err)
		}
	}
}
