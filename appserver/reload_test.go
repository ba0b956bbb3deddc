package appserver

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/release"
	"github.com/erpupdate/smartsync/internal/testtree"
	"github.com/erpupdate/smartsync/internal/version"
	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/syncproto"
	"golang.org/x/crypto/bcrypt"
)

const reloadBuild = "7.00.240601A"

// reloadSite is an AppServer.ini beside a linux update folder, as the
// reload tests rewrite it.
type reloadSite struct {
	t      *testing.T
	ini    string // the file
	folder string // the linux update folder
}

func newReloadSite(t *testing.T) *reloadSite {
	t.Helper()
	base := t.TempDir()
	st := &reloadSite{t: t, ini: filepath.Join(base, "AppServer.ini"), folder: filepath.Join(base, "linux")}
	writeTree(t, st.folder, map[string]string{"smartclient": "client v1", "lib/a.so": "aaaa", "SmartClient.ini": "[TCP]\nPort=1234\n"}, oldTime)
	return st
}

// write writes the file: [TCP], then [UPDATE] serving the folder with
// build, then extra (whole sections). The file is written beside and
// renamed into place, as editors do.
func (st *reloadSite) write(build, extra string) {
	st.t.Helper()
	text := fmt.Sprintf("[TCP]\nPort=1234\n\n[UPDATE]\nEnable=1\nPathLinux=%s\nBuild=%s\nMinClientBuild=%s\nPreserve=SmartClient.ini\n\n%s",
		st.folder, build, srvMinBuild, extra)
	tmp := st.ini + ".new"
	writeFile(st.t, tmp, text)
	if err := os.Rename(tmp, st.ini); err != nil {
		st.t.Fatal(err)
	}
}

func (st *reloadSite) load() *Config {
	st.t.Helper()
	cfg, err := LoadConfig(st.ini)
	if err != nil {
		st.t.Fatal(err)
	}
	return cfg
}

// clientSync syncs the linux install folder dir from the server at addr
// with smartclient, as a workstation does.
func clientSync(t *testing.T, addr, dir string) *smartclient.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res, err := smartclient.Sync(ctx, smartclient.Options{Dir: dir, Server: addr, OS: "linux", Yes: true, AllowUnsigned: true,
		Timeout: 10 * time.Second, RetryFor: -1, Host: "ws1", User: "maria"})
	if err != nil {
		t.Fatalf("smartclient.Sync: %v", err)
	}
	return res
}

// waitLog waits for the server's log to hold want.
func waitLog(t *testing.T, logs interface{ String() string }, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), want); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the log does not say %q within 10 s:\n%s", want, logs.String())
		}
	}
}

// TestReloadNewBuild: a new [UPDATE] Build, re-read as SIGHUP has it
// (reloadConfig), is what the next sync reports and installs, with the
// files as they are; a client already on it is then up to date; and the
// log says what changed.
func TestReloadNewBuild(t *testing.T) {
	st := newReloadSite(t)
	st.write(srvBuild, "")
	ts := startServer(t, st.load(), nil, nil)
	install := filepath.Join(t.TempDir(), "ws1")

	if res := clientSync(t, ts.addr, install); res.Outcome != syncproto.OutcomeUpdated || res.Build != srvBuild {
		t.Fatalf("first sync: outcome %v, build %q; want updated to %s", res.Outcome, res.Build, srvBuild)
	}

	st.write(reloadBuild, "")
	reloadConfig(t.Context(), ts.srv.log, ts.srv, st.ini, "SIGHUP")
	want := fmt.Sprintf(`change="[UPDATE] Build: %s -> %s"`, srvBuild, reloadBuild)
	if !strings.Contains(ts.logs.String(), want) {
		t.Fatalf("the log does not say %s:\n%s", want, ts.logs.String())
	}

	res := clientSync(t, ts.addr, install)
	// The files are as they were: nothing is fetched, and the install
	// is recorded as the new build (the next sync says so).
	if res.Outcome == syncproto.OutcomeFailed || res.Build != reloadBuild || res.Installed != srvBuild || res.Fetched != 0 {
		t.Errorf("sync after the reload: outcome %v, build %q, installed before %q, %d files fetched; want build %s over %s with nothing fetched",
			res.Outcome, res.Build, res.Installed, res.Fetched, reloadBuild, srvBuild)
	}
	res = clientSync(t, ts.addr, install)
	if res.Outcome != syncproto.OutcomeUpToDate || res.Installed != reloadBuild {
		t.Errorf("sync of a client on the new build: outcome %v, installed %q; want up to date on %s", res.Outcome, res.Installed, reloadBuild)
	}
	// A new workstation gets the new build at once.
	if res := clientSync(t, ts.addr, filepath.Join(t.TempDir(), "ws2")); res.Build != reloadBuild {
		t.Errorf("a new workstation got build %q, want %s", res.Build, reloadBuild)
	}

	// Re-read unchanged: said so, and nothing else.
	before := len(ts.logs.String())
	reloadConfig(t.Context(), ts.srv.log, ts.srv, st.ini, "SIGHUP")
	if got := ts.logs.String()[before:]; !strings.Contains(got, "configuration re-read: nothing changed") || strings.Contains(got, "configuration changed") {
		t.Errorf("re-reading an unchanged file logged:\n%s", got)
	}
}

