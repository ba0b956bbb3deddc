package clientdb

import (
	"context"
	"database/sql"
	"fmt"
)

// The schema is versioned by PRAGMA user_version: a file at version N has
// had migrations[0..N-1] applied, each in its own transaction together with
// the version bump, so a crash leaves the file at one version or the next.
// Migrations are only ever appended; a released one is never edited.
//
// Times are INTEGER milliseconds since the Unix epoch (UTC); durations are
// INTEGER milliseconds; 0 means "never" for last_success.

// migrations are the schema's steps, migrations[i] taking a file from
// version i to version i+1.
var migrations = []string{
	// 1: the first tables.
	`CREATE TABLE clients (
		id            TEXT PRIMARY KEY,
		host          TEXT NOT NULL DEFAULT '',
		user_name     TEXT NOT NULL DEFAULT '',
		os            TEXT NOT NULL DEFAULT '',
		path          TEXT NOT NULL DEFAULT '',
		addr          TEXT NOT NULL DEFAULT '',
		build         TEXT NOT NULL DEFAULT '',
		release       INTEGER NOT NULL DEFAULT 0,
		first_seen    INTEGER NOT NULL,
		last_seen     INTEGER NOT NULL,
		last_at       INTEGER NOT NULL,
		last_outcome  TEXT NOT NULL DEFAULT '',
		last_step     TEXT NOT NULL DEFAULT '',
		last_reason   TEXT NOT NULL DEFAULT '',
		last_files    INTEGER NOT NULL DEFAULT 0,
		last_bytes    INTEGER NOT NULL DEFAULT 0,
		last_duration INTEGER NOT NULL DEFAULT 0,
		last_success  INTEGER NOT NULL DEFAULT 0
	);
	CREATE TABLE syncs (
		id        INTEGER PRIMARY KEY,
		client_id TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
		at        INTEGER NOT NULL,
		reported  INTEGER NOT NULL,
		host      TEXT NOT NULL DEFAULT '',
		user_name TEXT NOT NULL DEFAULT '',
		os        TEXT NOT NULL DEFAULT '',
		path      TEXT NOT NULL DEFAULT '',
		addr      TEXT NOT NULL DEFAULT '',
		build     TEXT NOT NULL DEFAULT '',
		release   INTEGER NOT NULL DEFAULT 0,
		outcome   TEXT NOT NULL DEFAULT '',
		step      TEXT NOT NULL DEFAULT '',
		reason    TEXT NOT NULL DEFAULT '',
		files     INTEGER NOT NULL DEFAULT 0,
		bytes     INTEGER NOT NULL DEFAULT 0,
		duration  INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX syncs_client_at ON syncs(client_id, at DESC);
	CREATE INDEX syncs_at ON syncs(at);`,

	// 2: rollout rings, and the console's indexes.
	`ALTER TABLE clients ADD COLUMN ring TEXT NOT NULL DEFAULT '';
	ALTER TABLE syncs ADD COLUMN ring TEXT NOT NULL DEFAULT '';
	CREATE INDEX clients_last_seen ON clients(last_seen);
	CREATE INDEX clients_build_os ON clients(build, os);
	CREATE INDEX clients_os ON clients(os);
	CREATE INDEX clients_outcome ON clients(last_outcome, last_at);
	CREATE INDEX clients_ring_release ON clients(ring, release);
	CREATE INDEX clients_host ON clients(host COLLATE NOCASE);
	CREATE INDEX syncs_outcome_at ON syncs(outcome, at);`,
	// v3: the digest lists the failures the server learned of in its
	// window, late ones included.
	`CREATE INDEX syncs_outcome_reported ON syncs(outcome, reported);`,
	// v4: the client's id of each sync, so that a report sent twice (its
	// acknowledgement lost) is recorded once. SQLite's INTEGER is signed:
	// the id's 64 bits are stored as they are.
	`ALTER TABLE syncs ADD COLUMN report_id INTEGER NOT NULL DEFAULT 0;
	CREATE UNIQUE INDEX syncs_report ON syncs(client_id, report_id) WHERE report_id != 0;`,
}

// SchemaVersion is the schema version this package writes and reads:
// len(migrations).
const SchemaVersion = 4

// userVersion reads PRAGMA user_version.
func userVersion(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int, error) {
	var v int
	if err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// migrate brings db to version upto (SchemaVersion in production; tests
// stop earlier to build an old file). It returns the version found and
// an error naming the migration that failed.
func migrate(ctx context.Context, db *sql.DB, upto int) (from int, err error) {
	from, err = userVersion(ctx, db)
	if err != nil {
		return 0, err
	}
	if from > len(migrations) {
		return from, &newerSchemaError{found: from}
	}
	for v := from; v < upto; v++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return from, fmt.Errorf("migrate schema to v%d: begin: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			tx.Rollback()
			return from, fmt.Errorf("migrate schema to v%d: %w", v+1, err)
		}
		// PRAGMA takes no parameters; v+1 is our own integer.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
			tx.Rollback()
			return from, fmt.Errorf("migrate schema to v%d: set version: %w", v+1, err)
		}
		if err := tx.Commit(); err != nil {
			return from, fmt.Errorf("migrate schema to v%d: commit: %w", v+1, err)
		}
	}
	return from, nil
}

// newerSchemaError is a file written by a newer server.
type newerSchemaError struct{ found int }

func (e *newerSchemaError) Error() string {
	return fmt.Sprintf("schema v%d is newer than this server's v%d", e.found, len(migrations))
}
