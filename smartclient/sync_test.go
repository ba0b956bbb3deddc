package smartclient_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/pending"

	"github.com/erpupdate/smartsync/appserver"
	"github.com/erpupdate/smartsync/internal/cdc"
	"github.com/erpupdate/smartsync/internal/testtree"
	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/smartclient/internal/cli"
	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/otiai10/copy"
	"github.com/zeebo/blake3"
)

const (
	buildOld = "7.00.231101A"
	buildNew = "7.00.240501A"
)

// server is a real appserver on 127.0.0.1:0 over update folders copied
// from testdata into a temporary folder, so tests may change them.
type server struct {
	t       *testing.T
	folders map[string]string // OS -> update folder
	state   string
	addr    string
	log     *logBuf
	srv     *appserver.Server
	stop    func()
	// listenAt, when set, is the address start listens on (a server
	// that comes back where it was, or an impostor at the real one's).
	listenAt string
	// ini is added to the AppServer.ini start writes.
	ini string
	// tune, when set, sets the server's fields before it serves.
	tune func(*appserver.Server)
}

type serverConf struct {
	enable   bool
	build    string
	minBuild string
	preserve string
	idle     time.Duration // server's idle timeout; 0: its default
	noMac    bool          // leave PathMacOSX out
	post     string        // [UPDATE] PostInstall
	postMax  int           // [UPDATE] PostInstallTimeout, seconds
	plain    bool          // [SSL] AllowPlaintext=1: a test that reads the frames on the wire
	admin    string        // [ADMIN] PasswordHash and [SELFUPDATE] PublicKey lines: self-update enabled
}

var defaultConf = serverConf{enable: true, build: buildNew, minBuild: buildOld, preserve: "smartclient.ini"}

func newServer(t *testing.T, conf serverConf) *server {
	t.Helper()
	base := t.TempDir()
	s := &server{t: t, folders: map[string]string{}, state: filepath.Join(base, "state")}
	for osName, fixture := range map[string]string{"windows": "windows", "linux": "linux", "darwin": "macosx"} {
		dst := filepath.Join(base, "upd_"+osName)
		if err := copy.Copy(filepath.Join("..", "testdata", "update", fixture), dst, copy.Options{PreserveTimes: true}); err != nil {
			t.Fatal(err)
		}
		s.folders[osName] = dst
	}
	s.start(conf)
	return s
}

// start (re)starts the server with conf over the same folders and state.
func (s *server) start(conf serverConf) {
	t := s.t
	t.Helper()
	if s.stop != nil {
		s.stop()
	}
	ini := fmt.Sprintf("[TCP]\nPort=1234\n[UPDATE]\nEnable=%d\nPathWindows=%s\nPathLinux=%s\nBuild=%s\nMinClientBuild=%s\nPreserve=%s\n",
		map[bool]int{true: 1, false: 0}[conf.enable], s.folders["windows"], s.folders["linux"], conf.build, conf.minBuild, conf.preserve)
	if !conf.noMac {
		ini += "PathMacOSX=" + s.folders["darwin"] + "\n"
	}
	if conf.post != "" {
		ini += fmt.Sprintf("PostInstall=%s\nPostInstallTimeout=%d\n", conf.post, conf.postMax)
	}
	if conf.plain {
		ini += "[SSL]\nAllowPlaintext=1\n"
	}
	ini += s.ini
	ini += conf.admin
	path := filepath.Join(filepath.Dir(s.state), "AppServer.ini")
	if err := os.WriteFile(path, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := appserver.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	s.log = &logBuf{}
	logger := slog.New(slog.NewTextHandler(s.log, nil))
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := appserver.New(ctx, logger, cfg, s.state)
	if err != nil {
		t.Fatal(err)
	}
	s.srv = srv
	if conf.idle > 0 {
		srv.IdleTimeout = conf.idle
	}
	if s.tune != nil {
		s.tune(srv)
	}
	at := "127.0.0.1:0"
	if s.listenAt != "" {
		at = s.listenAt
	}
	ln, err := net.Listen("tcp", at)
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	s.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
		srv.Close()
		s.stop = nil
	}
	t.Cleanup(func() {
		if s.stop != nil {
			s.stop()
		}
	})
}

// logBuf collects the server's log; sessions write it concurrently.
type logBuf struct{ testtree.Buffer }

// waitFor waits for the server to log want: the session's line is written
// after the client has its answer.
func (l *logBuf) waitFor(t *testing.T, want string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if strings.Contains(l.String(), want) {
			return
		}
	}
	t.Errorf("server did not log %q:\n%s", want, l.String())
}

// write changes a file in an update folder, with an mtime that a
// size+mtime check sees, and waits until the server has seen it.
func (s *server) write(osName, rel, content string) {
	s.t.Helper()
	p := filepath.Join(s.folders[osName], filepath.FromSlash(rel))
	s.change(osName, func() {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			s.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			s.t.Fatal(err)
		}
		bump(s.t, p)
	})
}

// change runs f, which changes the update folder of osName, and waits
// until the server's manifest shows the change: the server need not see a
// change the moment it is made, so a client that syncs right after could
// still get the previous manifest.
func (s *server) change(osName string, f func()) {
	s.t.Helper()
	ix := s.srv.Indexes()[osName]
	if ix == nil {
		f()
		return
	}
	before, err := ix.Current(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	f()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		m, err := ix.Current(context.Background())
		if err == nil && m != before {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the server's manifest did not change within 5 s of a change to its %s folder (error %v)", osName, err)
		}
	}
}

// makeExecutable gives the file rel of the update folder of osName the
// execute bits and waits until the server has seen it. Windows has no
// execute bit: os.Chmod there sets or clears the read-only attribute only,
// and 0o755 leaves it clear, so neither the folder nor the manifest
// changes, and there is nothing to wait for.
func (s *server) makeExecutable(osName, rel string) {
	s.t.Helper()
	p := filepath.Join(s.folders[osName], filepath.FromSlash(rel))
	if runtime.GOOS == "windows" {
		if err := os.Chmod(p, 0o755); err != nil {
			s.t.Fatal(err)
		}
		return
	}
	s.change(osName, func() {
		if err := os.Chmod(p, 0o755); err != nil {
			s.t.Fatal(err)
		}
	})
}

// wineKeepsWatchedFolders is why a step that removes a folder of the
// server's update folder is not checked under Wine: the server's watcher
// holds a handle on the folder, and Wine 8 has no POSIX delete
// (FILE_DISPOSITION_POSIX_SEMANTICS: STATUS_INVALID_PARAMETER) nor ends the
// watch's pending ReadDirectoryChangesW when the folder is marked for
// deletion, so the emptied folder stays listed, and the server serves it
// as an empty folder. Windows takes the name away at once on NTFS, and
// elsewhere completes the pending watch (FatSetDispositionInfo), which
// closes the handle.
const wineKeepsWatchedFolders = "a removed folder that the server's watcher holds open stays, delete-pending, " +
	"in the listing (no POSIX delete, and the pending ReadDirectoryChangesW is not ended)"

var clock = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)

// bump gives p a new mtime, distinct from every earlier one in the test.
func bump(t *testing.T, p string) {
	t.Helper()
	clock = clock.Add(time.Minute)
	if err := os.Chtimes(p, clock, clock); err != nil {
		t.Fatal(err)
	}
}

func sync1(t *testing.T, s *server, dir string, mod func(*smartclient.Options)) (*smartclient.Result, error) {
	t.Helper()
	o := smartclient.Options{AllowUnsigned: true, Dir: dir, Server: s.addr, OS: "linux", Timeout: 10 * time.Second}
	if mod != nil {
		mod(&o)
	}
	return smartclient.Sync(context.Background(), o)
}

func yes(o *smartclient.Options) { o.Yes = true }

func mustSync(t *testing.T, s *server, dir string, mod func(*smartclient.Options)) *smartclient.Result {
	t.Helper()
	res, err := sync1(t, s, dir, mod)
	if err != nil {
		t.Fatalf("sync: %v\nserver log:\n%s", err, s.log)
	}
	return res
}

