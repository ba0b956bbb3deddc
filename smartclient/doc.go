// Package smartclient is the update client as a library. One sync, as
// sync.go's attempt takes it step by step:
//
//  1. recover: finish any switch a crash interrupted (internal/journal);
//  2. hello: send the installed build, OS and client id; the server's
//     welcome says whether the builds are compatible and updates enabled;
//     an incompatible build asks before a full update (internal/session);
//  3. check: when every file is as the state records it, name the digest
//     of the manifest it came from; a server whose manifest is the same
//     answers "up to date" and the sync ends here (quick.go, and
//     internal/state for the look at every file); first, though, the
//     server's signed release (internal/releasemeta) is
//     checked before anything else it says is believed: signature by a
//     trusted publisher key, OS, expiry, release number; then the
//     manifest's build and digest against it. An "up to date" is
//     believed only for the signed release the client recorded
//     installing (trust.go; .smartclient/publisher.json);
//  4. plan: compare the validated manifest (internal/manifest) with the
//     install folder and the client's own state (.smartclient/state.bin):
//     missing or changed files are fetched, files whose content is known
//     to match only get their mtime fixed, files an earlier sync installed
//     and the server no longer lists are removed, files the client never
//     installed are left alone, preserved files are kept unless missing
//     or the update is full, and the release's empty folders that the
//     install lacks are made (plan.go, preflight.go);
//  5. fetch into .smartclient/staging, verifying every file's size and
//     BLAKE3 hash as it streams; a file whose path holds an older version
//     comes as a patch from it when the server offers one from the
//     content the state records there (patches from history, offered
//     after the manifest), else as a delta; small files are written
//     beside the receiving loop; links and empty folders are made there from the
//     manifest (internal/fetch);
//  6. back up the install into bkp_remote.00N (rotating three,
//     internal/backup), then switch by renames under a journal made
//     durable first (internal/journal);
//  7. record the new state and report the outcome to the server.
//
// Every sync reports how it ended, a failure with its step and reason, an
// interrupted one too (report.go); a report the server does not take is
// kept in .smartclient/pending-reports.json (internal/pending, the last 8)
// and sent right after the welcome of the next session.
//
// Every change to the install folder goes through its file-system seam,
// internal/install. Any failure before step 6 leaves the install folder as
// it was.
package smartclient
