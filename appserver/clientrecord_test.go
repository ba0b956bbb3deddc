package appserver

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/erpupdate/smartsync/internal/atomicfile"
)

// TestClientReleasesRecord: confirmations are kept per OS and client,
// written when changed (not before, not again when unchanged), read back
// by the next server, and written at the stop by run.
func TestClientReleasesRecord(t *testing.T) {
	state := t.TempDir()
	var logs strings.Builder
	c := newClientReleases(state, slog.New(slog.NewTextHandler(&logs, nil)))
	c.confirm("linux", cid("a"), 1)
	c.confirm("linux", cid("b"), 1)
	c.confirm("linux", cid("b"), 2) // b moved on
	c.confirm("linux", cid("c"), 2)
	c.confirm("linux", cid("d"), 2)
	c.confirm("linux", cid("d"), 0) // d is on the folder now
	c.confirm("linux", "", 2)       // no id: not recorded
	c.confirm("windows", cid("a"), 7)
	path := clientsFile(state, "linux")
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("written before a flush: %v", err)
	}
	c.flush()
	want := map[string]uint64{cid("a"): 1, cid("b"): 2, cid("c"): 2}
	if got, err := readClientsRecord(path); err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("record %v, %v; want %v", got, err, want)
	}
	if got, err := countClients(state, "windows"); err != nil || got[7] != 1 {
		t.Errorf("windows counts %v, %v", got, err)
	}
	// Unchanged (a confirmation of what is recorded): not written again.
	os.Remove(path)
	c.confirm("linux", cid("a"), 1)
	c.flush()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an unchanged record was written again: %v", err)
	}
	c.confirm("linux", cid("e"), 2)
	c.flush()

	// The next server goes on from the record, and run writes it when
	// stopped.
	c2 := newClientReleases(state, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c2.run(ctx); close(done) }()
	c2.confirm("linux", cid("f"), 3)
	cancel()
	<-done
	want = map[string]uint64{cid("a"): 1, cid("b"): 2, cid("c"): 2, cid("e"): 2, cid("f"): 3}
	if got, err := readClientsRecord(path); err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after a restart: %v, %v; want %v", got, err, want)
	}

	// A damaged record is logged and replaced by a new one.
	if err := os.WriteFile(path, []byte("{torn"), 0o644); err != nil {
		t.Fatal(err)
	}
	c3 := newClientReleases(state, slog.New(slog.NewTextHandler(&logs, nil)))
	c3.confirm("linux", cid("g"), 3)
	c3.flush()
	// The error names the file; slog escapes the backslashes of a
	// Windows path inside the quoted error, so the name is looked for.
	if !strings.Contains(logs.String(), "reading which release each client is on") || !strings.Contains(logs.String(), filepath.Base(path)) {
		t.Errorf("the damaged record is not logged:\n%s", logs.String())
	}
	if got, err := readClientsRecord(path); err != nil || len(got) != 1 || got[cid("g")] != 3 {
		t.Errorf("after a damaged record: %v, %v", got, err)
	}
}

// TestClientReleasesBound: past maxClientRecords clients of an OS, new
// ones are not recorded (once logged), known ones still are.
func TestClientReleasesBound(t *testing.T) {
	var logs strings.Builder
	c := newClientReleases(t.TempDir(), slog.New(slog.NewTextHandler(&logs, nil)))
	for i := range maxClientRecords {
		c.confirm("linux", cid(fmt.Sprint(i)), 1)
	}
	c.confirm("linux", cid("one too many"), 1)
	c.confirm("linux", cid("another"), 1)
	c.confirm("linux", cid("0"), 2)
	c.mu.Lock()
	got := c.byOS["linux"].clients
	n, moved, extra := len(got), got[cid("0")], got[cid("one too many")]
	c.mu.Unlock()
	if n != maxClientRecords || moved != 2 || extra != 0 {
		t.Errorf("%d clients, client 0 on %d, the extra on %d; want %d, 2, none", n, moved, extra, maxClientRecords)
	}
	if k := strings.Count(logs.String(), "too many clients"); k != 1 {
		t.Errorf("the bound is logged %d times, want once", k)
	}
}

func TestDecodeClientsRecordErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"not json", "garbage", "invalid character"},
		{"other format", `{"format":2,"clients":{}}`, "format 2"},
		{"unknown field", `{"format":1,"clients":{},"x":1}`, `unknown field "x"`},
		{"release 0", `{"format":1,"clients":{"a":0}}`, `client "a" on release 0`},
		{"empty id", `{"format":1,"clients":{"":3}}`, `client "" on release 3`},
		{"two records", `{"format":1,"clients":{}} {"format":1}`, "data after the record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeClientsRecord([]byte(tc.text)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("decoding %s: %v; want an error containing %q", tc.text, err, tc.want)
			}
		})
	}
}

func FuzzDecodeClientsRecord(f *testing.F) {
	f.Add([]byte(`{"format":1,"clients":{"a":1,"b":2}}`))
	f.Add([]byte(`{"format":1,"clients":{}}`))
	f.Add([]byte(`{"format":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		clients, err := decodeClientsRecord(b)
		if err != nil {
			return
		}
		for id, n := range clients {
			if id == "" || n == 0 {
				t.Fatalf("accepted client %q on release %d", id, n)
			}
		}
	})
}

// TestListReleasesCountsClients: `appserver releases` counts the
// clients the server recorded on each release kept; an unreadable
// record is -1, not an error of the listing.
func TestListReleasesCountsClients(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"keep": "folder"}, oldTime)
	cfg := linuxConfig(t, dir)
	state := t.TempDir()
	publishTree(t, cfg, state, pubBuild2, map[string]string{"app": "two"}, nil)
	publishTree(t, cfg, state, pubBuild3, map[string]string{"app": "three"}, nil)
	c := newClientReleases(state, slog.New(slog.DiscardHandler))
	for id, n := range map[string]uint64{"a": 1, "b": 2, "c": 2, "gone": 9} {
		c.confirm("linux", cid(id), n)
	}
	c.flush()
	list, err := ListReleases(state)
	if err != nil || len(list) != 2 {
		t.Fatalf("ListReleases: %+v, %v", list, err)
	}
	if list[0].Clients != 1 || list[1].Clients != 2 {
		t.Errorf("clients on releases 1 and 2: %d, %d; want 1, 2", list[0].Clients, list[1].Clients)
	}
	if err := atomicfile.Write(clientsFile(state, "linux"), []byte("{torn"), 0o644); err != nil {
		t.Fatal(err)
	}
	list, err = ListReleases(state)
	if err != nil || len(list) != 2 || list[0].Clients != -1 || list[1].Clients != -1 {
		t.Errorf("with a damaged record: %+v, %v; want -1 clients", list, err)
	}
}

// cid makes a client id as smartclient makes them (32 lower-case hex
// digits) from a short name, so that tests can name clients.
func cid(name string) string {
	h := hex.EncodeToString([]byte(name))
	if len(h) > 32 {
		h = h[:32]
	}
	return strings.Repeat("0", 32-len(h)) + h
}

// TestClientReleasesOnlyCanonicalIDs: an id smartclient would not make
// (long, upper case, not hex) is not recorded: a client may name itself
// anything, and the record must not grow with made-up names.
func TestClientReleasesOnlyCanonicalIDs(t *testing.T) {
	c := newClientReleases(t.TempDir(), slog.New(slog.DiscardHandler))
	for _, id := range []string{strings.Repeat("a", 128), strings.ToUpper(cid("xyz")), "not an id", cid("x")[:31] + "g", cid("ok")} {
		c.confirm("linux", id, 1)
	}
	c.mu.Lock()
	got := c.byOS["linux"].clients
	c.mu.Unlock()
	if len(got) != 1 || got[cid("ok")] != 1 {
		t.Errorf("recorded %v; want only the canonical id", got)
	}
}
