package cli

import (
	"context"
	"encoding/json"
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