// runCLI runs the smartclient command as a user would, without a terminal.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if len(args) > 0 && (args[0] == "sync" || args[0] == "run") {
		// The test servers serve unsigned releases (release_test.go
		// tests signed ones), and a server that cannot be reached
		// fails at once, as with the library's defaults
		// (TestCLIConnectRetry tests the command's own).
		args = append([]string{args[0], "--allow-unsigned", "--connect-retry", "off"}, args[1:]...)
	}
	code := cli.Main(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// tree describes every file under dir but the client's bookkeeping and
// backups: path -> mode and content hash.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return m
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		switch {
		case rel == ".smartclient" || strings.HasPrefix(rel, "bkp_remote."):
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		case d.IsDir():
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			m[rel] = "link to " + target
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		m[rel] = fmt.Sprintf("%v %x", fi.Mode().Perm(), sha256.Sum256(data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sameTree(t *testing.T, got, want map[string]string, what string) {
	t.Helper()
	if maps.Equal(got, want) {
		return
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] != want[k] {
			t.Errorf("%s: %s: got %q, want %q", what, k, got[k], want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected %s", what, k)
		}
	}
}

func backups(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "bkp_remote.*"))
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	return m
}

func noLeftovers(t *testing.T, dir string) {
	t.Helper()
	for _, p := range []string{".smartclient/staging", ".smartclient/journal.json", ".smartclient/bkp_new"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind (%v)", p, err)
		}
	}
}

func TestFreshInstall(t *testing.T) {
	s := newServer(t, defaultConf)
	dir := filepath.Join(t.TempDir(), "install")
	res := mustSync(t, s, dir, yes)
	if res.Outcome != syncproto.OutcomeUpdated || res.Fetched != 6 {
		t.Fatalf("outcome %v, fetched %d; want updated, 6", res.Outcome, res.Fetched)
	}
	sameTree(t, tree(t, dir), tree(t, s.folders["linux"]), "install")
	// The server's mtimes are kept to the nanosecond, so the next sync's
	// size+mtime check matches.
	src, _ := os.Stat(filepath.Join(s.folders["linux"], "lib", "libsmartclient.so"))
	dst, _ := os.Stat(filepath.Join(dir, "lib", "libsmartclient.so"))
	if !src.ModTime().Equal(dst.ModTime()) {
		t.Errorf("mtime %v, server has %v", dst.ModTime(), src.ModTime())
	}
	if b := backups(t, dir); len(b) != 0 {
		t.Errorf("backups of an empty folder: %v", b)
	}
	noLeftovers(t, dir)
	s.log.waitFor(t, "outcome=updated files=6")
}

func TestIncrementalNoopAndMtimeOnly(t *testing.T) {
	s := newServer(t, defaultConf)
	dir := t.TempDir()
	mustSync(t, s, dir, yes)
	v1 := tree(t, dir)

	// Change, add and remove files on the server.
	s.write("linux", "lib/libtlpp.so", "new tlpp")
	s.write("linux", "plugins/chart/libchart.so", "a new plugin")
	s.change("linux", func() {
		// The whole folder: an empty one left on the server would be
		// an empty folder of the release.
		if err := os.RemoveAll(filepath.Join(s.folders["linux"], "lang")); err != nil {
			t.Fatal(err)
		}
	})
	res := mustSync(t, s, dir, nil)
	if res.Outcome != syncproto.OutcomeUpdated || res.Fetched != 2 || res.Removed != 1 {
		t.Fatalf("got %+v; want updated with 2 fetched and 1 removed", res)
	}
	sameTree(t, tree(t, dir), tree(t, s.folders["linux"]), "after incremental")
	t.Run("emptied folder removed", func(t *testing.T) {
		testtree.SkipUnderWine(t, wineKeepsWatchedFolders)
		if _, err := os.Stat(filepath.Join(dir, "lang")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("emptied folder lang kept: %v", err)
		}
	})
	sameTree(t, tree(t, filepath.Join(dir, "bkp_remote.001")), v1, "bkp_remote.001")
	noLeftovers(t, dir)

	t.Run("no-op", func(t *testing.T) {
		res := mustSync(t, s, dir, nil)
		if res.Outcome != syncproto.OutcomeUpToDate || res.Fetched != 0 || res.WireBytes != 0 || res.Touched != 0 {
			t.Fatalf("got %+v; want up to date, nothing transferred", res)
		}
		// Only the handshake, the manifest and the report crossed.
		if res.Received == 0 || res.Received > 4096 || res.Sent == 0 || res.Sent > 1024 {
			t.Errorf("received %d, sent %d bytes for a no-op of 6 files", res.Received, res.Sent)
		}
		code, out, _ := runCLI(t, "sync", "--stats", "--server", s.addr, "--dir", dir, "--os", "linux")
		if code != cli.ExitOK || !strings.Contains(out, "stats: received=") || !strings.Contains(out, " fetched=0 ") {
			t.Errorf("--stats: exit %d, %q", code, out)
		}
		if b := backups(t, dir); len(b) != 1 {
			t.Errorf("a no-op sync made a backup: %v", b)
		}
	})
	t.Run("mtime only", func(t *testing.T) {
		p := filepath.Join(s.folders["linux"], "smartclient")
		s.change("linux", func() { bump(t, p) })
		res := mustSync(t, s, dir, nil)
		if res.Fetched != 0 || res.WireBytes != 0 || res.Touched != 1 {
			t.Fatalf("got %+v; want one file retimed, nothing transferred", res)
		}
		src, _ := os.Stat(p)
		dst, _ := os.Stat(filepath.Join(dir, "smartclient"))
		if !src.ModTime().Equal(dst.ModTime()) {
			t.Errorf("mtime %v, server has %v", dst.ModTime(), src.ModTime())
		}
		if res := mustSync(t, s, dir, nil); res.Touched != 0 || res.Fetched != 0 {
			t.Errorf("retimed file is not current on the next sync: %+v", res)
		}
		if b := backups(t, dir); len(b) != 1 {
			t.Errorf("fixing an mtime made a backup: %v", b)
		}
		// The backup started when the manifest came is not left behind.
		noLeftovers(t, dir)
	})
	t.Run("local change is repaired", func(t *testing.T) {
		p := filepath.Join(dir, "lib", "libsmartclient.so")
		if err := os.WriteFile(p, []byte("damaged"), 0o644); err != nil {
			t.Fatal(err)
		}
		res := mustSync(t, s, dir, nil)
		if res.Fetched != 1 {
			t.Fatalf("fetched %d, want 1", res.Fetched)
		}
		sameTree(t, tree(t, dir), tree(t, s.folders["linux"]), "after repair")
	})
}

func TestIncompatible(t *testing.T) {
	s := newServer(t, serverConf{enable: true, build: buildOld, preserve: "smartclient.ini"})
	dir := t.TempDir()
	mustSync(t, s, dir, yes)
	// The user edits INI files; then the server moves to a build the
	// installed one is not compatible with.
	for _, name := range []string{"smartclient.ini", "lang/pt-br.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("[local]\nedited=1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.start(serverConf{enable: true, build: buildNew, minBuild: buildNew, preserve: "smartclient.ini", idle: 2 * time.Second})
	before := tree(t, dir)

	t.Run("declined at the prompt", func(t *testing.T) {
		var asked string
		_, err := sync1(t, s, dir, func(o *smartclient.Options) {
			o.Confirm = func(q string) (bool, error) { asked = q; return false, nil }
		})
		if !errors.Is(err, smartclient.ErrDeclined) {
			t.Fatalf("got %v, want ErrDeclined", err)
		}
		if asked != smartclient.IncompatiblePrompt {
			t.Errorf("asked %q", asked)
		}
		sameTree(t, tree(t, dir), before, "after decline")
	})
	t.Run("yes at the prompt, answered after the server stopped waiting", func(t *testing.T) {
		other := t.TempDir()
		if err := copy.Copy(dir, other, copy.Options{PreserveTimes: true}); err != nil {
			t.Fatal(err)
		}
		res, err := sync1(t, s, other, func(o *smartclient.Options) {
			o.Confirm = func(string) (bool, error) { time.Sleep(2500 * time.Millisecond); return true, nil }
		})
		if err != nil || res.Outcome != syncproto.OutcomeUpdated {
			t.Fatalf("got %+v, %v", res, err)
		}
		sameTree(t, tree(t, other), tree(t, s.folders["linux"]), "after yes")
	})
	t.Run("no terminal and no --yes", func(t *testing.T) {
		code, out, _ := runCLI(t, "sync", "--server", s.addr, "--dir", dir, "--os", "linux")
		if code != cli.ExitDeclined || !strings.Contains(out, "--yes") {
			t.Fatalf("exit %d, output %q; want 3 and a hint to use --yes", code, out)
		}
		sameTree(t, tree(t, dir), before, "after decline")
	})
	t.Run("--yes copies everything, INI files included", func(t *testing.T) {
		code, out, errOut := runCLI(t, "sync", "--server", s.addr, "--dir", dir, "--os", "linux", "--yes")
		if code != cli.ExitOK {
			t.Fatalf("exit %d: %s %s", code, out, errOut)
		}
		sameTree(t, tree(t, dir), tree(t, s.folders["linux"]), "after full update")
		sameTree(t, tree(t, filepath.Join(dir, "bkp_remote.001")), before, "backup")
		if res := mustSync(t, s, dir, nil); res.Fetched != 0 || !res.Compatible {
			t.Errorf("next sync: %+v; want compatible and current", res)
		}
	})
}

func TestUpdatesDisabled(t *testing.T) {
	s := newServer(t, serverConf{enable: false})
	dir := filepath.Join(t.TempDir(), "install")
	code, out, errOut := runCLI(t, "sync", "--server", s.addr, "--dir", dir, "--os", "linux", "--yes")
	if code != cli.ExitOK || !strings.Contains(out, "disabled") {
		t.Fatalf("exit %d, %q %q; want 0 and a message", code, out, errOut)
	}
	// Created, as a sync creates it, and left with only the client's id.
	onlyIDLeft(t, dir, "a sync with updates disabled")
}

func TestPreserve(t *testing.T) {
	s := newServer(t, defaultConf)
	dir := t.TempDir()
	mustSync(t, s, dir, yes)
	ini := filepath.Join(dir, "smartclient.ini")
	mine := "[tcp]\nserver=my-server\nport=1234\n"
	if err := os.WriteFile(ini, []byte(mine), 0o644); err != nil {
		t.Fatal(err)
	}
	s.write("linux", "smartclient.ini", "[tcp]\nserver=erp2\nport=1234\n")
	res := mustSync(t, s, dir, nil)
	if res.Fetched != 0 || res.Kept != 1 {
		t.Fatalf("got %+v; want the preserved file kept", res)
	}
	if b, _ := os.ReadFile(ini); string(b) != mine {
		t.Fatalf("preserved file overwritten: %q", b)
	}
	// A preserved file that is missing is copied.
	if err := os.Remove(ini); err != nil {
		t.Fatal(err)
	}
	mustSync(t, s, dir, nil)
	if b, _ := os.ReadFile(ini); !strings.Contains(string(b), "erp2") {
		t.Fatalf("missing preserved file not copied: %q", b)
	}
}

func TestEachOS(t *testing.T) {
	s := newServer(t, defaultConf)
	for _, osName := range []string{"windows", "linux", "darwin"} {
		t.Run(osName, func(t *testing.T) {
			dir := t.TempDir()
			code, out, errOut := runCLI(t, "sync", "--server", s.addr, "--dir", dir, "--os", osName, "--yes")
			if code != cli.ExitOK {
				t.Fatalf("exit %d: %s %s", code, out, errOut)
			}
			sameTree(t, tree(t, dir), tree(t, s.folders[osName]), osName)
		})
	}
}

func TestBackupRotation(t *testing.T) {
	s := newServer(t, defaultConf)
	dir := t.TempDir()
	var versions []map[string]string
	for v := 1; v <= 5; v++ {
		s.write("linux", "lib/libtlpp.so", fmt.Sprintf("version %d", v))
		mustSync(t, s, dir, yes)
		versions = append(versions, tree(t, dir))
		if v == 4 {
			// Four syncs: the first installed into an empty folder, each
			// later one kept the install it replaced.
			if b := backups(t, dir); !slices.Equal(b, []string{"bkp_remote.001", "bkp_remote.002", "bkp_remote.003"}) {
				t.Fatalf("backups %v", b)
			}
			for i := 1; i <= 3; i++ {
				sameTree(t, tree(t, filepath.Join(dir, fmt.Sprintf("bkp_remote.%03d", i))), versions[i-1], fmt.Sprintf("after 4 syncs, bkp_remote.%03d", i))
			}
		}
	}
	// The fifth drops the oldest; .003 is always the newest.
	if b := backups(t, dir); len(b) != 3 {
		t.Fatalf("backups %v", b)
	}
	for i := 1; i <= 3; i++ {
		sameTree(t, tree(t, filepath.Join(dir, fmt.Sprintf("bkp_remote.%03d", i))), versions[i], fmt.Sprintf("after 5 syncs, bkp_remote.%03d", i))
	}
}

func TestForeignFilesSurvive(t *testing.T) {
	s := newServer(t, defaultConf)
	dir := t.TempDir()
	foreign := map[string]string{"notes.txt": "mine", "lib/custom.so": "a local plugin", "lang/pt-br.txt.orig": "x"}
	for p, c := range foreign {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustSync(t, s, dir, yes)
	// The server drops a whole folder, the client's plugin beside it stays.
	s.change("linux", func() {
		if err := os.RemoveAll(filepath.Join(s.folders["linux"], "lang")); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(s.folders["linux"], "lib")); err != nil {
			t.Fatal(err)
		}
	})
	res := mustSync(t, s, dir, nil)
	if res.Removed != 3 {
		t.Errorf("removed %d, want 3", res.Removed)
	}
	for p, c := range foreign {
		if b, err := os.ReadFile(filepath.Join(dir, p)); err != nil || string(b) != c {
			t.Errorf("%s: %q, %v; want it untouched", p, b, err)
		}
	}
}

func TestServerUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.bin"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := tree(t, dir)
	code, _, errOut := runCLI(t, "sync", "--server", addr, "--dir", dir, "--os", "linux", "--yes")
	if code != cli.ExitFailed {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{"Could not update automatically: cannot reach the update server", "Please contact your system administrator."} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q lacks %q", errOut, want)
		}
	}
	sameTree(t, tree(t, dir), before, "after failure")
	onlyClientID(t, dir, "a failed first sync")
	// A second attempt finds .smartclient, with the id, and leaves it so.
	id, err := os.ReadFile(filepath.Join(dir, ".smartclient", "client-id"))
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := runCLI(t, "sync", "--server", addr, "--dir", dir, "--os", "linux", "--yes"); code != cli.ExitFailed {
		t.Fatalf("second attempt: exit %d, want 1", code)
	}
	sameTree(t, tree(t, dir), before, "after a second failure")
	onlyClientID(t, dir, "a second failed first sync")
	if again, _ := os.ReadFile(filepath.Join(dir, ".smartclient", "client-id")); !bytes.Equal(again, id) {
		t.Errorf("id %q after the second attempt; was %q", again, id)
	}
}

