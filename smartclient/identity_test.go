package smartclient_test

import (
	"bytes"
	"errors"
	"log/slog"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient"
	"github.com/otiai10/copy"
)

// readID returns the client id kept in dir.
func readID(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(smartclient.ClientIDFile)))
	if err != nil {
		t.Fatalf("reading the client id: %v", err)
	}
	id := strings.TrimSpace(string(data))
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
		t.Fatalf("client id %q; want 32 hexadecimal digits", id)
	}
	return id
}

// sessionIDs returns the ids, hosts and users of the server's session
// lines, in order, once there are n of them: the server writes a
// session's line when the connection has closed, after the sync returned.
func sessionIDs(t *testing.T, s *server, n int) (ids, hosts, users []string) {
	t.Helper()
	re := regexp.MustCompile(`msg=session .*\bid=(\S*) host=(\S*) user=(\S*)`)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ms := re.FindAllStringSubmatch(s.log.String(), -1)
		if len(ms) >= n || time.Now().After(deadline) {
			for _, m := range ms {
				ids, hosts, users = append(ids, m[1]), append(hosts, m[2]), append(users, m[3])
			}
			if len(ids) < n {
				t.Fatalf("%d session lines in the server's log; want %d:\n%s", len(ids), n, s.log)
			}
			return ids, hosts, users
		}
	}
}

// TestClientIDStableAcrossADeclinedFirstSync: the id made at the first
// attempt, which the user declined, is the one the install then uses, and
// every hello names the workstation and its user, as the OS knows them.
func TestClientIDStableAcrossADeclinedFirstSync(t *testing.T) {
	s := newServer(t, defaultConf)
	dir := filepath.Join(t.TempDir(), "install")
	_, err := sync1(t, s, dir, func(o *smartclient.Options) {
		o.Confirm = func(string) (bool, error) { return false, nil }
	})
	if !errors.Is(err, smartclient.ErrDeclined) {
		t.Fatalf("got %v; want the first install declined", err)
	}
	onlyIDLeft(t, dir, "a declined first sync")
	id := readID(t, dir)
	mustSync(t, s, dir, yes)
	if got := readID(t, dir); got != id {
		t.Errorf("id %s after the install; was %s at the declined attempt", got, id)
	}
	if code, out, errOut := runCLI(t, "status", "--dir", dir); code != 0 || !strings.Contains(out, "Client id:       "+id) {
		t.Errorf("status: exit %d, %q, %q; want the client id", code, out, errOut)
	}
	ids, hosts, users := sessionIDs(t, s, 2)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	for i := range ids {
		if ids[i] != id || strings.Trim(hosts[i], `"`) != host || strings.Trim(users[i], `"`) != u.Username {
			t.Errorf("session %d: id %s host %s user %s; want %s %s %s", i, ids[i], hosts[i], users[i], id, host, u.Username)
		}
	}
}

// TestClonedInstallGetsANewID: an install copied to a second workstation
// (a disk image) says hello with the first one's id from another host;
// the server warns, and the copy makes itself a new id, which it uses
// from its next session on, while the original keeps its own.
func TestClonedInstallGetsANewID(t *testing.T) {
	s := newServer(t, defaultConf)
	var clientLog bytes.Buffer
	logged := slog.New(slog.NewTextHandler(&clientLog, nil))
	original := filepath.Join(t.TempDir(), "install")
	as := func(host string) func(*smartclient.Options) {
		return func(o *smartclient.Options) { o.Host, o.User, o.Yes, o.Log = host, "maria", true, logged }
	}
	mustSync(t, s, original, as("ws-001"))
	id := readID(t, original)
	clone := filepath.Join(t.TempDir(), "install")
	if err := copy.Copy(original, clone, copy.Options{PreserveTimes: true}); err != nil {
		t.Fatal(err)
	}
	mustSync(t, s, clone, as("ws-002"))
	renewed := readID(t, clone)
	if renewed == id {
		t.Fatalf("the clone kept id %s", id)
	}
	if !strings.Contains(clientLog.String(), "new_id="+renewed) {
		t.Errorf("the client did not log its new id:\n%s", clientLog.String())
	}
	warns := regexp.MustCompile(`level=WARN msg="one client id from two hosts.*`).FindAllString(s.log.String(), -1)
	if len(warns) != 1 {
		t.Fatalf("%d warnings of a clone; want 1:\n%s", len(warns), s.log)
	}
	for _, want := range []string{"id=" + id, "host=ws-002", "first_host=ws-001", "client=127.0.0.1:", "first_client=127.0.0.1:"} {
		if !strings.Contains(warns[0], want) {
			t.Errorf("warning %q lacks %q", warns[0], want)
		}
	}
	// From the next session on, each names itself by its own id, and
	// neither is warned of again.
	mustSync(t, s, clone, as("ws-002"))
	mustSync(t, s, original, as("ws-001"))
	if got := readID(t, original); got != id {
		t.Errorf("the original's id changed to %s", got)
	}
	if got := readID(t, clone); got != renewed {
		t.Errorf("the clone's id changed again, to %s", got)
	}
	// The server writes a session's line once the connection has
	// closed, so the lines of syncs one after the other may swap.
	ids, hosts, _ := sessionIDs(t, s, 4)
	seen := map[string]int{}
	for i := range ids {
		seen[hosts[i]+" "+ids[i]]++
	}
	want := map[string]int{"ws-001 " + id: 2, "ws-002 " + id: 1, "ws-002 " + renewed: 1}
	if !maps.Equal(seen, want) {
		t.Errorf("sessions (host id): %v; want %v", seen, want)
	}
	if n := len(regexp.MustCompile(`msg="one client id from two hosts`).FindAllString(s.log.String(), -1)); n != 1 {
		t.Errorf("%d warnings of a clone after the new id; want still 1", n)
	}
}