// TestReloadBadFileKeepsRunning: a new file with mistakes changes nothing;
// every mistake is logged with file, section and key, and the server
// goes on serving the configuration it had.
func TestReloadBadFileKeepsRunning(t *testing.T) {
	st := newReloadSite(t)
	st.write(srvBuild, "")
	ts := startServer(t, st.load(), nil, nil)
	install := filepath.Join(t.TempDir(), "ws1")
	clientSync(t, ts.addr, install)

	st.write("not-a-build", "[LIMITS]\nMaxConnections=0\n")
	reloadConfig(t.Context(), ts.srv.log, ts.srv, st.ini, "SIGHUP")
	logs := ts.logs.String()
	for _, want := range []string{
		"level=ERROR",
		fmt.Sprintf("file=%s section=UPDATE key=Build", st.ini),
		fmt.Sprintf("file=%s section=LIMITS key=MaxConnections", st.ini),
		"[LIMITS] MaxConnections: \\\"0\\\" is not a number of connections from 1 to 1000000",
		"configuration re-read failed; keeping the running configuration",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log does not say %s:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "configuration changed") {
		t.Errorf("a bad file changed the configuration:\n%s", logs)
	}
	if got := ts.srv.conf().Build.String(); got != srvBuild {
		t.Errorf("build in force %q after a bad file, want %s", got, srvBuild)
	}
	res := clientSync(t, ts.addr, filepath.Join(t.TempDir(), "ws2"))
	if res.Outcome != syncproto.OutcomeUpdated || res.Build != srvBuild {
		t.Errorf("a sync after the bad file: outcome %v, build %q; want updated to %s", res.Outcome, res.Build, srvBuild)
	}

	// A file that is gone is one more such error.
	os.Remove(st.ini)
	reloadConfig(t.Context(), ts.srv.log, ts.srv, st.ini, "file changed")
	waitLog(t, ts.logs, fmt.Sprintf("file=%s section=\"\" key=\"\"", st.ini))
	if res := clientSync(t, ts.addr, install); res.Outcome != syncproto.OutcomeUpToDate {
		t.Errorf("a sync after the file went: outcome %v, want up to date", res.Outcome)
	}
}

// TestReloadFolders: a new update folder is indexed before it is served,
// and one that cannot be indexed refuses the reload, naming its key, with
// the old folder still served.
func TestReloadFolders(t *testing.T) {
	st := newReloadSite(t)
	st.write(srvBuild, "")
	ts := startServer(t, st.load(), nil, nil)
	old := ts.srv.Indexes()["linux"]

	// A link out of the folder: the index refuses the folder.
	bad := filepath.Join(t.TempDir(), "bad")
	writeTree(t, bad, map[string]string{"smartclient": "client v2"}, oldTime)
	testtree.NeedSymlinks(t)
	if err := os.Symlink("/etc/passwd", filepath.Join(bad, "passwd")); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	oldFolder := st.folder
	st.folder = bad
	st.write(reloadBuild, "")
	reloadConfig(t.Context(), ts.srv.log, ts.srv, st.ini, "SIGHUP")
	waitLog(t, ts.logs, fmt.Sprintf("file=%s section=UPDATE key=PathLinux", st.ini))
	waitLog(t, ts.logs, "keeping the running configuration")
	if ix := ts.srv.Indexes()["linux"]; ix != old || ts.srv.conf().Build.String() != srvBuild {
		t.Fatalf("a folder that cannot be indexed was put in force")
	}

	// A good new folder: served at once, with its build.
	good := filepath.Join(t.TempDir(), "good")
	writeTree(t, good, map[string]string{"smartclient": "client v2", "SmartClient.ini": "[TCP]\nPort=1234\n"}, oldTime)
	st.folder = good
	st.write(reloadBuild, "")
	changes, err := ts.srv.Reload(t.Context(), st.load())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[UPDATE] PathLinux: " + oldFolder + " -> " + good, "[UPDATE] Build: " + srvBuild + " -> " + reloadBuild} {
		if !slices.Contains(changes, want) {
			t.Errorf("changes %q lack %q", changes, want)
		}
	}
	install := filepath.Join(t.TempDir(), "ws1")
	clientSync(t, ts.addr, install)
	if b, err := os.ReadFile(filepath.Join(install, "smartclient")); err != nil || string(b) != "client v2" {
		t.Errorf("the client got smartclient %q (%v), want the new folder's", b, err)
	}
	// The old folder's index is closed: its folder is no longer open.
	if _, err := old.Latest().Open("smartclient"); err == nil {
		t.Error("the old folder's index is still open after the reload")
	}
}