// onlyClientID fails t unless .smartclient in dir holds the client's id
// and nothing else: a first sync that did not happen leaves no trace but
// the id, kept for the next attempt.
func onlyClientID(t *testing.T, dir, after string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, ".smartclient"))
	var names []string
	for _, e := range entries {
		// The report of the failed sync, kept for the server when it
		// could not take it, is the client's own too.
		if e.Name() != pending.Name {
			names = append(names, e.Name())
		}
	}
	if err != nil || !slices.Equal(names, []string{"client-id"}) {
		t.Errorf(".smartclient after %s: %v, %v; want only client-id (and kept reports)", after, names, err)
	}
}

// onlyIDLeft fails t unless dir holds nothing but the client's id.
func onlyIDLeft(t *testing.T, dir, after string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 || entries[0].Name() != ".smartclient" {
		t.Errorf("install folder after %s: %v, %v; want only .smartclient", after, entries, err)
	}
	onlyClientID(t, dir, after)
}

// cutProxy forwards to addr but closes both sides once limit bytes have
// gone from the server to the client: a connection dropped mid-transfer.
func cutProxy(t *testing.T, addr string, limit int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, c)
				io.CopyN(c, up, limit)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestDroppedMidTransfer(t *testing.T) {
	s := newServer(t, defaultConf)
	dir := t.TempDir()
	mustSync(t, s, dir, yes)
	before := tree(t, dir)
	// A large incompressible file makes sure the cut falls inside it.
	big := make([]byte, 3<<20)
	rand.NewChaCha8([32]byte{1}).Read(big)
	s.write("linux", "lib/big.so", string(big))
	s.write("linux", "smartclient", "new binary")
	proxy := cutProxy(t, s.addr, 1<<20)
	code, _, errOut := runCLI(t, "sync", "--server", proxy, "--dir", dir, "--os", "linux")
	if code != cli.ExitFailed || !strings.Contains(errOut, "connection to the update server was lost") {
		t.Fatalf("exit %d, stderr %q; want 1 and a lost connection", code, errOut)
	}
	sameTree(t, tree(t, dir), before, "after a dropped transfer")
	noLeftovers(t, dir)
	if b := backups(t, dir); len(b) != 0 {
		t.Errorf("backup made for an update that did not happen: %v", b)
	}
	// And the next sync, on a good connection, completes.
	mustSync(t, s, dir, nil)
	sameTree(t, tree(t, dir), tree(t, s.folders["linux"]), "after retry")
}

func TestCheckChangesNothing(t *testing.T) {
	s := newServer(t, defaultConf)
	dir := t.TempDir()
	mustSync(t, s, dir, yes)
	s.write("linux", "lib/libtlpp.so", "newer")
	state, _ := os.ReadFile(filepath.Join(dir, ".smartclient", "state.bin"))
	before := tree(t, dir)
	code, out, errOut := runCLI(t, "sync", "--check", "--server", s.addr, "--dir", dir, "--os", "linux")
	if code != cli.ExitUpdateAvailable || !strings.Contains(out, "Update available: build "+buildNew) || !strings.Contains(out, "1 file to download") {
		t.Fatalf("exit %d, %q %q; want %d", code, out, errOut, cli.ExitUpdateAvailable)
	}
	if strings.Contains(out, "fetch lib/libtlpp.so") {
		t.Errorf("--check without -v listed the changes: %q", out)
	}
	// -v lists what would change, as rsync -ni does.
	code, out, errOut = runCLI(t, "sync", "--check", "-v", "--server", s.addr, "--dir", dir, "--os", "linux")
	if code != cli.ExitUpdateAvailable || !strings.Contains(out, "\nfetch lib/libtlpp.so\n") {
		t.Fatalf("--check -v: exit %d, %q %q", code, out, errOut)
	}
	sameTree(t, tree(t, dir), before, "after --check")
	if after, _ := os.ReadFile(filepath.Join(dir, ".smartclient", "state.bin")); !bytes.Equal(after, state) {
		t.Error("--check changed the client's state")
	}
	mustSync(t, s, dir, nil)
	if code, out, _ := runCLI(t, "sync", "--check", "--server", s.addr, "--dir", dir, "--os", "linux"); code != cli.ExitOK || !strings.Contains(out, "Up to date") {
		t.Errorf("after syncing, --check says %q", out)
	}
	// A release that differs by a symbolic link alone is an update too.
	t.Run("a link alone", func(t *testing.T) {
		testtree.NeedSymlinks(t)
		s.change("linux", func() {
			if err := os.Symlink("libtlpp.so", filepath.Join(s.folders["linux"], "lib", "libtlpp.so.1")); err != nil {
				t.Fatal(err)
			}
		})
		code, out, errOut := runCLI(t, "sync", "--check", "-v", "--server", s.addr, "--dir", dir, "--os", "linux")
		if code != cli.ExitUpdateAvailable || !strings.Contains(out, "1 link to make") || !strings.Contains(out, "\nlink lib/libtlpp.so.1\n") {
			t.Errorf("--check of a new link: exit %d, %q, %q; want %d, the link counted and listed", code, out, errOut, cli.ExitUpdateAvailable)
		}
	})
}

func TestRunStartsProgram(t *testing.T) {
	s := newServer(t, defaultConf)
	dir := t.TempDir()
	program := []string{"sh", "-c", "test -x ./smartclient && echo started; exit 7"}
	if runtime.GOOS == "windows" {
		// No sh; no execute bit either.
		program = smartclient.HelperCommand(t, "need", "smartclient", "print", "started", "exit", "7")
	}
	code, out, errOut := runCLI(t, append([]string{"run", "--server", s.addr, "--dir", dir, "--os", "linux", "--yes", "--"}, program...)...)
	if code != 7 || !strings.Contains(out, "started") {
		t.Fatalf("exit %d, %q %q; want the program's exit code 7 after the sync", code, out, errOut)
	}
}

// TestRunStaysAfterReportAck: run keeps its session for the server's
// notices by sending Stay right after the server took its report; sync
// does not.
func TestRunStaysAfterReportAck(t *testing.T) {
	s := newServer(t, defaultConf)
	var dir string
	run := []string{"run", "--", "true"}
	if runtime.GOOS == "windows" {
		run = append([]string{"run", "--"}, smartclient.HelperCommand(t, "exit", "0")...)
	}
	for _, tc := range []struct {
		args     []string
		fresh    bool // a new install folder: an update; else up to date
		wantStay bool
	}{
		{[]string{"sync"}, true, false},
		{run, false, true},
		{run, true, true},
		{[]string{"sync"}, false, false},
	} {
		p := newFaultProxy(t, s.addr, fault{kind: faultNone}, true)
		if tc.fresh {
			dir = filepath.Join(t.TempDir(), "install")
		}
		args := append([]string{tc.args[0], "--server", p.addr, "--dir", dir, "--os", "linux", "--yes"}, tc.args[1:]...)
		if code, out, errOut := runCLI(t, args...); code != cli.ExitOK || tc.fresh != strings.Contains(out, "Updated to build") {
			t.Fatalf("%v: exit %d, %q %q", tc.args, code, out, errOut)
		}
		// The client has closed the session; the proxy reads to its end.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			p.mu.Lock()
			open := len(p.conns)
			p.mu.Unlock()
			if open == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%v: the proxy still carries the session 10 s after the client ended", tc.args)
			}
		}
		_, up := p.recorded()
		var types []syncproto.MsgType
		for _, f := range parseWireFrames(t, up) {
			types = append(types, f.msg.Type())
		}
		stays := slices.Index(types, syncproto.MsgStay) >= 0
		if stays != tc.wantStay || stays && types[len(types)-2] != syncproto.MsgReport || stays && types[len(types)-1] != syncproto.MsgStay {
			t.Errorf("%v: the client sent %v; want Stay right after Report: %v", tc.args, types, tc.wantStay)
		}
	}
}

