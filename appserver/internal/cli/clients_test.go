package cli

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver"
	"github.com/erpupdate/smartsync/appserver/internal/clientdb"
)

// TestClientsCommand: appserver clients lists what the server recorded
// in its SQLite file: every client, the failed ones with their reason,
// one build, the stale ones, as JSON, and one client's history; without
// a record it says so.
func TestClientsCommand(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "linux_upd"), 0o755)
	ini := filepath.Join(dir, "AppServer.ini")
	os.WriteFile(ini, []byte("[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nPathLinux=linux_upd\nBuild=7.00.240501A\n[STATUS]\nStaleDays=3\n"), 0o644)

	code, _, errb := run(t, "", "clients", "--config", ini)
	if code != ExitFailed || !strings.Contains(errb, "no client has reported yet") {
		t.Errorf("clients without a record: exit %d %s", code, errb)
	}

	now := time.Now()
	os.MkdirAll(appserver.StateDir(ini, ""), 0o700) // made by the server
	db := clientdb.Open(context.Background(), appserver.ClientsDB(appserver.StateDir(ini, "")), slog.New(slog.DiscardHandler), clientdb.Options{})
	for _, s := range []clientdb.Sync{
		{ClientID: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Host: "caixa-01", User: "maria", OS: "linux", Build: "7.00.240601A", Release: 2, At: now.Add(-time.Hour), Outcome: "updated", Files: 3, Bytes: 1000, Duration: 2 * time.Second},
		{ClientID: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", Host: "caixa-02", User: "joao", OS: "linux", Build: "7.00.240501A", At: now.Add(-2 * time.Hour), Outcome: "failed", Step: "install", Reason: "the file lib/libtotvs.so is read-only"},
		{ClientID: "cccccccccccccccccccccccccccccccc", Host: "old-pc", User: "ana", OS: "linux", Build: "7.00.240501A", At: now.Add(-5 * 24 * time.Hour), Outcome: "up-to-date"},
		{ClientID: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Host: "caixa-01", User: "maria", OS: "linux", Build: "7.00.240501A", At: now.Add(-3 * time.Hour), Outcome: "failed", Step: "fetch", Reason: "disk full"},
	} {
		db.Record(s)
	}
	if err := db.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	code, out, errb := run(t, "", "clients", "--config", ini)
	if code != ExitOK || strings.Count(out, "\n") != 4 || !strings.HasPrefix(out, "HOST") {
		t.Fatalf("clients: exit %d\n%s%s", code, out, errb)
	}
	for _, want := range []string{"caixa-01", "maria", "7.00.240601A", "updated", "caixa-02", "failed (install: the file lib/libtotvs.so is read-only)", "old-pc", "days ago"} {
		if !strings.Contains(out, want) {
			t.Errorf("clients does not show %q:\n%s", want, out)
		}
	}
	for _, tc := range []struct {
		args []string
		want []string // hosts, in order
	}{
		{[]string{"--failed"}, []string{"caixa-02"}},
		{[]string{"--build", "7.00.240501A"}, []string{"caixa-02", "old-pc"}},
		{[]string{"--stale", "config"}, []string{"old-pc"}}, // [STATUS] StaleDays=3
		{[]string{"--stale", "6d"}, nil},
		{[]string{"--stale", "1h30m"}, []string{"caixa-02", "old-pc"}},
		{[]string{"--search", "JOAO"}, []string{"caixa-02"}},
		{[]string{"--sort", "last_seen", "--desc"}, []string{"caixa-01", "caixa-02", "old-pc"}},
	} {
		code, out, errb := run(t, "", append([]string{"clients", "--config", ini, "--json"}, tc.args...)...)
		if code != ExitOK {
			t.Errorf("clients %v: exit %d %s", tc.args, code, errb)
			continue
		}
		var got []struct {
			Host, Outcome, Reason string
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Errorf("clients %v --json: %v\n%s", tc.args, err, out)
			continue
		}
		var hosts []string
		for _, c := range got {
			hosts = append(hosts, c.Host)
		}
		if strings.Join(hosts, ",") != strings.Join(tc.want, ",") {
			t.Errorf("clients %v: %v, want %v", tc.args, hosts, tc.want)
		}
	}
	for _, bad := range [][]string{{"--stale", "soon"}, {"--sort", "host; DROP TABLE clients"}} {
		code, _, errb := run(t, "", append([]string{"clients", "--config", ini}, bad...)...)
		if code == ExitOK || errb == "" {
			t.Errorf("clients %v: exit %d, want an error", bad, code)
		}
	}

	// What a client sends (its host name, its reason) cannot drive the
	// administrator's terminal.
	db = clientdb.Open(context.Background(), appserver.ClientsDB(appserver.StateDir(ini, "")), slog.New(slog.DiscardHandler), clientdb.Options{})
	db.Record(clientdb.Sync{ClientID: "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", Host: "evil\x1b]0;owned\a", OS: "linux", At: now, Outcome: "failed", Reason: "\x1b[2Jcleared"})
	if err := db.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"clients"}, {"clients", "show", "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"}} {
		code, out, errb := run(t, "", append(args, "--config", ini)...)
		if code != ExitOK || strings.ContainsAny(out, "\x1b\a") || !strings.Contains(out, `evil\x1b]0;owned\x07`) {
			t.Errorf("%v with a hostile host name: exit %d, %q %s", args, code, out, errb)
		}
	}

	code, out, errb = run(t, "", "clients", "show", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "--config", ini)
	if code != ExitOK || !strings.Contains(out, "Host       caixa-01") || !strings.Contains(out, "disk full") || !strings.Contains(out, "updated") {
		t.Errorf("clients show: exit %d\n%s%s", code, out, errb)
	}
	if i, j := strings.Index(out, "updated"), strings.Index(out, "disk full"); i > j {
		t.Errorf("clients show: history not newest first:\n%s", out)
	}
	code, _, errb = run(t, "", "clients", "show", "dddddddddddddddddddddddddddddddd", "--config", ini)
	if code != ExitFailed || errb == "" {
		t.Errorf("clients show of an unknown id: exit %d %s", code, errb)
	}
}