// TestReloadSecretsNeverLogged: a changed [MAIL] Password or [ADMIN]
// PasswordHash is said to have changed, never shown, in the changes and
// in the log, nor in the errors of a bad file.
func TestReloadSecretsNeverLogged(t *testing.T) {
	st := newReloadSite(t)
	hash1, _ := bcrypt.GenerateFromPassword([]byte("first password"), bcrypt.MinCost+6)
	hash2, _ := bcrypt.GenerateFromPassword([]byte("second password"), bcrypt.MinCost+6)
	pub, _, _ := ed25519.GenerateKey(nil)
	sections := func(hash []byte, mailPassword string) string {
		return fmt.Sprintf("[ADMIN]\nPasswordHash=%s\n\n[SELFUPDATE]\nPublicKey=%s\n\n[MAIL]\nHost=smtp.example.com\nFrom=appserver@example.com\nUser=appserver\nPassword=%s\n",
			hash, release.FormatPublicKey(pub), mailPassword)
	}
	st.write(srvBuild, sections(hash1, "Mail-Secret-1"))
	ts := startServer(t, st.load(), nil, nil)

	st.write(srvBuild, sections(hash2, "Mail-Secret-2"))
	changes, err := ts.srv.Reload(t.Context(), st.load())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"[ADMIN] PasswordHash: changed", "[MAIL] Password: changed"}; !slices.Equal(changes, want) {
		t.Errorf("changes = %q, want %q", changes, want)
	}
	// A bad file that repeats the secrets.
	st.write(srvBuild, sections(hash2, "Mail-Secret-3")+"Password=Mail-Secret-4\n")
	reloadConfig(t.Context(), ts.srv.log, ts.srv, st.ini, "SIGHUP")
	waitLog(t, ts.logs, "section=MAIL key=Password")
	logs := ts.logs.String()
	for _, secret := range []string{"Mail-Secret-1", "Mail-Secret-2", "Mail-Secret-3", "Mail-Secret-4", string(hash1), string(hash2), "$2a$"} {
		if strings.Contains(logs, secret) || strings.Contains(strings.Join(changes, "\n"), secret) {
			t.Errorf("the log or the changes show the secret %q:\n%s", secret, logs)
		}
	}
	if err := CheckPassword(ts.srv.conf(), "admin", "second password"); err != nil {
		t.Errorf("the new password hash is not in force: %v", err)
	}
}

// TestReloadWatchesTheFile: a change of AppServer.ini on disk, without a
// signal, is re-read once the editor is done; the watch ends with its
// context.
func TestReloadWatchesTheFile(t *testing.T) {
	st := newReloadSite(t)
	st.write(srvBuild, "")
	ts := startServer(t, st.load(), nil, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchConfig(ctx, ts.srv.log, ts.srv, st.ini, nil)
	}()
	// A file beside it changes nothing.
	writeFile(t, filepath.Join(filepath.Dir(st.ini), "other.ini"), "x")
	time.Sleep(2 * reloadDebounce)
	if strings.Contains(ts.logs.String(), "re-reading the configuration") {
		t.Errorf("a change of another file re-read the configuration:\n%s", ts.logs.String())
	}
	st.write(reloadBuild, "[LOG]\nLevel=debug\n")
	waitLog(t, ts.logs, fmt.Sprintf(`change="[UPDATE] Build: %s -> %s"`, srvBuild, reloadBuild))
	waitLog(t, ts.logs, `change="[LOG] Level: info -> debug"`)
	if strings.Count(ts.logs.String(), "re-reading the configuration") != 1 {
		t.Errorf("one save was re-read more than once:\n%s", ts.logs.String())
	}
	if res := clientSync(t, ts.addr, filepath.Join(t.TempDir(), "ws1")); res.Build != reloadBuild {
		t.Errorf("sync after the file changed: build %q, want %s", res.Build, reloadBuild)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("watchConfig did not return after its context ended")
	}
}