// TestUpdateFolderReplaced publishes a release the way administrators do:
// the whole update folder is replaced while the server runs.
func TestUpdateFolderReplaced(t *testing.T) {
	s := newServer(t, defaultConf)
	dir := t.TempDir()
	mustSync(t, s, dir, yes)
	folder := s.folders["linux"]
	next := folder + ".next"
	if err := copy.Copy(folder, next, copy.Options{PreserveTimes: true}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(next, "smartclient"), []byte("release 2"), 0o755); err != nil {
		t.Fatal(err)
	}
	bump(t, filepath.Join(next, "smartclient"))
	s.change("linux", func() {
		if err := os.RemoveAll(folder); err != nil {
			// Windows deletes with POSIX semantics, the name gone at once
			// though the server's watcher holds the folder open (with
			// FILE_SHARE_DELETE); Wine 8 has no such delete, the emptied
			// folder stays until the watcher lets go, and its parent
			// cannot be removed.
			testtree.SkipUnderWine(t, "no POSIX delete (FileDispositionInformationEx): a folder the server watches cannot be removed: "+err.Error())
			t.Fatal(err)
		}
		if err := os.Rename(next, folder); err != nil {
			t.Fatal(err)
		}
	})
	res := mustSync(t, s, dir, nil)
	if res.Fetched != 1 {
		t.Errorf("fetched %d, want 1", res.Fetched)
	}
	sameTree(t, tree(t, dir), tree(t, folder), "after the folder was replaced")
}

func TestServerRefuses(t *testing.T) {
	s := newServer(t, serverConf{enable: true, build: buildNew, noMac: true})
	dir := t.TempDir()
	code, _, errOut := runCLI(t, "sync", "--server", s.addr, "--dir", dir, "--os", "darwin", "--yes")
	if code != cli.ExitFailed || !strings.Contains(errOut, "Could not update automatically: the update server refused") || !strings.Contains(errOut, "PathMacOSX") {
		t.Fatalf("exit %d, stderr %q; want 1 and the server's reason", code, errOut)
	}
	onlyIDLeft(t, dir, "a failed first sync")
}

// TestServerFromSmartclientINI: without --server the client finds its
// server in the TOTVS smartclient.ini of the install folder; a flag wins
// over the file.
func TestServerFromSmartclientINI(t *testing.T) {
	s := newServer(t, defaultConf)
	host, port, _ := net.SplitHostPort(s.addr)
	tests := []struct {
		name string
		ini  string
		args []string
	}{
		{"TOTVS file", "[config]\r\nlastmainprog=sigamdi\r\n[drivers]\r\nactive=tcp\r\n[tcp]\r\nserver=" + host + "\r\nport=" + port + "\r\n", nil},
		{"flag overrides the file", "[TCP]\nServer=192.0.2.1\nPort=1\n", []string{"--server", s.addr}},
		{"flag with host only takes the file's port", "[TCP]\nServer=192.0.2.1\nPort=" + port + "\n", []string{"--server", host}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "smartclient.ini"), []byte(tc.ini), 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"sync", "--dir", dir, "--os", "linux", "--yes"}, tc.args...)
			if code, out, errOut := runCLI(t, args...); code != cli.ExitOK {
				t.Fatalf("exit %d: %s %s", code, out, errOut)
			}
		})
	}
	t.Run("no server anywhere", func(t *testing.T) {
		code, _, errOut := runCLI(t, "sync", "--dir", t.TempDir(), "--os", "linux")
		if code != cli.ExitUsage || !strings.Contains(errOut, "--server") {
			t.Fatalf("exit %d, %q; want 2 and how to name a server", code, errOut)
		}
	})
}

// TestStatusAndRestore: status lists the installed build and the backups
// with their builds; restore puts a backup back and keeps the install it
// replaced as the newest backup.
// TestStatusWhileASyncRuns: status does not fail while another
// smartclient holds the folder: it shows the last known state, says a sync
// is running (pid, since) and exits 0; sync and restore are refused.
func TestStatusWhileASyncRuns(t *testing.T) {
	s := newServer(t, defaultConf)
	dir := t.TempDir()
	mustSync(t, s, dir, yes)
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	unlock, err := install.Lock(root) // as a running sync holds it
	if err != nil {
		t.Fatal(err)
	}
	r, err := smartclient.Status(t.Context(), dir, nil)
	if err != nil {
		t.Fatalf("Status while the folder is held: %v", err)
	}
	if r.Running == nil || r.Running.PID != os.Getpid() || time.Since(r.Running.Since) > time.Minute || r.Build != buildNew {
		t.Errorf("Status = %+v (running %+v), want build %s and this process as the one at work", r, r.Running, buildNew)
	}
	code, out, errOut := runCLI(t, "status", "--dir", dir)
	if code != cli.ExitOK || !strings.Contains(out, fmt.Sprintf("A sync is running (smartclient pid %d, since ", os.Getpid())) || !strings.Contains(out, "Installed build: "+buildNew) {
		t.Errorf("status: exit %d, %q, %q", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, "sync", "--server", s.addr, "--dir", dir, "--os", "linux"); code != cli.ExitFailed || !strings.Contains(errOut, "another smartclient is updating this folder") {
		t.Errorf("sync while held: exit %d, %q", code, errOut)
	}
	unlock()
	if _, err := os.Stat(filepath.Join(dir, ".smartclient", "running")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the holder's note outlived the lock: %v", err)
	}
	r, err = smartclient.Status(t.Context(), dir, nil)
	if err != nil || r.Running != nil {
		t.Errorf("Status after the lock was released: %+v, %v", r, err)
	}
}

func TestStatusAndRestore(t *testing.T) {
	s := newServer(t, serverConf{enable: true, build: "7.00.240101A", preserve: "smartclient.ini"})
	dir := t.TempDir()
	var versions []map[string]string
	for i, build := range []string{"7.00.240101A", "7.00.240201A", "7.00.240301A"} {
		if i > 0 {
			s.start(serverConf{enable: true, build: build, preserve: "smartclient.ini"})
			s.write("linux", "lib/libtlpp.so", "release "+build)
			s.write("linux", fmt.Sprintf("plugins/p%d.so", i), "added in "+build)
		}
		mustSync(t, s, dir, yes)
		if i == 0 {
			// A file of the user's, which restore must leave alone.
			if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		versions = append(versions, tree(t, dir))
	}
	code, out, errOut := runCLI(t, "status", "--dir", dir)
	if code != cli.ExitOK {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"Installed build: 7.00.240301A (linux)", "Last sync:", s.addr, "bkp_remote.001  build 7.00.240101A", "bkp_remote.002  build 7.00.240201A",
		"Server key:      " + s.srv.Fingerprint() + " at " + s.addr + ", trusted since "} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	code, out, errOut = runCLI(t, "restore", "--dir", dir, "--backup", "1")
	if code != cli.ExitOK || !strings.Contains(out, "Restored bkp_remote.001 (build 7.00.240101A)") {
		t.Fatalf("restore: exit %d: %s %s", code, out, errOut)
	}
	sameTree(t, tree(t, dir), versions[0], "after restoring bkp_remote.001")
	sameTree(t, tree(t, filepath.Join(dir, "bkp_remote.003")), versions[2], "the replaced install")
	if b := backups(t, dir); len(b) != 3 {
		t.Errorf("backups %v", b)
	}
	noLeftovers(t, dir)
	// The restored build is what the client now reports, and the next
	// sync brings it forward again.
	_, out, _ = runCLI(t, "status", "--dir", dir)
	if !strings.Contains(out, "Installed build: 7.00.240101A") {
		t.Errorf("status after restore:\n%s", out)
	}
	res := mustSync(t, s, dir, nil)
	if res.Fetched != 3 {
		t.Errorf("sync after restore fetched %d files, want 3", res.Fetched)
	}
	sameTree(t, tree(t, dir), versions[2], "after syncing again")

	for _, bad := range [][]string{{"--backup", "4"}, {"--backup", "x"}} {
		if code, _, _ := runCLI(t, append([]string{"restore", "--dir", dir}, bad...)...); code != cli.ExitUsage {
			t.Errorf("restore %v: exit %d, want 2", bad, code)
		}
	}
	if code, _, errOut := runCLI(t, "restore", "--dir", t.TempDir()); code != cli.ExitFailed || !strings.Contains(errOut, "no backup") {
		t.Errorf("restore without backups: exit %d, %q", code, errOut)
	}
}

// TestPreflightRefusesReadOnly: a read-only file or folder where the
// update must write is reported by path before anything is downloaded.
// On Windows the read-only attribute of a folder does not stop writes in
// it (Explorer sets it on folders it customizes): the update goes on.
func TestPreflightRefusesReadOnly(t *testing.T) {
	s := newServer(t, defaultConf)
	for _, tc := range []struct{ name, chmod, want string }{
		{"read-only file", "lib/libtlpp.so", "the file lib/libtlpp.so is read-only"},
		{"read-only folder", "lib", "the folder lib is read-only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			mustSync(t, s, dir, yes)
			s.write("linux", "lib/libtlpp.so", "new "+tc.name)
			p := filepath.Join(dir, filepath.FromSlash(tc.chmod))
			fi, _ := os.Stat(p)
			if err := os.Chmod(p, fi.Mode().Perm()&^0o222); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(p, fi.Mode().Perm()) })
			if runtime.GOOS == "windows" && fi.IsDir() {
				if res, err := sync1(t, s, dir, nil); err != nil || res.Fetched != 1 {
					t.Fatalf("got %+v, %v; want the update to go on in a folder with the read-only attribute", res, err)
				}
				if b, err := os.ReadFile(filepath.Join(dir, "lib", "libtlpp.so")); err != nil || string(b) != "new "+tc.name {
					t.Errorf("lib/libtlpp.so holds %q, %v after the update", b, err)
				}
				return
			}
			before := tree(t, dir)
			res, err := sync1(t, s, dir, nil)
			if !errors.Is(err, smartclient.ErrPreflight) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %+v, %v; want a preflight error saying %q", res, err, tc.want)
			}
			if fi.Mode().IsRegular() {
				// The backup begun beside the checks holds the file by a
				// hard link, which the refused update removes. Windows
				// removes it with POSIX semantics, ignoring the read-only
				// attribute; under Wine Go falls back to clearing the
				// attribute first, and the file shares it with its link.
				testtree.SkipUnderWine(t, "no POSIX delete (FileDispositionInformationEx): removing a hard link of a read-only file clears the attribute of the file")
			}
			sameTree(t, tree(t, dir), before, "after preflight")
			noLeftovers(t, dir)
		})
	}
}

