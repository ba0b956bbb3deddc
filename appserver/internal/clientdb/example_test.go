package clientdb_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/clientdb"
)

// The server opens the database once, records every report from the
// session goroutines, and the console and the clients command query it.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "clientdb-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "clients.db")

	db := clientdb.Open(ctx, path, slog.New(slog.DiscardHandler), clientdb.Options{KeepDays: 90})
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	db.Record(clientdb.Sync{ClientID: "7f3a", Host: "ws-finance-01", User: "ann", OS: "windows",
		Build: "24.10.2", Release: 12, At: at, Outcome: clientdb.OutcomeFailed,
		Step: "install", Reason: "the file lib/erp.dll is in use"})
	if err := db.Flush(ctx); err != nil { // tests only; the server does not wait
		fmt.Println(err)
	}
	failed, _ := db.Clients(ctx, clientdb.Filter{Failed: true, Sort: "last_seen", Desc: true})
	for _, c := range failed {
		fmt.Println(c.Host, c.User, c.Build, c.Outcome, c.Step+":", c.Reason)
	}
	db.Close(ctx)

	// `appserver clients` reads the file, even while the server runs.
	r, err := clientdb.OpenReadOnly(ctx, path)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	s, _ := r.Summary(ctx, at.Add(-7*24*time.Hour))
	fmt.Println(s.Clients, "client(s);", s.Failed, "failed")
	// Output:
	// ws-finance-01 ann 24.10.2 failed install: the file lib/erp.dll is in use
	// 1 client(s); 1 failed
}