// TestReloadRestartOnly: what takes effect only at a restart is logged as
// such and left as it runs, and the rest applied; the log level and the
// caps change at once.
func TestReloadRestartOnly(t *testing.T) {
	st := newReloadSite(t)
	st.write(srvBuild, "")
	logs := &testtree.Buffer{}
	level := new(slog.LevelVar)
	ts := startServer(t, st.load(), func(s *Server) {
		s.log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level}))
		s.proc = &procHooks{level: level}
	}, nil)
	clientSync(t, ts.addr, filepath.Join(t.TempDir(), "ws1")) // Serve has made its limits
	st.write(srvBuild, "[SSL]\nAllowPlaintext=1\n[LIMITS]\nMaxConnections=7\nIdleTimeout=30\n[LOG]\nLevel=warn\n")
	changes, err := ts.srv.Reload(t.Context(), st.load())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"[SSL] AllowPlaintext: 0 -> 1", "[LIMITS] MaxConnections: 4000 -> 7", "[LIMITS] IdleTimeout: 300 -> 30", "[LOG] Level: info -> warn"}
	if !slices.Equal(changes, want) {
		t.Errorf("changes = %q, want %q", changes, want)
	}
	for _, line := range []string{
		`level=WARN msg="configuration changed; takes effect at the next restart" change="[SSL] AllowPlaintext: 0 -> 1"`,
		`level=WARN msg="configuration changed; takes effect at the next restart" change="[LIMITS] IdleTimeout: 300 -> 30"`,
	} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("the log lacks %s:\n%s", line, logs.String())
		}
	}
	cfg := ts.srv.conf()
	if cfg.TLS.AllowPlaintext || cfg.Limits.IdleTimeout != defaultIdleTimeout {
		t.Errorf("restart-only keys were put in force: AllowPlaintext %v, IdleTimeout %v", cfg.TLS.AllowPlaintext, cfg.Limits.IdleTimeout)
	}
	if level.Level() != slog.LevelWarn {
		t.Errorf("log level %v after the reload, want WARN", level.Level())
	}
	ts.srv.mu.Lock()
	l := ts.srv.limits
	ts.srv.mu.Unlock()
	l.mu.Lock()
	caps := l.maxConns
	l.mu.Unlock()
	if caps != 7 {
		t.Errorf("MaxConnections in force %d, want 7", caps)
	}
	// Re-read again: the restart-only change is still said to wait.
	changes, _ = ts.srv.Reload(t.Context(), st.load())
	if !slices.Equal(changes, []string{"[SSL] AllowPlaintext: 0 -> 1", "[LIMITS] IdleTimeout: 300 -> 30"}) {
		t.Errorf("second re-read: changes = %q", changes)
	}
}

// TestReloadAdmission: new transfer limits apply to the sessions that
// come after the reload.
func TestReloadAdmission(t *testing.T) {
	st := newReloadSite(t)
	st.write(srvBuild, "")
	ts := startServer(t, st.load(), nil, nil)
	clientSync(t, ts.addr, filepath.Join(t.TempDir(), "ws1"))
	st.write(srvBuild, "")
	text, _ := os.ReadFile(st.ini)
	writeFile(t, st.ini, strings.Replace(string(text), "[UPDATE]\n", "[UPDATE]\nMaxTransfers=3\nMaxBytesPerSecond=128K\n", 1))
	changes, err := ts.srv.Reload(t.Context(), st.load())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(changes, fmt.Sprintf("[UPDATE] MaxTransfers: %d -> 3", defaultMaxTransfers())) ||
		!slices.Contains(changes, "[UPDATE] MaxBytesPerSecond: 0 -> 128K (131072 bytes/s)") {
		t.Errorf("changes = %q", changes)
	}
	// 128K a second leaves two slots of the least share each.
	if got := ts.srv.AdmissionStats(); got.MaxTransfers != 2 || got.PeakTransfers < 1 {
		t.Errorf("admission after the reload: %+v; want 2 slots, the peak carried over", got)
	}
	clientSync(t, ts.addr, filepath.Join(t.TempDir(), "ws2"))
}