// TestNoCopyBeforeChecksWithoutLinks: where the file system cannot link,
// the backup copies the whole install, so it does not start before the
// checks: a sync the preflight refuses copies nothing.
func TestNoCopyBeforeChecksWithoutLinks(t *testing.T) {
	s := newServer(t, defaultConf)
	dir := t.TempDir()
	mustSync(t, s, dir, yes)
	s.write("linux", "lib/libtlpp.so", "new release")
	p := filepath.Join(dir, "lib", "libtlpp.so")
	if err := os.Chmod(p, 0o444); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(p, 0o644) })
	var copies atomic.Int32
	smartclient.SetFaultHook(t, func(op, name string) error {
		switch op {
		case "link":
			return &fs.PathError{Op: "link", Path: name, Err: syscall.EPERM}
		case "copy":
			copies.Add(1)
		}
		return nil
	})
	before := tree(t, dir)
	if _, err := sync1(t, s, dir, nil); !errors.Is(err, smartclient.ErrPreflight) {
		t.Fatalf("got %v; want the preflight's refusal", err)
	}
	if n := copies.Load(); n != 0 {
		t.Errorf("%d files copied into a backup before the checks", n)
	}
	sameTree(t, tree(t, dir), before, "after preflight")
	noLeftovers(t, dir)
}

// TestRestoreWithoutLinks: where the file system cannot link, the backup
// is a copy, and a restore from it copies the files back.
func TestRestoreWithoutLinks(t *testing.T) {
	s := newServer(t, defaultConf)
	dir := t.TempDir()
	mustSync(t, s, dir, yes)
	v1 := tree(t, dir)
	s.write("linux", "lib/libtlpp.so", "release 2")
	smartclient.SetFaultHook(t, func(op, name string) error {
		if op == "link" {
			return &fs.PathError{Op: "link", Path: name, Err: syscall.EPERM}
		}
		return nil
	})
	mustSync(t, s, dir, nil)
	if code, out, errOut := runCLI(t, "restore", "--dir", dir); code != cli.ExitOK {
		t.Fatalf("restore: exit %d, %s %s", code, out, errOut)
	}
	sameTree(t, tree(t, dir), v1, "after restore")
}

// upgradeStep is the post-install step of the test server's releases: a
// shell script, or on Windows a batch file.
var upgradeStep = "tools/upgrade.sh"

func init() {
	if runtime.GOOS == "windows" {
		upgradeStep = "tools/upgrade.cmd"
	}
}

// TestPostInstall: the release's post-install program runs after the
// switch; a failure or a timeout rolls the install back, and the reason,
// with the program's last output, reaches the user and the server.
func TestPostInstall(t *testing.T) {
	tests := []struct {
		name   string
		script string
		ok     bool
		want   []string
	}{
		{"success", "#!/bin/sh\necho upgrading\necho done > data-upgraded.txt\n", true, nil},
		{"failure", "#!/bin/sh\necho migrating tables\necho 'ERROR: database is locked' >&2\nexit 3\n", false,
			[]string{upgradeStep + ": exit status 3", "ERROR: database is locked"}},
		{"timeout", "#!/bin/sh\necho started\nsleep 30\n", false, []string{"did not finish within 1s", "started"}},
		// A step that leaves a child behind: the child is ended with
		// the step, before the rollback, and writes nothing after it.
		{"timeout leaves a child", "#!/bin/sh\n(sleep 2; echo late > post-late.txt) &\necho started\nsleep 30\n", false,
			[]string{"did not finish within 1s", "started"}},
		{"failure leaves a child", "#!/bin/sh\n(sleep 2; echo late > post-late.txt) &\necho giving up\nexit 4\n", false,
			[]string{upgradeStep + ": exit status 4", "giving up"}},
	}
	done := "done\n"
	if runtime.GOOS == "windows" {
		// The same steps as batch files; the test binary sleeps for
		// them (see smartclient.HelperCommand).
		h := smartclient.HelperCommand(t)
		helper := `"` + h[0] + `" ` + h[1]
		for i, script := range []string{
			"echo upgrading\r\necho done> data-upgraded.txt",
			"echo migrating tables\r\necho ERROR: database is locked 1>&2\r\nexit /b 3",
			"echo started\r\n" + helper + " sleep 30s",
			"start \"\" /b " + helper + " sleep 2s append post-late.txt late\r\necho started\r\n" + helper + " sleep 30s",
			"start \"\" /b " + helper + " sleep 2s append post-late.txt late\r\necho giving up\r\nexit /b 4",
		} {
			tests[i].script = "@echo off\r\n" + script + "\r\n"
		}
		done = "done\r\n"
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, defaultConf)
			dir := t.TempDir()
			mustSync(t, s, dir, yes)
			before := tree(t, dir)
			s.write("linux", upgradeStep, tc.script)
			s.makeExecutable("linux", upgradeStep)
			s.write("linux", "lib/libtlpp.so", "release 2")
			conf := defaultConf
			conf.post, conf.postMax = upgradeStep, 1
			s.start(conf)
			code, out, errOut := runCLI(t, "sync", "--server", s.addr, "--dir", dir, "--os", "linux")
			if tc.ok {
				if code != cli.ExitOK {
					t.Fatalf("exit %d: %s %s", code, out, errOut)
				}
				if b, err := os.ReadFile(filepath.Join(dir, "data-upgraded.txt")); err != nil || string(b) != done {
					t.Errorf("post-install did not run: %q, %v", b, err)
				}
				return
			}
			if code != cli.ExitFailed || !strings.Contains(errOut, "rolled back") {
				t.Fatalf("exit %d, %q; want 1 and a rollback", code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q lacks %q", errOut, w)
				}
				s.log.waitFor(t, w)
			}
			sameTree(t, tree(t, dir), before, "after the failed post-install step")
			noLeftovers(t, dir)
			if strings.Contains(tc.script, "post-late.txt") {
				time.Sleep(3 * time.Second) // past the child's 2 s
				if _, err := os.Stat(filepath.Join(dir, "post-late.txt")); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("a child of the post-install step wrote into the install after the rollback: %v", err)
				}
				sameTree(t, tree(t, dir), before, "3 s after the rollback")
			}
		})
	}
}

// TestPlantedLinksAreNeverFollowed: a symbolic link planted where the
// client writes is not followed, even to a place inside the install.
func TestPlantedLinksAreNeverFollowed(t *testing.T) {
	testtree.NeedSymlinks(t)
	s := newServer(t, defaultConf)
	tests := []struct {
		name  string
		plant func(t *testing.T, dir string)
		want  string // "" = the sync succeeds
	}{
		{"client folder", func(t *testing.T, dir string) {
			if err := os.RemoveAll(filepath.Join(dir, ".smartclient")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("lib", filepath.Join(dir, ".smartclient")); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"staging folder", func(t *testing.T, dir string) {
			if err := os.Symlink("../lib", filepath.Join(dir, ".smartclient", "staging")); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"install subfolder", func(t *testing.T, dir string) {
			if err := os.Rename(filepath.Join(dir, "lib"), filepath.Join(dir, "lib.real")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("lib.real", filepath.Join(dir, "lib")); err != nil {
				t.Fatal(err)
			}
		}, "a folder on its path in the install is a symbolic link"},
		{"backup folder", func(t *testing.T, dir string) {
			if err := os.Symlink("lib", filepath.Join(dir, "bkp_remote.001")); err != nil {
				t.Fatal(err)
			}
		}, "bkp_remote.001 is not a folder"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			mustSync(t, s, dir, yes)
			tc.plant(t, dir)
			s.write("linux", "lib/libtlpp.so", "update for "+tc.name)
			before := tree(t, dir)
			res, err := sync1(t, s, dir, yes) // without its state, the client is a new install
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %+v, %v; want an error saying %q", res, err, tc.want)
				}
				sameTree(t, tree(t, dir), before, "after the refusal")
				return
			}
			if err != nil {
				t.Fatalf("sync: %v", err)
			}
			if fi, err := os.Lstat(filepath.Join(dir, ".smartclient")); err != nil || !fi.IsDir() {
				t.Errorf(".smartclient is not a real folder: %v, %v", fi, err)
			}
			sameTree(t, tree(t, dir), tree(t, s.folders["linux"]), "after the sync")
		})
	}
}

// TestStagingWriteFaults: a full disk or an I/O error at a byte offset of
// a staged file fails the sync with the file and the reason in the
// message, and leaves the install as it was.
func TestStagingWriteFaults(t *testing.T) {
	tests := []struct {
		name string
		file string
		at   int64
		err  error
		want string
		size int // of lib/big.so
	}{
		{"disk full inside a large file", "lib/big.so", 300_000, syscall.ENOSPC, "no space left on device", 1 << 20},
		{"I/O error at the start of a file", "smartclient", 0, syscall.EIO, "input/output error", 1 << 20},
		// The server is still sending when the client stops: more
		// than the socket buffers hold is left of the stream.
		{"disk full early in a file the server is still sending", "lib/big.so", 1 << 20, syscall.ENOSPC, "no space left on device", 24 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, defaultConf)
			dir := t.TempDir()
			mustSync(t, s, dir, yes)
			big := make([]byte, tc.size)
			rand.NewChaCha8([32]byte{2}).Read(big)
			s.write("linux", "lib/big.so", string(big))
			s.write("linux", "smartclient", "new binary")
			before := tree(t, dir)
			restore := smartclient.SetWriteFault(func(name string, off int64, n int) (int, error) {
				if strings.HasSuffix(name, "/"+tc.file) && off <= tc.at && tc.at < off+int64(n) {
					return int(tc.at - off), tc.err
				}
				return 0, nil
			})
			code, _, errOut := runCLI(t, "sync", "--server", s.addr, "--dir", dir, "--os", "linux")
			restore()
			if code != cli.ExitFailed || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, tc.file) {
				t.Fatalf("exit %d, %q; want 1 naming %s and %q", code, errOut, tc.file, tc.want)
			}
			sameTree(t, tree(t, dir), before, "after the fault")
			noLeftovers(t, dir)
			// The administrator hears of it: the report reaches the
			// server although the transfer was cut short.
			s.log.waitFor(t, "outcome=failed")
			if !strings.Contains(s.log.String(), tc.want) {
				t.Errorf("the server's log does not give the reason %q:\n%s", tc.want, s.log.String())
			}
			mustSync(t, s, dir, nil)
			sameTree(t, tree(t, dir), tree(t, s.folders["linux"]), "after the retry")
		})
	}
}