// TestClientsForget: appserver clients forget deletes workstations and
// their history from the file the server writes, while its writer writes:
// by id, or not seen for an age before the latest seen; an age under 30
// days needs --force; --dry-run changes nothing; an unknown id forgets
// nothing; a workstation forgotten that reports again is recorded anew.
func TestClientsForget(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "linux_upd"), 0o755)
	ini := filepath.Join(dir, "AppServer.ini")
	os.WriteFile(ini, []byte("[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nPathLinux=linux_upd\nBuild=7.00.240501A\n"), 0o644)
	os.MkdirAll(appserver.StateDir(ini, ""), 0o700)
	path := appserver.ClientsDB(appserver.StateDir(ini, ""))
	// The server's writer, open all along.
	db := clientdb.Open(context.Background(), path, slog.New(slog.DiscardHandler), clientdb.Options{})
	t.Cleanup(func() { db.Close(context.Background()) })
	const a, b, c = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "cccccccccccccccccccccccccccccccc"
	// The server was down for 60 days: the latest seen is that long ago,
	// and ages count from it.
	now := time.Now().Add(-60 * 24 * time.Hour)
	for _, s := range []clientdb.Sync{
		{ClientID: a, Host: "caixa-01", OS: "linux", At: now.Add(-time.Hour), Outcome: "updated"},
		{ClientID: b, Host: "caixa-02", OS: "linux", At: now.Add(-2 * time.Hour), Outcome: "failed", Reason: "disk full"},
		{ClientID: c, Host: "retired-pc", OS: "linux", At: now.Add(-100 * 24 * time.Hour), Outcome: "up-to-date"},
		{ClientID: c, Host: "retired-pc", OS: "linux", At: now.Add(-99 * 24 * time.Hour), Outcome: "up-to-date"},
	} {
		db.Record(s)
	}
	if err := db.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	hosts := func() string {
		t.Helper()
		code, out, errb := run(t, "", "clients", "--config", ini, "--json")
		if code != ExitOK {
			t.Fatalf("clients: exit %d %s", code, errb)
		}
		var got []struct{ Host string }
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatal(err)
		}
		var hs []string
		for _, c := range got {
			hs = append(hs, c.Host)
		}
		return strings.Join(hs, ",")
	}
	syncsOf := func(id string) int {
		t.Helper()
		r, err := clientdb.OpenReadOnly(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		_, hist, err := r.Client(t.Context(), id, 0)
		if errors.Is(err, clientdb.ErrNotFound) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return len(hist)
	}

	for _, bad := range [][]string{{}, {a, "--stale", "30d"}, {"--stale", "soon"}, {"--stale", "config"}, {"--stale", "7d"}} {
		if code, _, errb := run(t, "", append([]string{"clients", "forget", "--config", ini}, bad...)...); code != ExitUsage || errb == "" {
			t.Errorf("clients forget %v: exit %d %q, want a usage error", bad, code, errb)
		}
	}
	code, _, errb := run(t, "", "clients", "forget", a, "dddddddddddddddddddddddddddddddd", "--config", ini)
	if code != ExitFailed || !strings.Contains(errb, "dddddddddddddddddddddddddddddddd") || !strings.Contains(errb, "nothing forgotten") {
		t.Errorf("forget of a known and an unknown id: exit %d %s", code, errb)
	}
	if got := hosts(); got != "caixa-01,caixa-02,retired-pc" {
		t.Errorf("after a refused forget: %s", got)
	}
	// 90 days before the latest seen: the retired one only, not the two
	// the server last heard from 60 days ago.
	code, out, errb := run(t, "", "clients", "forget", "--stale", "90d", "--dry-run", "--json", "--config", ini)
	var dry struct {
		DryRun    bool `json:"dry_run"`
		Forgotten []struct{ Host string }
	}
	if err := json.Unmarshal([]byte(out), &dry); code != ExitOK || err != nil || !dry.DryRun || len(dry.Forgotten) != 1 || dry.Forgotten[0].Host != "retired-pc" {
		t.Errorf("forget --dry-run --json: exit %d %v\n%s%s", code, err, out, errb)
	}
	if got := hosts(); got != "caixa-01,caixa-02,retired-pc" || syncsOf(c) != 2 {
		t.Errorf("after a dry run: %s, %d syncs of the retired one", got, syncsOf(c))
	}
	// The server's writer writes all along the next forgets.
	stop := make(chan struct{})
	writing := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				writing <- nil
				return
			default:
			}
			db.Record(clientdb.Sync{ClientID: a, Host: "caixa-01", OS: "linux", At: now.Add(time.Duration(i) * time.Millisecond), Outcome: "up-to-date"})
			if err := db.Flush(t.Context()); err != nil {
				writing <- err
				return
			}
		}
	}()
	code, out, errb = run(t, "", "clients", "forget", "--stale", "90d", "--config", ini)
	if code != ExitOK || !strings.Contains(out, "Forgot 1 client(s)") || !strings.Contains(out, "retired-pc") {
		t.Errorf("forget --stale 90d: exit %d\n%s%s", code, out, errb)
	}
	code, out, errb = run(t, "", "clients", "forget", b, "--config", ini)
	if code != ExitOK || !strings.Contains(out, "caixa-02") {
		t.Errorf("forget ID: exit %d\n%s%s", code, out, errb)
	}
	close(stop)
	if err := <-writing; err != nil {
		t.Fatalf("the server's writer beside the forgets: %v", err)
	}
	if got := hosts(); got != "caixa-01" || syncsOf(c) != 0 || syncsOf(b) != 0 {
		t.Errorf("after the forgets: %s; %d and %d syncs of the forgotten", got, syncsOf(c), syncsOf(b))
	}
	// A forgotten workstation that reports again is recorded anew.
	db.Record(clientdb.Sync{ClientID: b, Host: "caixa-02", OS: "linux", At: time.Now(), Outcome: "updated"})
	if err := db.Flush(t.Context()); err != nil {
		t.Fatalf("the server's writer after a forget: %v", err)
	}
	if got := hosts(); got != "caixa-01,caixa-02" || syncsOf(b) != 1 {
		t.Errorf("after the forgotten client reported again: %s, %d syncs", got, syncsOf(b))
	}
	// --force takes a short age: from the latest seen (now), the
	// others were last seen 60 days before.
	code, out, errb = run(t, "", "clients", "forget", "--stale", "7d", "--force", "--config", ini)
	if code != ExitOK || !strings.Contains(out, "Forgot 1 client(s)") || !strings.Contains(out, "caixa-01") {
		t.Errorf("forget --stale 7d --force: exit %d\n%s%s", code, out, errb)
	}
}
