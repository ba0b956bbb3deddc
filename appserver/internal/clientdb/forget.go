package clientdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// forgetBusy is how long Forget waits for the server's writer: longer
// than the server's own wait, since an administrator's command may wait
// a moment where a sync's record must not.
const forgetBusy = 15 * time.Second

// Forget deletes clients from the file at path, with their history of
// syncs: those named by ids, or, with ids empty, those not seen for
// notSeenFor before the latest any client was seen (so that days the
// server was down count for no one). It runs beside a server that writes
// the file (SQLite's own locking, waiting up to forgetBusy), in one
// transaction: if any of ids is not in the file, nothing is forgotten and
// the error names it. It returns the clients forgotten; dryRun returns
// them and deletes nothing (reading only). A client forgotten that
// reports again is recorded anew.
func Forget(ctx context.Context, path string, ids []string, notSeenFor time.Duration, dryRun bool) ([]Client, error) {
	if len(ids) == 0 && notSeenFor <= 0 {
		return nil, errors.New("clientdb: forget: name clients, or an age")
	}
	var extra url.Values
	if dryRun {
		extra = url.Values{"mode": {"ro"}}
	}
	db, path, err := openExisting(ctx, path, "forget", forgetBusy, extra)
	if err != nil {
		return nil, forgetErr(path, "forget", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	// A dry run reads only: it neither takes the write lock the server's
	// writer waits for nor needs the right to write the file.
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: dryRun})
	if err != nil {
		return nil, forgetErr(path, "forget: begin", err)
	}
	defer tx.Rollback()
	var where string
	var args []any
	if len(ids) > 0 {
		where = "id IN (?" + strings.Repeat(", ?", len(ids)-1) + ")"
		for _, id := range ids {
			args = append(args, id)
		}
	} else {
		var latest sql.NullInt64
		if err := tx.QueryRowContext(ctx, "SELECT max(last_seen) FROM clients").Scan(&latest); err != nil {
			return nil, forgetErr(path, "forget: latest seen", err)
		}
		if !latest.Valid {
			return nil, nil // no client at all
		}
		where, args = "last_seen < ?", []any{latest.Int64 - notSeenFor.Milliseconds()}
	}
	gone, err := queryClients(ctx, tx, "SELECT "+clientColumns+" FROM clients WHERE "+where+" ORDER BY host COLLATE NOCASE, id", args...)
	if err != nil {
		return nil, forgetErr(path, "forget: list", err)
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
		return nil, forgetErr(path, "forget: history", err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM clients WHERE "+where, args...); err != nil {
		return nil, forgetErr(path, "forget: clients", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, forgetErr(path, "forget: commit", err)
	}
	return gone, nil
}

// forgetErr is wrap, saying of a lock that the server is writing: the
// program that holds it is the running server, not someone's shell.
func forgetErr(path, op string, err error) error {
	err = wrap(path, op, err)
	var e *Error
	if errors.As(err, &e) && e.Kind == KindLocked {
		return fmt.Errorf("%s: %s: the server has been writing the file for over %s (%v): try again", path, op, forgetBusy, e.Err)
	}
	return err
}
