// Package releasemeta is the publisher's signed statement of a release:
// its format, the canonical digest of a release's entries, signing, the
// chain of publisher key lists, and the one verification every client
// runs before it asks for a byte. The server only carries the signed
// bytes (syncproto.Release); it never needs a private key.
//
// It imports only the standard library and BLAKE3, so that both the
// server's index (appserver/internal/index.Manifest) and the client's
// manifest (smartclient/internal/manifest.Manifest) can compute the same
// digest from their own types through the neutral Entry.
//
// # The statement
//
// A Statement says, for one OS folder: the format version (1), the OS
// ("windows", "linux", "darwin"), the build, the release number (a
// uint64 that only grows from one release to the next), when it was
// published and when it expires (UTC, whole seconds), whether the
// publisher deliberately allows it over a higher number (Rollback: a
// client accepts it only when it was published after every release the
// client has installed, so that a rollback replayed later cannot take it
// back further), and the digest of the release.
//
// A client records the highest number and the latest publication time
// (CheckNumber's highest and latest) when it installs a release, or
// confirms that its install holds that release, not when it merely
// verifies one: a workstation that verified release N and failed to
// install it must still take N-1 when a staged rollout halts and serves
// N-1 again. A lying server gains nothing it could not get by never
// serving N: the release taken is not older than the installed one
// unless the publisher signed that rollback after it.
//
// # The digest
//
// The digest is the BLAKE3-256 of
//
//	"smartsync-release-digest v1\x00"
//	for every entry, in manifest order (sorted by path, as the server sends):
//	    u32 len(path) path  u64 size  u32 mode&0o777  u8 flags  [32]hash  u32 len(target) target
//	u8 0xff (end of entries)
//	u32 len(post-install path) path  u32 post-install timeout in whole seconds (0 when no path)
//
// with integers big-endian and flags the bits 1 symbolic link, 2 empty
// folder, 4 preserved. A link's hash is the BLAKE3 of its target, as in
// the manifest. Modification times are not in the digest: they are the
// server's folder's, not the publisher's, and a copy of a signed folder
// to another server must keep its signature.
//
// # The signed file
//
// The signed file ("<update folder>.release" beside the folder on the
// server, and the Meta of a syncproto.Release message) is one line of
// canonical JSON followed by "\n": the bytes encoding/json's Marshal makes
// of the File type, with no other spacing, field order or escaping. A
// decoder re-encodes what it read and refuses the file unless the bytes
// are the same, and refuses unknown fields, so that there is exactly one
// way to read it (ErrFormat). It is at most MaxSize bytes, holds at most
// MaxChain key lists of at most MaxKeys keys each, and at most MaxSigs
// signatures on each signed part:
//
//	{"format":1,
//	 "chain":[{"list":{"version":2,"keys":["ed25519:BASE64",...]},
//	           "signatures":[{"key":"KEYID","sig":"BASE64"}]}, ...],   (omitted when empty)
//	 "statement":{"format":1,"os":"linux","build":"7.00.240501A","number":12,
//	              "published":"2026-12-06T03:00:00Z","expires":"2027-03-06T03:00:00Z",
//	              "rollback":false,"digest":"64 hex digits"},
//	 "signatures":[{"key":"KEYID","sig":"BASE64"}]}
//
// A key is "ed25519:" and the standard base64 of its 32 bytes (the format
// of appserver/release); its ID is the first 8 bytes of the SHA-256 of
// those bytes, in hex. A statement's signature is the ed25519 signature of
//
//	"smartsync-release-metadata v1\x00statement\x00" + canonical JSON of the statement
//
// and a key list's of
//
//	"smartsync-release-metadata v1\x00keylist\x00" + canonical JSON of the list
//
// The prefixes keep these signatures apart from the server archives'
// (appserver/release signs "smartsync-release-signature v1\x00...") and
// from each other, so that no signature made for one can pass for another.
//
// # Key lists (the root chain)
//
// A client trusts one KeyList: a version and its keys. Version 1 is the
// keys an administrator deploys (smartclient.ini's PublisherKey=) or that
// the client trusted on first use. A chain starts with version 1, signed
// by one of its own keys (NewChain): it means nothing to a client that
// holds a list already, and is what a client with none trusts on first
// use (FirstUse); the publisher's tools put it in every signed file, since
// a signature names its key by ID only. To rotate, the publisher appends to
// the chain a list of version N+1 signed by a key of list N (a threshold
// of one signature, which is enough for a single publisher with an
// offline key; a larger one would be a count in the list). Verify walks
// the chain: lists at or below the client's version are skipped, each
// following one must have the next version and a valid signature by a key
// of the list before it, and the statement must be signed by a key of the
// last list. The client keeps the last list as its new KeyList: a key the
// chain removed is then unknown (ErrUnknownKey) from that sync on, even
// in a file that carries no chain.
package releasemeta
