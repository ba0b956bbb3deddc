package clientdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Forget deletes clients from the file at path, with their history of
// syncs: those named by ids, or, with ids empty, those not seen since
// notSeenSince (a workstation retired or reinstalled under a new id). It
// runs beside a server that writes the file (SQLite's own locking, waiting
// up to DefaultBusyTimeout), in one transaction: an id the file does not
// hold forgets nothing and is named in the error. It returns the clients
// forgotten; dryRun returns them and deletes nothing. A client forgotten
// that reports again is recorded anew.
func Forget(ctx context.Context, path string, ids []string, notSeenSince time.Time, dryRun bool) ([]Client, error) {
	if len(ids) == 0 && notSeenSince.IsZero() {
		return nil, errors.New("clientdb: forget: name clients, or an age")
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &Error{Path: path, Op: "forget", Kind: KindMissing, Err: err}
		}
		return nil, wrap(path, "forget", err)
	}
	db, err := sql.Open("sqlite", dsn(path, readerCacheKiB, DefaultBusyTimeout, nil))
	if err != nil {
		return nil, wrap(path, "forget", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	v, err := userVersion(ctx, db)
	if err != nil {
		return nil, wrap(path, "forget", err)
	}
	if v != len(migrations) {
		return nil, &Error{Path: path, Op: "forget", Kind: KindOther,
			Err: fmt.Errorf("schema v%d, this appserver's is v%d: run the appserver of the server's version", v, len(migrations))}
	}
	where, args := "last_seen < ?", []any{ms(notSeenSince)}
	if len(ids) > 0 {
		where = "id IN (?" + strings.Repeat(", ?", len(ids)-1) + ")"
		args = args[:0]
		for _, id := range ids {
			args = append(args, id)
		}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, wrap(path, "forget: begin", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, "SELECT "+clientColumns+" FROM clients WHERE "+where+" ORDER BY host COLLATE NOCASE, id", args...)
	if err != nil {
		return nil, wrap(path, "forget: list", err)
	}
	var gone []Client
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			rows.Close()
			return nil, wrap(path, "forget: list", err)
		}
		gone = append(gone, c)
	}
	if err := rows.Close(); err != nil {
		return nil, wrap(path, "forget: list", err)
	}
	if len(ids) > 0 {
		found := map[string]bool{}
		for _, c := range gone {
			found[c.ID] = true
		}
		var unknown []string
		for _, id := range ids {
			if !found[id] {
				unknown = append(unknown, id)
			}
		}
		if len(unknown) > 0 {
			return nil, fmt.Errorf("%s: no client %s: nothing forgotten: %w", path, strings.Join(unknown, ", "), ErrNotFound)
		}
	}
	if dryRun || len(gone) == 0 {
		return gone, nil
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM syncs WHERE client_id IN (SELECT id FROM clients WHERE "+where+")", args...); err != nil {
		return nil, wrap(path, "forget: history", err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM clients WHERE "+where, args...); err != nil {
		return nil, wrap(path, "forget: clients", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, wrap(path, "forget: commit", err)
	}
	return gone, nil
}
