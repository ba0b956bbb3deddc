// Package release is the vendor's side of the server self-update and the
// server's check of what it is given: ed25519 signing keys, detached
// signatures of release archives, safe extraction of those archives, and the
// comparison of builds.
//
// A release is a .tar.gz or .zip of the server's installation folder with a
// BUILD file at its root holding the release's build (e.g. "7.00.240601A").
// The vendor makes a key pair once (appserver release keygen), gives the
// public key to administrators for AppServer.ini [SELFUPDATE] PublicKey, and
// signs each archive (appserver release sign), which writes ARCHIVE.sig
// beside it. The server checks the signature with Verify against every key
// the administrator trusts, so that the vendor can rotate keys without a flag
// day, then unpacks the archive with Extract, which refuses anything that
// would write outside its destination; VerifyExtract does both and checks
// that the archive's BUILD is the signed build. version.CheckNewer then refuses a
// release that is not newer than the running server.
//
// The server gets a release with Fetch, from what the administrator gives:
// an absolute path on the server, a file:// URL or an http(s):// URL, with
// the signature beside it as SOURCE.sig. Fetch copies both into a folder of
// the server's own, bounded in size, through temporary files renamed into
// place, and checks nothing but their names and sizes: trust comes from
// Verify alone, so a plain http:// URL is as good as any other.
//
// # The key formats
//
// A public key is one line, "ed25519:" followed by the standard base64 of the
// 32 key bytes. A private key file holds one line, "ed25519-private:"
// followed by the standard base64 of the 32-byte seed (RFC 8032), and is
// written with mode 0600. A key's ID is the first 8 bytes of the SHA-256 of
// its 32 public bytes, in hex; it only helps people tell keys apart.
//
// # The signature format (version 1)
//
// ARCHIVE.sig is UTF-8 text of exactly six lines, each ending in "\n", in
// this order, with one space after the keyword:
//
//	smartsync-release-signature v1
//	key ed25519:<base64 of the 32 public key bytes>
//	build <the build in the archive's BUILD file>
//	size <the archive's length in bytes, decimal>
//	sha256 <the archive's SHA-256, 64 lower-case hex digits>
//	sig <standard base64 of the 64-byte ed25519 signature>
//
// The signature is over the message
//
//	"smartsync-release-signature v1\x00" + build + "\x00" + size + "\x00" + sha256
//
// where size is the decimal text and sha256 the 32 raw digest bytes. The
// prefix separates these signatures from anything else the key might ever
// sign; the build is signed so that an old, genuinely signed archive cannot
// be passed off as a newer build. Nothing else is allowed in the file, so
// that there is one way to read it: an unknown or repeated line, a missing
// line, CR LF line ends or a missing final newline is an error
// (ErrSignatureFormat).
//
// # The release feed
//
// So that a server learns of its own new releases, the vendor publishes a
// feed: a signed list of server releases (appserver release feed), which
// AppServer.ini [SELFUPDATE] Feed names by URL or path. The file is one
// line of canonical JSON (the bytes encoding/json's Marshal makes, checked
// on decode by encoding again) and "\n", at most MaxFeedSize bytes:
//
//	{"feed":{"format":1,"number":1733475600,
//	         "published":"2026-12-06T09:00:00Z","expires":"2027-01-05T09:00:00Z",
//	         "releases":[{"build":"7.01.250101A","platform":"linux/amd64",
//	                      "url":"appserver-7.01.250101A-linux-amd64.tar.gz",
//	                      "size":12345,"sha256":"64 hex digits","notes":"..."}]},
//	 "signatures":[{"key":"ed25519:BASE64","sig":"BASE64"}]}
//
// Each signature is the ed25519 signature, by a publisher key (the same
// keys as the archives', [SELFUPDATE] PublicKey), of
//
//	"smartsync-release-feed v1\x00" + canonical JSON of "feed"
//
// whose prefix keeps it apart from the archives' signatures. A server
// believes a feed (VerifyFeed) only when one signature by a trusted key
// verifies, it has not expired, and its number is not below the highest it
// has seen, so that an old feed replayed cannot hide a newer release. A
// release's URL is absolute or relative to the feed's own; the archive's
// signature is beside it, as for any source, and the archive must also
// have the feed's size and SHA-256 (ErrFeedMismatch).
package release
