// Package releases keeps the history of the releases the server has
// published, per client OS, in its state folder: every file once, named by
// its BLAKE3 hash, and one record per release that lists its files.
//
// A release is a thing, not a folder's state (see DESIGN.md, "Releases and
// the estate"): `appserver publish` validates a folder with the clients'
// own rules, copies into the store what it lacks, writes the release's
// record and then moves the OS's pointer to it. A running server reads the
// pointer before every manifest it sends, so the switch is one rename: a
// session that took the previous release keeps reading its files, which are
// never changed, and a new session gets the new release whole.
//
// The layout, under STATE/releases:
//
//	objects/ab/abcdef...        the content of every file kept, named by the
//	                            hex BLAKE3 of its content
//	objects/staging-<random>/   a publish under way: its new objects
//	<os>/000012.json            the record of release 12 of that OS
//	<os>/current.json           {"number": 12}: the release served
//	patches/<base>-<new>.zp     the patch from one file to its next release's
//	                            (internal/zpatch) and the BLAKE3 of its bytes;
//	                            .none for a pair whose patch was not worth keeping
//	hashcache/                  publish's hashes of the folders it published
//	publish.lock                held by the publish under way
//
// Crash safety: a publish writes its new objects into a staging folder,
// makes them durable with one sync of the file system (syncfs(2) on Linux,
// a sync of each file elsewhere), renames them into place, syncs again,
// and only then writes the record and, last, the pointer (each atomically,
// see internal/atomicfile). A publish killed at any point leaves the
// previous release served and at most some unreferenced objects, which the
// next publish's pruning removes; an object's name is never visible before
// its bytes are durable, so one that exists is whole.
//
// Retention: after a publish, the records beyond the newest KeepReleases
// of each OS are removed (never the one served, nor one a caller pins),
// then every object no remaining record names. A session still sending a
// file of a release removed that way gets "changed; retry".
//
// It may import the standard library, internal/atomicfile and BLAKE3; it
// knows nothing of the server, its configuration or the wire.
package releases