func TestConfigDiffText(t *testing.T) {
	dir := t.TempDir()
	folder := filepath.Join(dir, "linux")
	other := filepath.Join(dir, "linux2")
	os.Mkdir(folder, 0o755)
	os.Mkdir(other, 0o755)
	base := "[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nPathLinux=" + folder + "\nBuild=7.00.240501A\nMinClientBuild=7.00.231101A\nPreserve=a.ini\n"
	parse := func(text string) *Config {
		t.Helper()
		cfg, err := ParseConfig("AppServer.ini", []byte(text), dir)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	for _, tc := range []struct {
		name, edit string
		want       []string
	}{
		{"nothing", base, nil},
		{"build", strings.Replace(base, "Build=7.00.240501A", "Build=7.00.240601A", 1), []string{"[UPDATE] Build: 7.00.240501A -> 7.00.240601A"}},
		{"min build removed", strings.Replace(base, "MinClientBuild=7.00.231101A\n", "", 1), []string{"[UPDATE] MinClientBuild: 7.00.231101A -> (none)"}},
		{"folder", strings.Replace(base, folder, other, 1), []string{"[UPDATE] PathLinux: " + folder + " -> " + other}},
		{"preserve", strings.Replace(base, "Preserve=a.ini", "Preserve=a.ini, conf/b.ini", 1), []string{"[UPDATE] Preserve: a.ini -> a.ini, conf/b.ini"}},
		{"disabled", strings.Replace(base, "Enable=1", "Enable=0", 1), []string{"[UPDATE] Enable: 1 -> 0"}},
		{"bandwidth", base + "MaxClientBytesPerSecond=1M\n", []string{"[UPDATE] MaxClientBytesPerSecond: 0 -> 1M (1048576 bytes/s)"}},
		{"post-install", base + "PostInstall=bin/upgrade\nPostInstallTimeout=600\n", []string{"[UPDATE] PostInstall: (none) -> bin/upgrade", "[UPDATE] PostInstallTimeout: 120 -> 600"}},
		{"port", strings.Replace(base, "Port=1234", "Port=1235", 1), []string{"[TCP] Port: 1234 -> 1235 (takes effect at the next restart)"}},
		{"mail password set", base + "[MAIL]\nUser=u\nPassword=Hunter2\n", []string{"[MAIL] User: (none) -> u", "[MAIL] Password: set"}},
		{"log", base + "[LOG]\nLevel=DEBUG\nFormat=json\n", []string{"[LOG] Format: text -> json (takes effect at the next restart)", "[LOG] Level: info -> debug"}},
		{"limits", base + "[LIMITS]\nHeartbeat=30\nMemoryLimitMB=512\n", []string{"[LIMITS] Heartbeat: 60 -> 30 (takes effect at the next restart)", "[LIMITS] MemoryLimitMB: 0 -> 512"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, d := range diffConfig(parse(base), parse(tc.edit)) {
				line := d.String()
				if d.restart {
					line += " (takes effect at the next restart)"
				}
				got = append(got, line)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("diff:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestConfigDiffCoversEveryKey changes every field of a Config in turn:
// each must show in the diff, so that a key added to Config is never
// re-read in silence.
func TestConfigDiffCoversEveryKey(t *testing.T) {
	cfg, _ := loadServerConfig(t, "Enable=1", "PathLinux="+t.TempDir(), "Build="+srvBuild)
	pub, _, _ := ed25519.GenerateKey(nil)
	var walk func(path string, v reflect.Value)
	n := 0
	walk = func(path string, v reflect.Value) {
		if v.Type() == reflect.TypeFor[version.Build]() {
			n++
			b, _ := version.Parse("7.00.250101A")
			v.Set(reflect.ValueOf(b))
			return
		}
		switch v.Kind() {
		case reflect.Struct:
			for i := range v.NumField() {
				walk(path+"."+v.Type().Field(i).Name, v.Field(i))
			}
			return
		case reflect.Bool:
			v.SetBool(!v.Bool())
		case reflect.Int, reflect.Int64:
			switch v.Type() {
			case reflect.TypeFor[time.Duration]():
				v.SetInt(v.Int() + int64(time.Hour))
			default:
				v.SetInt(v.Int() + 4) // a slog.Level step
			}
		case reflect.Float64:
			v.SetFloat(v.Float() + 1)
		case reflect.String:
			v.SetString(v.String() + "x")
		case reflect.Slice:
			if v.Type().Elem() == reflect.TypeFor[ed25519.PublicKey]() {
				v.Set(reflect.Append(v, reflect.ValueOf(pub)))
			} else {
				v.Set(reflect.Append(v, reflect.ValueOf("x")))
			}
		case reflect.Map:
			m := reflect.MakeMap(v.Type())
			for _, k := range []string{"windows", "linux", "darwin"} {
				m.SetMapIndex(reflect.ValueOf(k), reflect.ValueOf("/x/"+k))
			}
			v.Set(m)
		default:
			t.Fatalf("%s: a field of kind %v the test cannot change", path, v.Kind())
		}
		n++
	}
	fields := reflect.TypeFor[Config]()
	for i := range fields.NumField() {
		f := fields.Field(i)
		if f.Name == "File" {
			continue
		}
		var leaves []string
		var collect func(path string, typ reflect.Type)
		collect = func(path string, typ reflect.Type) {
			if typ.Kind() == reflect.Struct && typ != reflect.TypeFor[version.Build]() {
				for j := range typ.NumField() {
					collect(path+"."+typ.Field(j).Name, typ.Field(j).Type)
				}
				return
			}
			leaves = append(leaves, path)
		}
		collect(f.Name, f.Type)
		for _, leaf := range leaves {
			if leaf == "TLS.Source" {
				continue // which section named the certificate, not a key
			}
			t.Run(leaf, func(t *testing.T) {
				next := *cfg
				next.Folders = map[string]string{}
				for k, v := range cfg.Folders {
					next.Folders[k] = v
				}
				v := reflect.ValueOf(&next).Elem()
				for _, name := range strings.Split(leaf, ".") {
					v = v.FieldByName(name)
				}
				walk(leaf, v)
				d := diffConfig(cfg, &next)
				if len(d) == 0 {
					t.Errorf("a change of Config.%s is not in the diff", leaf)
				}
				// What a reload puts in force is the change if it is
				// live, nothing if it waits for a restart.
				applied := diffConfig(cfg, liveOnly(cfg, &next))
				for _, c := range d {
					if in := slices.Contains(applied, c); in == c.restart {
						t.Errorf("%s (restart %v) is in force after the reload: %v", c, c.restart, in)
					}
				}
			})
		}
	}
	if n == 0 {
		t.Fatal("no field changed")
	}
}

// TestReloadSessionKeepsItsConfiguration: a session welcomed before a
// reload is served the folder and build of its hello, and the folder it
// holds is closed only when it ends.
func TestReloadSessionKeepsItsConfiguration(t *testing.T) {
	// The old folder is still watched by a session when the test ends.
	testtree.SkipUnderWine(t, "a folder the server's watcher holds open cannot be removed (no POSIX delete)")
	st := newReloadSite(t)
	st.write(srvBuild, "")
	ts := startServer(t, st.load(), func(s *Server) { s.IdleTimeout = 10 * time.Second }, nil)
	old := ts.srv.Indexes()["linux"]

	c := mustDial(t, ts.addr)
	w, err := c.hello(srvBuild, "linux", "0123456789abcdef0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	if w.ServerBuild != srvBuild {
		t.Fatalf("welcome says build %q, want %s", w.ServerBuild, srvBuild)
	}

	next := filepath.Join(t.TempDir(), "next")
	writeTree(t, next, map[string]string{"smartclient": "client v2"}, oldTime)
	st.folder = next
	st.write(reloadBuild, "")
	if _, err := ts.srv.Reload(t.Context(), st.load()); err != nil {
		t.Fatal(err)
	}
	hdr, entries, err := c.manifest()
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Build != srvBuild || len(entries) != 3 {
		t.Errorf("the session welcomed before the reload got build %q with %d entries; want %s, the old folder's 3", hdr.Build, len(entries), srvBuild)
	}
	if _, err := old.Latest().Open("smartclient"); err != nil {
		t.Errorf("the old folder was closed under a session that holds it: %v", err)
	}
	c.conn.Close()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		f, err := old.Latest().Open("smartclient")
		if err != nil {
			break
		}
		f.Close()
		if time.Now().After(deadline) {
			t.Fatal("the old folder is still open 5 s after the last session holding it ended")
		}
	}
	// A new session gets the new folder and build.
	c2 := mustDial(t, ts.addr)
	if w, err := c2.hello(srvBuild, "linux", "0123456789abcdef0123456789abcdef"); err != nil || w.ServerBuild != reloadBuild {
		t.Errorf("welcome after the reload: build %q, %v; want %s", w.ServerBuild, err, reloadBuild)
	}
}

// TestReloadWhileClientsSync flips the configuration between two folders
// and builds while clients sync: each client ends with one release whole,
// the files of the build it was told, never a mix.
func TestReloadWhileClientsSync(t *testing.T) {
	st := newReloadSite(t)
	folders := map[string]string{srvBuild: st.folder, reloadBuild: filepath.Join(t.TempDir(), "b")}
	writeTree(t, folders[reloadBuild], map[string]string{"smartclient": "client v2", "lib/a.so": "bbbb", "SmartClient.ini": "[TCP]\nPort=1234\n"}, oldTime)
	content := map[string]string{srvBuild: "client v1", reloadBuild: "client v2"}
	st.write(srvBuild, "")
	ts := startServer(t, st.load(), func(s *Server) { s.IdleTimeout = 10 * time.Second }, nil)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errs := make(chan error, 3)
	var seen sync.Map // builds installed by some sync
	for i := range 3 {
		go func() {
			dir := filepath.Join(t.TempDir(), fmt.Sprint("ws", i))
			for n := 0; ctx.Err() == nil; n++ {
				res, err := smartclient.Sync(ctx, smartclient.Options{Dir: dir, Server: ts.addr, OS: "linux", Yes: true, AllowUnsigned: true,
					Timeout: 10 * time.Second, RetryFor: -1, Host: fmt.Sprint("ws", i), User: "u"})
				if ctx.Err() != nil {
					break
				}
				if err != nil {
					errs <- fmt.Errorf("client %d, sync %d: %w", i, n, err)
					return
				}
				b, err := os.ReadFile(filepath.Join(dir, "smartclient"))
				if err != nil || string(b) != content[res.Build] {
					errs <- fmt.Errorf("client %d, sync %d: build %s with smartclient %q (%v), want %q", i, n, res.Build, b, err, content[res.Build])
					return
				}
				seen.Store(res.Build, true)
			}
			errs <- nil
		}()
	}
	build := srvBuild
	for range 20 {
		build = map[string]string{srvBuild: reloadBuild, reloadBuild: srvBuild}[build]
		st.folder = folders[build]
		st.write(build, "")
		if _, err := ts.srv.Reload(t.Context(), st.load()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	for range 3 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for _, b := range []string{srvBuild, reloadBuild} {
		if _, ok := seen.Load(b); !ok {
			t.Errorf("no sync installed build %s: the reloads did not happen under the clients", b)
		}
	}
}

// TestReloadMemoryLimit: [LIMITS] MemoryLimitMB re-read reaches the
// runtime, and 0 gives back the limit the process had before.
func TestReloadMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	st := newReloadSite(t)
	st.write(srvBuild, "")
	ts := startServer(t, st.load(), func(s *Server) { s.proc = &procHooks{memoryLimit: setMemoryLimit} }, nil)
	st.write(srvBuild, "[LIMITS]\nMemoryLimitMB=3000\n")
	if _, err := ts.srv.Reload(t.Context(), st.load()); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != 3000<<20 {
		t.Errorf("memory limit %d after MemoryLimitMB=3000, want %d", got, 3000<<20)
	}
	st.write(srvBuild, "")
	if _, err := ts.srv.Reload(t.Context(), st.load()); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("memory limit %d after MemoryLimitMB went, want %d as before", got, before)
	}
}

// TestReloadDuringCountdown: a reload while a self-update counts down is
// applied, and the update keeps the [SELFUPDATE] settings it started
// with, which the log says.
func TestReloadDuringCountdown(t *testing.T) {
	t.Setenv(TestShortCountdownEnv, "1")
	ts, install := selfUpdateServer(t, "7.00.240501A")
	src := makeRelease(t, t.TempDir(), "7.01.250101A", map[string]string{serverProgram: "#!/bin/sh\n"}, vendorKey)
	res := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpUpdate, Source: src, Countdown: 300},
		func(r adminResult) bool {
			return len(r.events) > 0 && strings.Contains(r.events[len(r.events)-1], "countdown")
		})
	if res.err != nil || len(res.statuses) == 0 {
		t.Fatalf("update request: %+v", res)
	}
	id := res.statuses[0].ID

	cfgPath := filepath.Join(install, "AppServer.ini")
	text, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(text), "Build="+srvBuild, "Build="+reloadBuild, 1) + "Carry=data\n"
	writeFile(t, cfgPath, edited)
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := ts.srv.Reload(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"[UPDATE] Build: " + srvBuild + " -> " + reloadBuild, "[SELFUPDATE] Carry: (none) -> data"}; !slices.Equal(changes, want) {
		t.Errorf("changes = %q, want %q", changes, want)
	}
	waitLog(t, ts.logs, "[SELFUPDATE] changed while a self-update is under way; that update keeps the settings it started with")
	waitLog(t, ts.logs, "update="+id)
	ts.srv.upd.mu.Lock()
	carry := ts.srv.upd.job.cfg.SelfUpdate.Carry
	ts.srv.upd.mu.Unlock()
	if len(carry) != 0 {
		t.Errorf("the update under way carries %q, want what it started with (nothing)", carry)
	}
	if got := ts.srv.conf().SelfUpdate.Carry; !slices.Equal(got, []string{"data"}) {
		t.Errorf("[SELFUPDATE] Carry in force %q, want data", got)
	}
	st := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpStatus}, nil)
	if st.statuses[0].State != syncproto.StateCountdown {
		t.Errorf("the reload disturbed the countdown: %+v", st.statuses)
	}
	if c := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpCancel}, nil); c.err != nil {
		t.Fatalf("cancel: %+v", c)
	}
}

