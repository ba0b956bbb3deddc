package appserver

import (
	"context"
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
	c.confirm("linux", "a", 1)
	c.confirm("linux", "b", 1)
	c.confirm("linux", "b", 2) // b moved on
	c.confirm("linux", "c", 2)
	c.confirm("linux", "d", 2)
	c.confirm("linux", "d", 0) // d is on the folder now
	c.confirm("linux", "", 2)  // no id: not recorded
	c.confirm("windows", "a", 7)
	path := clientsFile(state, "linux")
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("written before a flush: %v", err)
	}
	c.flush()
	want := map[string]uint64{"a": 1, "b": 2, "c": 2}
	if got, err := readClientsRecord(path); err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("record %v, %v; want %v", got, err, want)
	}
	if got, err := countClients(state, "windows"); err != nil || got[7] != 1 {
		t.Errorf("windows counts %v, %v", got, err)
	}
	// Unchanged (a confirmation of what is recorded): not written again.
	os.Remove(path)
	c.confirm("linux", "a", 1)
	c.flush()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an unchanged record was written again: %v", err)
	}
	c.confirm("linux", "e", 2)
	c.flush()

	// The next server goes on from the record, and run writes it when
	// stopped.
	c2 := newClientReleases(state, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c2.run(ctx); close(done) }()
	c2.confirm("linux", "f", 3)
	cancel()
	<-done
	want = map[string]uint64{"a": 1, "b": 2, "c": 2, "e": 2, "f": 3}
	if got, err := readClientsRecord(path); err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after a restart: %v, %v; want %v", got, err, want)
	}

	// A damaged record is logged and replaced by a new one.
	if err := os.WriteFile(path, []byte("{torn"), 0o644); err != nil {
		t.Fatal(err)
	}
	c3 := newClientReleases(state, slog.New(slog.NewTextHandler(&logs, nil)))
	c3.confirm("linux", "g", 3)
	c3.flush()
	if !strings.Contains(logs.String(), path) {
		t.Errorf("the damaged record is not logged:\n%s", logs.String())
	}
	if got, err := readClientsRecord(path); err != nil || len(got) != 1 || got["g"] != 3 {
		t.Errorf("after a damaged record: %v, %v", got, err)
	}
}

// TestClientReleasesBound: past maxClientRecords clients of an OS, new
// ones are not recorded (once logged), known ones still are.
func TestClientReleasesBound(t *testing.T) {
	var logs strings.Builder
	c := newClientReleases(t.TempDir(), slog.New(slog.NewTextHandler(&logs, nil)))
	for i := range maxClientRecords {
		c.confirm("linux", fmt.Sprint(i), 1)
	}
	c.confirm("linux", "one too many", 1)
	c.confirm("linux", "another", 1)
	c.confirm("linux", "0", 2)
	c.mu.Lock()
	got := c.byOS["linux"].clients
	n, moved, extra := len(got), got["0"], got["one too many"]
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
		c.confirm("linux", id, n)
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