// TestRunStaysAfterATransferCutShort: 'run' after a transfer that a full
// disk cut short reports on a session of its own, and that session stays
// open for the server's notices, as the sync's own would have.
func TestRunStaysAfterATransferCutShort(t *testing.T) {
	s := newServer(t, defaultConf)
	dir := t.TempDir()
	mustSync(t, s, dir, yes)
	big := make([]byte, 24<<20)
	rand.NewChaCha8([32]byte{3}).Read(big)
	s.write("linux", "lib/big.so", string(big))
	restore := smartclient.SetWriteFault(func(name string, off int64, n int) (int, error) {
		if strings.HasSuffix(name, "/lib/big.so") && off <= 1<<20 && 1<<20 < off+int64(n) {
			return int(1<<20 - off), syscall.ENOSPC
		}
		return 0, nil
	})
	code, _, errOut := runCLI(t, "run", "--server", s.addr, "--dir", dir, "--os", "linux", "--", "true")
	restore()
	if !strings.Contains(errOut, "no space left on device") {
		t.Fatalf("exit %d, %q; want the full disk told", code, errOut)
	}
	s.log.waitFor(t, "outcome=stayed")
	if !strings.Contains(s.log.String(), `reason="staging lib/big.so`) {
		t.Errorf("the server's log does not give the reason:\n%s", s.log.String())
	}
}

// TestMacBundleLinks: a framework's relative symbolic links sync as links,
// a second sync is a no-op, a changed link is replaced, and backups and
// restore keep them.
func TestMacBundleLinks(t *testing.T) {
	testtree.NeedSymlinks(t)
	s := newServer(t, defaultConf)
	dir := t.TempDir()
	darwin := func(o *smartclient.Options) { o.OS, o.Yes = "darwin", true }
	mustSync(t, s, dir, darwin)
	fw := "smartclient.app/Contents/Frameworks/TotvsCore.framework"
	for link, target := range map[string]string{fw + "/TotvsCore": "Versions/Current/TotvsCore", fw + "/Versions/Current": "A"} {
		if got, err := os.Readlink(filepath.Join(dir, filepath.FromSlash(link))); err != nil || got != target {
			t.Fatalf("%s: %q, %v; want a link to %s", link, got, err, target)
		}
	}
	sameTree(t, tree(t, dir), tree(t, s.folders["darwin"]), "bundle")
	v1 := tree(t, dir)
	if res := mustSync(t, s, dir, darwin); res.Fetched != 0 || res.Outcome != syncproto.OutcomeUpToDate {
		t.Fatalf("second sync: %+v", res)
	}
	// A new framework version: Current now points at B.
	s.write("darwin", fw+"/Versions/B/TotvsCore", "core B")
	s.write("darwin", fw+"/Versions/B/Resources/Info.plist", "<plist/>")
	cur := filepath.Join(s.folders["darwin"], filepath.FromSlash(fw+"/Versions/Current"))
	s.change("darwin", func() {
		if err := os.Remove(cur); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("B", cur); err != nil {
			t.Fatal(err)
		}
	})
	res := mustSync(t, s, dir, darwin)
	if res.Fetched != 2 {
		t.Errorf("fetched %d, want 2 (links are not downloaded)", res.Fetched)
	}
	sameTree(t, tree(t, dir), tree(t, s.folders["darwin"]), "after the link changed")
	if b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(fw+"/TotvsCore"))); err != nil || string(b) != "core B" {
		t.Errorf("through the links: %q, %v", b, err)
	}
	sameTree(t, tree(t, filepath.Join(dir, "bkp_remote.001")), v1, "backup with links")
	if code, out, errOut := runCLI(t, "restore", "--dir", dir); code != cli.ExitOK {
		t.Fatalf("restore: %d %s %s", code, out, errOut)
	}
	sameTree(t, tree(t, dir), v1, "after restore")

	// A release that drops a link and turns another into a real folder.
	mustSync(t, s, dir, darwin)
	fwDir := filepath.Join(s.folders["darwin"], filepath.FromSlash(fw))
	s.change("darwin", func() {
		for _, p := range []string{"TotvsCore", "Resources", "Versions/Current"} {
			if err := os.Remove(filepath.Join(fwDir, filepath.FromSlash(p))); err != nil {
				t.Fatal(err)
			}
		}
	})
	s.write("darwin", fw+"/Versions/Current/TotvsCore", "core B")
	res = mustSync(t, s, dir, darwin)
	if res.Removed != 3 {
		t.Errorf("removed %d, want the 3 links", res.Removed)
	}
	sameTree(t, tree(t, dir), tree(t, s.folders["darwin"]), "after links were dropped and one became a folder")
}