// TestReloadMaxStaySessions: a lower [LIMITS] MaxStaySessions re-read
// refuses the next session that asks to stay, and leaves those staying.
func TestReloadMaxStaySessions(t *testing.T) {
	st := newReloadSite(t)
	st.write(srvBuild, "")
	ts := startServer(t, st.load(), func(s *Server) { s.Heartbeat = 100 * time.Millisecond }, nil)
	first := stayClient(t, ts.addr, "first")
	if n, err := heartbeats(first, 150*time.Millisecond); err != nil || n < 1 {
		t.Fatalf("the first session does not stay: %d heartbeats, %v", n, err)
	}
	st.write(srvBuild, "[LIMITS]\nMaxStaySessions=1\n")
	changes, err := ts.srv.Reload(t.Context(), st.load())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{fmt.Sprintf("[LIMITS] MaxStaySessions: %d -> 1", defaultMaxStaySessions)}; !slices.Equal(changes, want) {
		t.Errorf("changes = %q, want %q", changes, want)
	}
	codes, err := stayClient(t, ts.addr, "second").readUntilClosed()
	if err != nil || len(codes) != 1 || codes[0] != syncproto.CodeBusy {
		t.Errorf("a second staying session after MaxStaySessions=1: codes %v, %v; want CodeBusy", codes, err)
	}
	if n, err := heartbeats(first, 250*time.Millisecond); err != nil || n < 1 {
		t.Errorf("the session staying before the reload was dropped: %d heartbeats, %v", n, err)
	}
}

