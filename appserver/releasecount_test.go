package appserver

import (
	"context"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/clientdb"
)

// TestListReleasesCountsClients: `appserver releases` counts the
// workstations the client records have on each release kept; a client
// whose last update failed counts for the release it had; unreadable
// records are -1, not an error of the listing.
func TestListReleasesCountsClients(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"keep": "folder"}, oldTime)
	cfg := linuxConfig(t, dir)
	state := t.TempDir()
	publishTree(t, cfg, state, pubBuild2, map[string]string{"app": "two"}, nil)
	publishTree(t, cfg, state, pubBuild3, map[string]string{"app": "three"}, nil)
	if list, err := ListReleases(state); err != nil || len(list) != 2 || list[0].Clients != 0 || list[1].Clients != 0 {
		t.Fatalf("ListReleases before any report: %+v, %v", list, err)
	}
	db := clientdb.Open(context.Background(), clientsDBFile(state), slog.New(slog.DiscardHandler), clientdb.Options{})
	now := time.Now()
	for _, s := range []clientdb.Sync{
		{ClientID: cid("a"), OS: "linux", Release: 1, At: now, Outcome: clientdb.OutcomeUpdated},
		{ClientID: cid("b"), OS: "linux", Release: 2, At: now, Outcome: clientdb.OutcomeUpdated},
		{ClientID: cid("c"), OS: "linux", Release: 2, At: now, Outcome: clientdb.OutcomeUpToDate},
		{ClientID: cid("a"), OS: "linux", Release: 2, At: now.Add(time.Second), Outcome: clientdb.OutcomeFailed}, // still on 1
		{ClientID: cid("w"), OS: "windows", Release: 2, At: now, Outcome: clientdb.OutcomeUpdated},
	} {
		db.Record(s)
	}
	if err := db.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	list, err := ListReleases(state)
	if err != nil || len(list) != 2 {
		t.Fatalf("ListReleases: %+v, %v", list, err)
	}
	if list[0].Clients != 1 || list[1].Clients != 2 {
		t.Errorf("clients on releases 1 and 2: %d, %d; want 1, 2", list[0].Clients, list[1].Clients)
	}
	if err := os.WriteFile(clientsDBFile(state), []byte("not a database, whatever it was"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(clientsDBFile(state) + "-wal")
	os.Remove(clientsDBFile(state) + "-shm")
	list, err = ListReleases(state)
	if err != nil || len(list) != 2 || list[0].Clients != -1 || list[1].Clients != -1 {
		t.Errorf("with damaged records: %+v, %v; want -1 clients", list, err)
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