// TestRestoreLeavesUserFilesAlone: restore puts back what the client
// installed, never the user's files or a preserved INI the user edited,
// and never writes through a planted link.
// TestRestoredINIIsACopy: restore puts an INI file of the client's back
// as a copy of the backup's, as the backup copied it: an edit of the
// restored file in place leaves the backup as it was.
func TestRestoredINIIsACopy(t *testing.T) {
	s := newServer(t, defaultConf)
	dir := t.TempDir()
	s.write("linux", "config/app.ini", "[db]\nrelease=1\n")
	mustSync(t, s, dir, yes)
	s.write("linux", "config/app.ini", "[db]\nrelease=2\n")
	mustSync(t, s, dir, nil) // bkp_remote.001 holds release 1
	if code, out, errOut := runCLI(t, "restore", "--dir", dir); code != cli.ExitOK {
		t.Fatalf("restore: %d %s %s", code, out, errOut)
	}
	restored := filepath.Join(dir, "config", "app.ini")
	kept := filepath.Join(dir, "bkp_remote.001", "config", "app.ini")
	if b, _ := os.ReadFile(restored); string(b) != "[db]\nrelease=1\n" {
		t.Fatalf("restored app.ini: %q", b)
	}
	f, err := os.OpenFile(restored, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("[db]\nrelease=X\n"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, name := range []string{kept, filepath.Join(dir, "bkp_remote.002", "config", "app.ini")} {
		if b, err := os.ReadFile(name); err != nil || strings.Contains(string(b), "release=X") {
			t.Errorf("%s: %q, %v after an edit of the restored file", name, b, err)
		}
	}
}

func TestRestoreLeavesUserFilesAlone(t *testing.T) {
	testtree.NeedSymlinks(t)
	s := newServer(t, defaultConf)
	dir := t.TempDir()
	mustSync(t, s, dir, yes)
	notes := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notes, []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.write("linux", "lib/libtlpp.so", "release 2")
	mustSync(t, s, dir, nil) // bkp_remote.001 holds release 1 and notes v1
	ini := filepath.Join(dir, "smartclient.ini")
	for p, c := range map[string]string{notes: "v2", ini: "[tcp]\nserver=new-server\n"} {
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if code, out, errOut := runCLI(t, "restore", "--dir", dir); code != cli.ExitOK {
		t.Fatalf("restore: %d %s %s", code, out, errOut)
	}
	for p, want := range map[string]string{notes: "v2", ini: "[tcp]\nserver=new-server\n"} {
		if b, _ := os.ReadFile(p); string(b) != want {
			t.Errorf("%s: %q after restore, want the user's %q", filepath.Base(p), b, want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "lib", "libtlpp.so")); strings.Contains(string(b), "release 2") {
		t.Error("restore did not put back the client's own file")
	}

	t.Run("planted link", func(t *testing.T) {
		mustSync(t, s, dir, nil)
		lib := filepath.Join(dir, "lib")
		if err := os.Rename(lib, lib+".real"); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("lib.real", lib); err != nil {
			t.Fatal(err)
		}
		before := tree(t, dir)
		code, _, errOut := runCLI(t, "restore", "--dir", dir)
		if code != cli.ExitFailed || !strings.Contains(errOut, "symbolic link") {
			t.Fatalf("exit %d, %q; want 1 and the link named", code, errOut)
		}
		sameTree(t, tree(t, dir), before, "after the refused restore")
	})
}

// TestNoopCheck: a client whose files are as it left them learns that it
// is current in one small round trip and writes nothing but the time of
// the check; anything changed on either side brings the manifest back.
func TestNoopCheck(t *testing.T) {
	s := newServer(t, defaultConf)
	dir := t.TempDir()
	mustSync(t, s, dir, yes)
	statePath := filepath.Join(dir, ".smartclient", "state.bin")
	before, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}

	res := mustSync(t, s, dir, nil)
	if res.Outcome != syncproto.OutcomeUpToDate || res.Fetched != 0 {
		t.Fatalf("got %+v; want up to date", res)
	}
	// Welcome, UpToDate and ReportAck: no manifest. The hello names the
	// install folder, as long as it is (a Windows temporary folder is
	// long).
	abs, _ := filepath.Abs(dir)
	if res.Received > 200 || res.Sent > 200+int64(len(abs)) {
		t.Errorf("no-op check moved %d bytes in and %d out; want under 200 in and 200 + the folder's %d out", res.Received, res.Sent, len(abs))
	}
	if after, _ := os.ReadFile(statePath); !bytes.Equal(after, before) {
		t.Error("a no-op check rewrote the state")
	}
	st, err := smartclient.Status(context.Background(), dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if st.LastOutcome != "up-to-date" || time.Since(st.LastSync) > time.Minute {
		t.Errorf("status after the check: %q at %v", st.LastOutcome, st.LastSync)
	}
	if res := mustSync(t, s, dir, func(o *smartclient.Options) { o.CheckOnly = true }); res.Outcome != syncproto.OutcomeChecked || res.Fetched != 0 || res.Received > 200 {
		t.Errorf("--check of a current install: %+v", res)
	}

	tests := []struct {
		name   string
		change func(t *testing.T)
		fetch  int
	}{
		{"client file retimed", func(t *testing.T) { bump(t, filepath.Join(dir, "lib", "libsmartclient.so")) }, 1},
		{"preserved file deleted", func(t *testing.T) {
			if err := os.Remove(filepath.Join(dir, "smartclient.ini")); err != nil {
				t.Fatal(err)
			}
		}, 1},
		{"preserved file edited: still current", func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, "smartclient.ini"), []byte("[tcp]\nserver=mine\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, 0},
		{"server file changed", func(t *testing.T) { s.write("linux", "lib/libtlpp.so", "tlpp 2") }, 1},
		{"server file retimed", func(t *testing.T) {
			s.change("linux", func() { bump(t, filepath.Join(s.folders["linux"], "smartclient")) })
		}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.change(t)
			res := mustSync(t, s, dir, nil)
			if res.Fetched != tc.fetch {
				t.Fatalf("fetched %d, want %d: %+v", res.Fetched, tc.fetch, res)
			}
			again := mustSync(t, s, dir, nil)
			if again.Outcome != syncproto.OutcomeUpToDate || again.Received > 200 {
				t.Errorf("the sync after did not find the install current in one round trip: %+v", again)
			}
		})
	}
}

// TestDeltas: a large file changed in place or by an insert moves as the
// chunks the client lacks; the rest is copied from the installed version,
// and the result is checked whole like any download.
func TestDeltas(t *testing.T) {
	s := newServer(t, defaultConf)
	rng := rand.NewChaCha8([32]byte{42})
	big := make([]byte, 3<<20)
	rng.Read(big)
	small := make([]byte, 200<<10)
	rng.Read(small)
	s.write("linux", "data/pack.pak", string(big))
	s.write("linux", "lib/libsmall.so", string(small))
	dir := t.TempDir()
	first := mustSync(t, s, dir, yes)
	if first.Copied != 0 {
		t.Fatalf("a fresh install copied %d bytes from nowhere", first.Copied)
	}
	lists := func() []string {
		entries, _ := os.ReadDir(filepath.Join(dir, ".smartclient", "chunks"))
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	if l := lists(); len(l) != 1 {
		t.Fatalf("kept chunk lists after the first sync: %v, want the large file's", l)
	}

	edit := func(b []byte, at int, insert bool) []byte {
		patch := make([]byte, 4096)
		rng.Read(patch)
		if insert {
			return slices.Concat(b[:at], patch, b[at:])
		}
		out := slices.Clone(b)
		out = slices.Replace(out, at, at+len(patch), patch...)
		return out
	}
	tests := []struct {
		name     string
		path     string
		content  []byte
		maxWire  int64
		minCopie int64
	}{
		{"overwrite in a large file", "data/pack.pak", edit(big, len(big)/2, false), 200 << 10, int64(len(big)) - 200<<10},
		{"insert in a large file", "data/pack.pak", edit(big, len(big)/3, true), 200 << 10, int64(len(big)) - 200<<10},
		{"overwrite in a small file", "lib/libsmall.so", edit(small, 1000, false), 32 << 10, int64(len(small)) - 32<<10},
		{"insert at the start", "lib/libsmall.so", edit(small, 0, true), 32 << 10, int64(len(small)) - 32<<10},
		// A small file goes as a block delta: a cut shifts the rest,
		// whose blocks are found at their new offsets.
		{"cut in a small file", "lib/libsmall.so", slices.Delete(edit(small, 0, true), 50_000, 53_000), 32 << 10, int64(len(small)) - 32<<10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s.write("linux", tc.path, string(tc.content))
			res := mustSync(t, s, dir, nil)
			if res.Fetched != 1 || res.WireBytes > tc.maxWire || res.Copied < tc.minCopie {
				t.Errorf("fetched %d, %d bytes of file data on the wire (max %d), %d copied (min %d)",
					res.Fetched, res.WireBytes, tc.maxWire, res.Copied, tc.minCopie)
			}
			sameTree(t, tree(t, dir), tree(t, s.folders["linux"]), "after the delta")
			if l := lists(); len(l) != 1 {
				t.Errorf("kept chunk lists: %v, want only the installed large file's", l)
			}
			if tc.path == "data/pack.pak" {
				big = tc.content
			} else {
				small = tc.content
			}
		})
	}

	t.Run("damaged kept list", func(t *testing.T) {
		l := lists()
		if len(l) != 1 {
			t.Fatalf("kept lists %v", l)
		}
		if err := os.WriteFile(filepath.Join(dir, ".smartclient", "chunks", l[0]), []byte("garbage"), 0o644); err != nil {
			t.Fatal(err)
		}
		s.write("linux", "data/pack.pak", string(edit(big, 12345, false)))
		res := mustSync(t, s, dir, nil)
		if res.WireBytes > 200<<10 || res.Copied == 0 {
			t.Errorf("with a damaged list: %d bytes on the wire, %d copied; want a delta from the file itself", res.WireBytes, res.Copied)
		}
		sameTree(t, tree(t, dir), tree(t, s.folders["linux"]), "after the delta")
	})
	t.Run("base edited by the user", func(t *testing.T) {
		p := filepath.Join(dir, "data", "pack.pak")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b = slices.Replace(b, 100, 117, []byte("the user was here")...)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		res := mustSync(t, s, dir, nil)
		if res.Fetched != 1 || res.Copied == 0 {
			t.Errorf("user-edited base: %+v; want the server's file, assembled from the rest of the user's", res)
		}
		sameTree(t, tree(t, dir), tree(t, s.folders["linux"]), "after repair")
	})
}

// TestLegacyState: an install and a backup that an earlier build left
// with its JSON state.json work as before: status and restore read them,
// and a sync finds the install current and rewrites its state as
// state.bin.
func TestLegacyState(t *testing.T) {
	conf := serverConf{enable: true, build: "7.00.240101A", preserve: "smartclient.ini"}
	s := newServer(t, conf)
	dir := t.TempDir()
	mustSync(t, s, dir, yes)
	v1 := tree(t, dir)
	conf.build = "7.00.240201A"
	s.start(conf)
	s.write("linux", "lib/libtlpp.so", "release 2")
	mustSync(t, s, dir, yes)
	v2 := tree(t, dir)
	downgrade := func(dir string) {
		t.Helper()
		if err := smartclient.DowngradeState(dir); err != nil {
			t.Fatal(err)
		}
	}
	downgrade(dir)
	downgrade(filepath.Join(dir, "bkp_remote.001"))
	stateIs := func(dir, want, what string) {
		t.Helper()
		_, errBin := os.Stat(filepath.Join(dir, ".smartclient", "state.bin"))
		_, errJSON := os.Stat(filepath.Join(dir, ".smartclient", "state.json"))
		got := map[[2]bool]string{{true, false}: "bin", {false, true}: "json", {true, true}: "both", {false, false}: "none"}[[2]bool{errBin == nil, errJSON == nil}]
		if got != want {
			t.Errorf("%s: state files: %s, want %s", what, got, want)
		}
	}
	status := func(want ...string) {
		t.Helper()
		code, out, errOut := runCLI(t, "status", "--dir", dir)
		if code != cli.ExitOK {
			t.Fatalf("status: exit %d: %s", code, errOut)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("status lacks %q:\n%s", w, out)
			}
		}
	}

	status("Installed build: 7.00.240201A", "bkp_remote.001  build 7.00.240101A")
	stateIs(dir, "json", "after status")

	res := mustSync(t, s, dir, nil)
	if res.Outcome != syncproto.OutcomeUpToDate || res.Fetched != 0 || res.Received > 200 {
		t.Errorf("sync of a current install with a legacy state: %+v; want up to date in one round trip", res)
	}
	stateIs(dir, "bin", "after a sync")
	status("Installed build: 7.00.240201A", "bkp_remote.001  build 7.00.240101A")

	// A restore from a legacy backup onto a legacy install; the replaced
	// install's backup keeps its state as it was.
	downgrade(dir)
	code, out, errOut := runCLI(t, "restore", "--dir", dir, "--backup", "1")
	if code != cli.ExitOK || !strings.Contains(out, "Restored bkp_remote.001 (build 7.00.240101A)") {
		t.Fatalf("restore: exit %d: %s %s", code, out, errOut)
	}
	sameTree(t, tree(t, dir), v1, "after restoring bkp_remote.001")
	stateIs(dir, "bin", "after restore")
	stateIs(filepath.Join(dir, "bkp_remote.002"), "json", "the replaced install's backup")
	status("Installed build: 7.00.240101A", "bkp_remote.002  build 7.00.240201A")
	noLeftovers(t, dir)

	mustSync(t, s, dir, nil)
	sameTree(t, tree(t, dir), v2, "after syncing again")
	stateIs(dir, "bin", "after syncing again")
}

// TestSyncNewContentSameSizeAndMtime: a release that changes a file's
// bytes but neither its size nor its mtime (a build that stamps every
// file with one time, copied by a tool that keeps times) still updates
// the file: the client knows from its state that the installed content
// is not the manifest's.
func TestSyncNewContentSameSizeAndMtime(t *testing.T) {
	s := newServer(t, defaultConf)
	s.write("linux", "lib/version.txt", "version 7.00.240501A")
	dir := t.TempDir()
	mustSync(t, s, dir, yes)

	// The next release, written anew (another inode, so the server
	// hashes it again) with the same size and mtime.
	p := filepath.Join(s.folders["linux"], "lib", "version.txt")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	const next = "version 7.00.240502A"
	if err := os.WriteFile(p+".new", []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p+".new", fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	// The server need not see the rename at once (see change).
	s.change("linux", func() {
		if err := os.Rename(p+".new", p); err != nil {
			t.Fatal(err)
		}
	})
	for try := range 2 {
		res := mustSync(t, s, dir, nil)
		if got, err := os.ReadFile(filepath.Join(dir, "lib", "version.txt")); err != nil || string(got) != next {
			t.Errorf("sync %d (%v, fetched %d): lib/version.txt is %q, %v; want %q", try+1, res.Outcome, res.Fetched, got, err, next)
		}
	}
	// Whatever is installed, the state may record only its true hash.
	st, err := smartclient.ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "lib", "version.txt"))
	if sum := blake3.Sum256(got); st.Files["lib/version.txt"].Hash != hex.EncodeToString(sum[:]) {
		t.Errorf("the state records hash %s for lib/version.txt, whose content %q has %x", st.Files["lib/version.txt"].Hash, got, sum)
	}
}

// TestSyncDeltaRefsWithinSessionLimit: however many chunks its bases
// have, a client names at most syncproto.MaxSessionChunkRefs of them in
// one session (syncproto's doc, "Deltas"), and fetches the files it has
// no budget left for whole, so that the server never refuses the session.
//
// The bases are five sparse files of 4 GiB, each with a kept chunk list
// of 2^18 chunks of the smallest size for its parameter (16 KiB), which
// the client uses without reading the file: 5 * 2^18 references in all.
// Real bases get there with tens of GB of changed files, or some 25,000
// changed files of 100 KB.
func TestSyncDeltaRefsWithinSessionLimit(t *testing.T) {
	const (
		parts    = 5
		baseSize = 4 << 30
		bits     = 16 // cdc.BitsFor(baseSize)
		chunk    = 16 << 10
	)
	if cdc.BitsFor(baseSize) != bits {
		t.Fatalf("cdc.BitsFor(%d) = %d", baseSize, cdc.BitsFor(baseSize))
	}
	s := newServer(t, defaultConf)
	rng := rand.NewChaCha8([32]byte{5})
	content := func() string {
		b := make([]byte, 8<<10)
		rng.Read(b)
		return string(b)
	}
	name := func(i int) string { return fmt.Sprintf("data/part%d.bin", i) }
	for i := range parts {
		s.write("linux", name(i), content())
	}
	dir := t.TempDir()
	mustSync(t, s, dir, yes)

	st, err := smartclient.ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, ".smartclient", "chunks"), 0o755); err != nil {
		t.Fatal(err)
	}
	chunks := make([]cdc.Chunk, baseSize/chunk)
	for i := range parts {
		p := filepath.Join(dir, filepath.FromSlash(name(i)))
		if err := os.Truncate(p, baseSize); err != nil {
			t.Skipf("no sparse files of 4 GiB here: %v", err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		hash := fmt.Sprintf("%064x", i+1)
		k := st.Files[name(i)]
		k.Size, k.MtimeNs, k.Hash = fi.Size(), fi.ModTime().UnixNano(), hash
		st.Files[name(i)] = k
		for c := range chunks {
			chunks[c] = cdc.Chunk{Off: int64(c) * chunk, Len: chunk}
			binary.BigEndian.PutUint32(chunks[c].Hash[:], uint32(c))
			chunks[c].Hash[4] = byte(i)
		}
		list := filepath.Join(dir, ".smartclient", "chunks", fmt.Sprintf("%s-%d", hash, bits))
		if err := os.WriteFile(list, cdc.AppendList(nil, bits, chunks), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Written back as the JSON state of earlier builds, which the client
	// still reads.
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".smartclient", "state.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, ".smartclient", "state.bin")); err != nil {
		t.Fatal(err)
	}
	if parts*len(chunks) <= syncproto.MaxSessionChunkRefs {
		t.Fatalf("%d references do not pass the limit", parts*len(chunks))
	}

	for i := range parts {
		s.write("linux", name(i), content())
	}
	res := mustSync(t, s, dir, nil)
	if res.Fetched != parts {
		t.Errorf("fetched %d files, want %d", res.Fetched, parts)
	}
	sameTree(t, tree(t, dir), tree(t, s.folders["linux"]), "after the sync")
}

// TestYesAfterTheServerWentAway: the user says yes to a full update, but
// by then the server has gone; the sync fails cleanly. The client reaches
// the server through a port the test holds (see portHolder), so that no
// other test's server can be given that port once this one has stopped.
func TestYesAfterTheServerWentAway(t *testing.T) {
	s := newServer(t, serverConf{enable: true, build: buildNew, minBuild: buildNew})
	p := newPortHolder(t, s.addr)
	dir := t.TempDir()
	_, err := sync1(t, s, dir, func(o *smartclient.Options) {
		o.Server = p.addr
		o.Confirm = func(string) (bool, error) { s.stop(); p.drop(); return true, nil }
	})
	// The reset reaches the client while it connects, sends its hello or
	// waits for the welcome, as it happens; each says so, in the words of
	// the system (WSAECONNRESET on Windows).
	if !smartclient.ConnectionLost(err) {
		t.Fatalf("got %v, want the connection reset", err)
	}
	onlyIDLeft(t, dir, "a failed first sync")
}

// portHolder listens on a port of its own and forwards each connection to
// target, until drop: from then on it resets every connection at once,
// as a host whose server has stopped, while it keeps the port.
type portHolder struct {
	addr    string
	target  string
	dropped chan struct{}
	once    sync.Once
}

func newPortHolder(t *testing.T, target string) *portHolder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &portHolder{addr: ln.Addr().String(), target: target, dropped: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.serve(c) })
		}
	})
	return p
}