// TestReloadAdminRevokesTokens: a new [ADMIN] PasswordHash ends the
// administrator sessions logged in with the old one.
func TestReloadAdminRevokesTokens(t *testing.T) {
	t.Setenv(TestShortCountdownEnv, "1")
	ts, install := selfUpdateServer(t, "7.00.240501A")
	dir := ts.srv.upd.dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	token, _, err := ts.srv.tokens.issue(dir, "admin", "u-1", now.Add(time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(install, "AppServer.ini")
	text, _ := os.ReadFile(cfgPath)
	hash, _ := bcrypt.GenerateFromPassword([]byte("a new password"), 10)
	edited := regexp.MustCompile(`PasswordHash=\S+`).ReplaceAllLiteralString(string(text), "PasswordHash="+string(hash))
	writeFile(t, cfgPath, edited)
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// Unchanged [ADMIN] first: the token lives.
	if _, err := ts.srv.Reload(t.Context(), ts.srv.conf()); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.srv.tokens.check(dir, token, "admin", now); err != nil {
		t.Fatalf("a reload that left [ADMIN] alone revoked the token: %v", err)
	}
	if _, err := ts.srv.Reload(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.srv.tokens.check(dir, token, "admin", now); !errors.Is(err, ErrTokenUnknown) {
		t.Errorf("the token after a new PasswordHash: %v, want ErrTokenUnknown", err)
	}
	waitLog(t, ts.logs, "administrator session tokens revoked")
}