// drop makes the holder reset every connection from now on.
func (p *portHolder) drop() { p.once.Do(func() { close(p.dropped) }) }

func (p *portHolder) serve(c net.Conn) {
	defer c.Close()
	select {
	case <-p.dropped:
		c.(*net.TCPConn).SetLinger(0)
		return
	default:
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.(*net.TCPConn).SetLinger(0)
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(c, up); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	for range 2 {
		select {
		case <-done:
		case <-p.dropped:
			return
		}
	}
}

// emptyFolders lists the empty folders under dir but the client's
// bookkeeping and backups, as slash paths.
func emptyFolders(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == ".smartclient" || strings.HasPrefix(rel, "bkp_remote.") {
			return fs.SkipDir
		}
		if entries, err := os.ReadDir(p); err != nil || len(entries) > 0 || rel == "." {
			return err
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEmptyFolders: the empty folders of a release (a macOS bundle's
// PlugIns, and one nested in another that holds nothing else) are made
// on the client; the sync after is a no-op the quick check answers, and
// `sync --check` says so; one the user removes is made again; the backup
// and restore go on working, and a file in the way stops the sync before
// anything changes.
func TestEmptyFolders(t *testing.T) {
	s := newServer(t, defaultConf)
	dir := t.TempDir()
	darwin := func(o *smartclient.Options) { o.OS, o.Yes = "darwin", true }
	mustSync(t, s, dir, darwin)
	v1 := tree(t, dir)
	empty := []string{"smartclient.app/Contents/PlugIns", "smartclient.app/Contents/Resources/empty/inner"}
	for _, e := range empty {
		// One at a time: the server may scan between two.
		s.change("darwin", func() {
			if err := os.MkdirAll(filepath.Join(s.folders["darwin"], filepath.FromSlash(e)), 0o755); err != nil {
				t.Fatal(err)
			}
		})
	}
	res := mustSync(t, s, dir, darwin)
	if res.Outcome != syncproto.OutcomeUpdated || res.Folders != 2 || res.Fetched != 0 {
		t.Fatalf("sync of a release with 2 new empty folders: %+v", res)
	}
	if got := emptyFolders(t, dir); !slices.Equal(got, empty) {
		t.Fatalf("empty folders in the install: %q, want %q", got, empty)
	}
	sameTree(t, tree(t, dir), tree(t, s.folders["darwin"]), "with empty folders")
	if st, err := smartclient.Status(context.Background(), dir, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	} else if st.Files != len(tree(t, dir)) {
		t.Errorf("status: %d files; want the %d files and links, not the folders", st.Files, len(tree(t, dir)))
	}
	if res.Backup == "" {
		t.Fatal("no backup of the install the folders were added to")
	}
	sameTree(t, tree(t, filepath.Join(dir, res.Backup)), v1, "backup")
	if got := emptyFolders(t, filepath.Join(dir, res.Backup)); len(got) != 0 {
		t.Errorf("the backup of the install before holds the new empty folders %q", got)
	}

	// The next sync is the quick no-op: Welcome, UpToDate, ReportAck.
	res = mustSync(t, s, dir, darwin)
	if res.Outcome != syncproto.OutcomeUpToDate || res.Changes() != 0 || res.Received > 200 {
		t.Fatalf("second sync: %+v; want the quick up to date", res)
	}
	args := []string{"sync", "--check", "-v", "--server", s.addr, "--dir", dir, "--os", "darwin"}
	if code, out, errOut := runCLI(t, args...); code != cli.ExitOK || !strings.Contains(out, "Up to date") {
		t.Fatalf("sync --check: %d %q %q; want 0 and up to date", code, out, errOut)
	}

	// A folder the user removed is made again.
	if err := os.Remove(filepath.Join(dir, filepath.FromSlash(empty[1]))); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, args...)
	if code != cli.ExitUpdateAvailable || !strings.Contains(out, "1 empty folder to make") || !strings.Contains(out, "mkdir "+empty[1]+"\n") {
		t.Fatalf("sync --check after a folder was removed: %d %q %q", code, out, errOut)
	}
	if res := mustSync(t, s, dir, darwin); res.Folders != 1 || res.Fetched != 0 {
		t.Errorf("sync after a folder was removed: %+v", res)
	}
	if got := emptyFolders(t, dir); !slices.Equal(got, empty) {
		t.Fatalf("empty folders after the sync that made one again: %q, want %q", got, empty)
	}

	// Restore puts back the install before the folders came; they are
	// left (the release made them, and they hold nothing), and the next
	// sync is current again.
	if code, out, errOut := runCLI(t, "restore", "--dir", dir, "--backup", "1"); code != cli.ExitOK {
		t.Fatalf("restore: %d %s %s", code, out, errOut)
	}
	sameTree(t, tree(t, dir), v1, "after restore")
	mustSync(t, s, dir, darwin)
	sameTree(t, tree(t, dir), tree(t, s.folders["darwin"]), "synced after restore")
	if got := emptyFolders(t, dir); !slices.Equal(got, empty) {
		t.Fatalf("empty folders after restore and sync: %q, want %q", got, empty)
	}

	// A release that removes the last file of a folder keeps the folder,
	// empty: the client removes the file and leaves the folder.
	lang := "smartclient.app/Contents/Resources/lang"
	s.change("darwin", func() {
		if err := os.Remove(filepath.Join(s.folders["darwin"], filepath.FromSlash(lang), "pt-br.txt")); err != nil {
			t.Fatal(err)
		}
	})
	if res := mustSync(t, s, dir, darwin); res.Removed != 1 {
		t.Errorf("sync of a release that emptied a folder: %+v", res)
	}
	if got, want := emptyFolders(t, dir), append(slices.Clone(empty), lang); !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
		t.Errorf("empty folders after a release emptied one: %q, want %q", got, want)
	}
	if res := mustSync(t, s, dir, darwin); res.Outcome != syncproto.OutcomeUpToDate || res.Received > 200 {
		t.Errorf("the sync after: %+v; want the quick up to date", res)
	}

	// A file where the release has an empty folder stops the sync
	// before anything changes.
	s.change("darwin", func() {
		if err := os.MkdirAll(filepath.Join(s.folders["darwin"], "logs"), 0o755); err != nil {
			t.Fatal(err)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "logs"), []byte("the user's"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := tree(t, dir)
	if _, err := sync1(t, s, dir, darwin); err == nil || !strings.Contains(err.Error(), "logs") || !strings.Contains(err.Error(), "in the way") {
		t.Fatalf("sync with a file where an empty folder goes: %v; want an error naming logs", err)
	}
	sameTree(t, tree(t, dir), before, "after the refused sync")
}
