// Package syncproto is the wire protocol between smartclient and appserver:
// framing, messages, limits and error codes. It works on io.Reader and
// io.Writer only and knows nothing of folders; this comment is the
// protocol's specification.
//
// # Transport
//
// A session is one TCP connection carrying TLS 1.3 (from version 6): the
// client starts the TLS handshake at once, and the frames below travel
// inside it. The server tells a TLS client from a plain one by the first
// byte (a TLS handshake record starts with 0x16, a frame with 'S'). Where
// both sides are configured to allow it (AllowPlaintext), the frames
// travel over plain TCP instead. A server that receives a plain Hello it
// does not accept answers, in plain text, an Error{CodeVersion} frame
// whose header carries the client's own version, so that an older client
// reads why rather than fail on a version it does not speak.
//
// Who the server is (the pinned key, a CA) is the transport's business;
// what a release may contain is the publisher's (see "Signed releases").
//
// # Frames
//
// Every message travels in one frame:
//
//	offset size field
//	0      2    magic, the bytes 'S' 'C'
//	2      1    protocol version (Version, currently 8)
//	3      1    message type (MsgHello ...)
//	4      4    payload length, big-endian uint32
//	8      n    payload
//
// A reader checks the magic, the version, the type and the length against
// that type's limit (see MaxPayload) before it allocates or reads a payload
// byte, so a peer cannot make the other side allocate more than the largest
// limit (a little over 1 MiB) by lying about a length. Integers are
// big-endian. A string is a uint16 length followed by that many bytes of
// valid UTF-8; every string field has its own limit, checked on decode. A
// hash is the 32-byte BLAKE3-256 digest of a file's content.
//
// # Messages and their flow
//
//	client                               server
//	Hello{build, os, client id,   ->
//	      host, user, path}
//	                              <-     Welcome{build, compatible, enabled, message,
//	                                             flags}
//	Report{..., at != 0} x r      ->     (r >= 0: reports of earlier syncs, see
//	                              <-     ReportAck{}  "Reports delivered late")
//	GetManifest{have, flags}      ->     (only when enabled and the client goes on)
//	                              <-     Error{CodeBusy, Retry}, when have is not current
//	                                     and every transfer slot is taken (see "Admission
//	                                     of transfers"); else
//	                              <-     Release{signed metadata}, when the release is signed
//	                              <-     UpToDate{build}, when have is the current digest; else
//	                              <-     ManifestHeader{build, count, total bytes, post-install}
//	Sketch{more, sums} x s        ->     (only with GetSketch: see "Manifests by difference")
//	                              <-     ManifestEntry x count, or with GetSketch
//	                                     (ManifestEntry | ManifestSame) covering count,
//	                                     then ManifestEnd{digest}; with GetZManifest
//	                                     these frames travel compressed, in
//	                                     ManifestZ{more, data} x z (see "Manifests
//	                                     compressed")
//	                              <-     PatchOffer{more, offers} x o (only with GetPatches:
//	                                     see "Patches from history"; o >= 1)
//	Request{indices} x k          ->     (k >= 0; indices into the manifest)
//	DeltaRequest{index, ...} x d  ->     (d >= 0; in any order with the Requests)
//	BlockRequest{index, ...} x e  ->     (e >= 0; likewise)
//	PatchRequest{index, base} x p ->     (p >= 0; likewise, only for offered patches)
//	RequestEnd{}                  ->
//	                              <-     for every requested index, in request order:
//	                                     FileStart{index, size}, [ChunkList x c],
//	                                     (FileData | FileCopy) x m or FilePatch x m,
//	                                     FileEnd{hash}
//	Report{outcome, build, files, ->
//	       bytes, message, step,
//	       duration, at = 0, id}
//	                              <-     ReportAck{}
//
// After ReportAck, a client that runs the application (smartclient run)
// may send Stay{} and keep the session open: the server then sends
// Notice{countdown, seconds, message} when it is about to restart for an
// update, Notice{cancelled} if that is withdrawn, and Notice{closing} at
// the deadline, after which it closes the session. It also sends
// Notice{heartbeat, seconds} at once and then every seconds (60 by
// default), and drops a session that does not take one; a client that
// hears nothing for three times seconds takes the server as gone. A server
// that keeps as many staying sessions as it may answers Stay with
// Error{CodeBusy} and closes: the client's program runs on, without the
// notices. While a countdown runs,
// a new session gets Error{CodeUpdating, "server is updating, retry in N
// s", Retry: N} instead of Welcome; a client waits Retry seconds plus
// jitter before it tries again.
// Likewise a server that holds as many connections as it may, in total or
// from the client's address, answers a new connection with
// Error{CodeBusy, "server is busy, retry in N s", Retry: N} before it
// reads anything, and closes it (an administrator's AdminKey may still be
// taken on a few connections kept for that).
//
// # Admission of transfers
//
// A server transfers files to at most MaxTransfers sessions at once. The
// busy answer comes not at the hello but at the first request that needs
// a transfer: GetManifest whose Have is not the digest of the current
// manifest (the client will fetch files). That is a design decision, so
// that a no-op check, GetManifest naming the current manifest and answered
// UpToDate, never waits behind transfers and is never refused (a hello
// cannot tell the one from the other). Such a GetManifest takes a transfer
// slot before anything of the manifest is sent, and holds it until the
// last file it requested is sent (or its Report, an error, or the
// connection's end, whichever comes first): the client's install, and
// Stay and the notices after it, hold none. When every slot is taken, the server waits
// briefly (about a second) for one, then answers GetManifest with
// Error{CodeBusy, "server is busy, retry in N s", Retry: N} and closes:
// never a timeout. N comes from the queue (the sessions waiting, and
// those told busy within the last N, over MaxTransfers, times the recent
// transfers' average duration; 1 s to 5 min). A client waits N plus a
// random time up to N more (full jitter) and starts over with a new
// session. The server may also limit the bytes a second it sends, in all
// and to one session; that slows a transfer, it does not fail it.
//
// The client id is made once per install folder and kept (see the
// client's .smartclient/client-id); Host, User and Path (the install
// folder) name the workstation for the administrator. A server that sees one id from two hosts (machines
// cloned from one disk image) sets WelcomeRenewID in its Welcome: the
// client makes itself a new id and sends it from its next session on.
//
// # Reports
//
// Every sync ends with a Report, whatever its outcome: updated, up to
// date, checked, declined, failed, or interrupted (stopped by the user, or
// cut by a lost connection). Step names the step that failed or was
// interrupted, as the client calls it (connect, confirm, manifest, plan,
// preflight, fetch, verify, backup, install, post-install; recover and
// state for a sync that could not start, Build then ""; a server names
// a session cut without a report "transfer"), and Message the
// reason; Duration is the sync's time in milliseconds, Files and Bytes
// what it fetched. A client that fails after the manifest and before its
// requests (a read-only file found by the preflight, say) sends RequestEnd
// with nothing requested first, then its Report.
//
// A client that only checks for an update, or that the user declined,
// sends Report without requesting anything. So does, on a session of its
// own (Hello, Welcome, Report), a client whose transfer ended early (a
// full disk, a file that failed its check): the server may still be
// sending on the first, which the client closes. Either side may send Error{code,
// message} instead of the message it owes and then closes the connection;
// an Error is final.
//
// # Reports delivered late
//
// A report that could not be delivered (the server unreachable, the
// connection lost, the user's Ctrl-C before it went, no ReportAck) is
// kept by the client, the last few of them, and sent at its next
// session, right after Welcome and before GetManifest: Report with At,
// the Unix time in seconds when that earlier sync ended, never 0. The
// server answers each with ReportAck and goes on reading the session's
// requests: a report with At set does not end the session's requests,
// and is never counted for the release the session is served (a staged
// rollout counts the session's own report only, At 0). The client
// forgets a kept report once it is acknowledged. Such reports may come
// on a session whose Welcome has updates disabled too.
//
// Every report carries Report.ID, a random number the client chose for
// its sync (never 0 from this version's clients): a report whose
// ReportAck was lost is kept and sent again, and the server, which did
// take it, records and counts it once, by the client's id and this ID.
//
// # Administrator sessions
//
//	client                               server
//	AdminKey{client's X25519 key} ->     (instead of Hello)
//	                              <-     AdminKey{server's X25519 key}
//	Admin{user, sealed credential, ->
//	      op, source, countdown,
//	      at, notify, flags}
//	                              <-     AdminSession{sealed token, session,
//	                                     update id, expires} (OpUpdate run now)
//	                              <-     AdminEvent{text} x n (OpUpdate, as steps happen)
//	                              <-     UpdateStatus{state, id, builds, when, ..., session,
//	                                     [feed checked, newest build, newest notes, feed error]}
//
// An administrator's session runs inside the TLS of every connection, and
// the client sends it only to a server whose key it has pinned (configured
// fingerprint or CA, or recorded by an earlier sync), never to one it sees
// for the first time. Both AdminKeys are ephemeral, made for the session.
//
// Sealed holds the credential: the password, or with AdminToken the
// session token of an earlier login of the same command. It is sealed
// with AES-256-GCM under a key derived with BLAKE3 from the X25519 shared
// secret and both keys, and every other field of the request (user, op,
// source, countdown, at, notify, flags, the AdminToken flag among them)
// is its associated data (see SealRequest): a request with any field
// changed on the way does not open, and the server refuses it with
// Error{CodeDenied} and does nothing. Where both sides allow plain TCP,
// the seal still keeps the credential from a passive listener and the
// fields from being changed; only TLS tells the client it talks to the
// real server.
//
// A command logs in once. A wrong user, password or token gets
// Error{CodeDenied}, after a delay that grows with repeated failures from
// the address (a token's failures count with the passwords'); a release
// that is refused (bad signature, not newer, unsafe paths) gets
// Error{CodeRefused} naming why. An OpUpdate to run now is answered first
// with AdminSession: a random 256-bit token, sealed under the session's
// key and bound to the session's name, the update and the expiry (the
// countdown and 15 minutes), and the UpdateStatus naming the update. The
// server keeps only the token's hash, with the user, the update and the
// expiry, in its state folder, so that the server that runs after the
// restart knows it too. The session stays until the server stops for the
// switch; the client then reconnects to the same pinned server and asks
// OpStatus with the token (never the password again) until an
// UpdateStatus names its update (ID) in a final state and its session
// (Session). A token admits OpStatus only, for its user, until it
// expires; the client does not fall back to the password when its token
// is refused.
//
// The feed fields of UpdateStatus (FeedChecked, NewestBuild, NewestNotes,
// FeedError: what the server knows of the vendor's release feed, see
// appserver/release) follow Session only in answer to an OpStatus with
// AdminFeed, and only when one of them is set: a status without them is
// byte for byte the one of a server that has no feed, so that a client
// that never asks for them never receives bytes it does not know. A
// decoder reads them when bytes follow Session and refuses them all empty.
// An OpUpdate with an empty Source asks the server to take the newest
// release of its feed; a server without one refuses it (CodeRefused).
//
// # The no-op check
//
// A manifest's digest (see Digester) is the BLAKE3 of its header and entries
// as encoded. A client records the digest of the manifest it last installed
// in full, and when its files are still as it recorded them it sends that
// digest in GetManifest.Have. If the server's current manifest has the same
// digest, it answers UpToDate and the whole check costs one small round
// trip; otherwise, or when Have is zero, it sends the manifest.
//
// # Manifests by difference
//
// A manifest of 20,000 files is about 2 MB, most of it the same from one
// release to the next. A client that keeps the entries of a manifest it
// received (any earlier one) sets GetSketch in GetManifest. When the server
// does not answer UpToDate, it sends the ManifestHeader and flushes it;
// the client then names every entry it keeps, in its order, by its sketch
// (EntrySketch: the first SketchSize bytes of the BLAKE3 of the entry's
// payload), in Sketch frames of at most MaxSketchSums, all but the last
// with More, at most MaxFiles sums in all (one empty frame when it has
// none). The server then sends its count entries in order, each either as
// a ManifestEntry or within a ManifestSame{from, count}: the client's
// entries from, from+1, ... are the server's next ones. The runs name
// increasing entries of the sketch (each from at or past the end of the
// run before), so that the client reads what it keeps once, front to back.
// A ManifestEnd with the manifest's digest follows the last entry; the
// client checks it against the manifest it rebuilt, so that two entries
// with one sketch (odds of about n*m/2^48 for n entries sent and m kept)
// cost a failed check, never a wrong manifest. A sketch costs 6 bytes an
// entry against about 100 for the entry: a release that changes 5% of 20,000
// files sends 0.12 MB of sketch and 0.1 MB of entries instead of 2 MB.
//
// # Manifests compressed
//
// Paths, sizes and times compress well; a release whose files all changed
// their times (every rebuild does) differs from the kept manifest in every
// entry. A client that sets GetZManifest gets, after the ManifestHeader
// (which stays as it is: the client needs its count, and with GetSketch
// sends its Sketch after it), the frames that would follow it (the
// ManifestEntry frames; with GetSketch, the ManifestEntry and
// ManifestSame frames and the ManifestEnd) as one zstd stream, cut into
// ManifestZ frames of 1 to MaxChunk bytes, all but the last with More.
// The stream decompresses to exactly those frames, byte for byte, and
// ends with the last of them: the client reads them as it would read them
// plain, and refuses a stream with any byte after them, one that ends
// inside a frame, or a frame of another type before the ManifestZ
// without More. The stream's window is at most ZWindow (MaxChunk), and it
// decompresses to at most MaxManifestZ(count) bytes: 65 bytes an entry
// besides its path and link target, the paths and the link targets each
// at most MaxManifestPathBytes together, and a ManifestEnd (about 193 MiB
// for MaxFiles entries; a client refuses a manifest whose link targets add
// up to more than MaxManifestPathBytes, as it does for paths). The
// PatchOffer frames that follow the manifest (GetPatches) are not
// compressed. A server compresses a manifest sent whole once and sends the
// same bytes to every client; one sent by sketch, for the session. The
// Go 1.25.1 toolchain's 11,039 entries take 1,174,572 bytes plain and
// 488,848 compressed: the BLAKE3 hashes, 353,248 bytes of them, do not
// compress.
//
// The server reads every Request, DeltaRequest and BlockRequest up to RequestEnd before
// it sends the first file, so neither side ever blocks writing while the
// other is also writing. Requests name manifest indices, never paths, so
// the server only serves files it listed.
//
// File content travels in FileData chunks of at most MaxChunk raw bytes.
// Each chunk is either raw (EncodingRaw) or one complete zstd frame
// (EncodingZstd) that decodes to exactly RawLen bytes; the sender picks raw
// when compression does not pay, and always when GetManifest carried GetRaw
// (a client on a fast link asks for that: compressing costs more time than
// it saves there). A receiver decodes with a bounded window and memory and
// rejects a chunk whose decoded length differs from RawLen, so a compression
// bomb costs it at most MaxChunk bytes. FileEnd carries the BLAKE3 hash of
// the whole content, and the client checks it against the manifest; the
// server sends Error{CodeFileChanged} instead if the file no longer matches
// the manifest. The sum of the chunks' RawLen (and FileCopy lengths) must
// equal FileStart.Size.
//
// # Deltas
//
// For a file it already has in some version (the base), the client sends
// DeltaRequest with the base's content-defined chunks (internal/cdc: FastCDC
// with the gear table of that package, average chunk 2^Bits bytes). The
// server cuts the new file with the same Bits (it keeps those lists in a
// cache keyed by content hash) and sends, in file order, FileCopy{off, len}
// for every run of bytes the base has (off is an offset in the base) and
// FileData for the rest. The client assembles the file from both and checks
// the whole file's BLAKE3 as for any other file: a chunk list that lies, from
// either side, costs a failed check, never a wrong file. With DeltaWantList
// the server first sends the new file's own chunk list in ChunkList frames,
// so that the client can keep it for the next delta without cutting the file
// itself; an empty base with DeltaWantList fetches a whole file and its list.
// A frame with DeltaMore or More set is never empty. A client sends at most
// MaxSessionChunkRefs chunk references per session.
//
// A file of at most MaxBlockFile bytes may be asked for with BlockRequest
// instead, the way rsync asks for files: the client cuts its base into
// blocks of BlockSize bytes (the last may be shorter) and sends a weak and a
// strong sum for each (internal/cdc, "Block sums"); the server rolls the
// weak sum over the new file, and where it and then the strong sum match a
// block of the base, sends FileCopy{off, len} with off the block's offset
// in the base. What is not found travels as FileData. A block request names
// the base in one frame, with exactly one sum per block and at most
// MaxBlockSums; its sums count against MaxSessionChunkRefs like chunk
// references. Content-defined chunks lose about an average chunk around
// each edit, so a small file rebuilt in a few places costs its whole size
// as a DeltaRequest; fixed blocks matched at any offset lose less than a
// block there, for 8 bytes of sums per block.
//
// A ManifestEntry with FlagSymlink is a symbolic link: its Target is a
// relative slash path, Size is len(Target) and Hash the BLAKE3 of Target.
// Links are never requested; the client makes them from the manifest.
//
// A ManifestEntry with FlagDir is a folder that holds nothing in the
// release (a macOS bundle's Contents/Frameworks, say): Size is 0, Target
// empty, Hash all zero, Mode its permission bits and MtimeNs 0, so that
// touching the folder on the server does not change the manifest. Only
// such leaf folders have entries; a folder with files is implied by them,
// and a FlagDir entry that is the parent of another entry is refused, as
// is one with FlagSymlink or FlagPreserve. Folders are never requested;
// the client makes them.
//
// # Patches from history
//
// A server that keeps the releases it published (appserver/internal/releases)
// holds, for a file changed from an older release to the one it serves, a
// patch: the zstd encoding of the new file with the old one as dictionary
// (internal/zpatch), made once per release pair and served to every client
// from a cache. A client that can apply them sets GetPatches in GetManifest;
// after the manifest (after ManifestEnd, or the last ManifestEntry) the
// server then sends PatchOffer frames, all but the last with More, one empty
// frame when it has nothing to offer: for entries of the manifest, the
// BLAKE3 of a base it has a patch from, and the patch's size, sorted by
// index and base, at most MaxSessionPatchOffers in all. A client that holds
// an offered base at that entry's path (its own record of the installed
// file says so, and the file still matches it) asks for the entry with
// PatchRequest{index, base} instead of Request, DeltaRequest or
// BlockRequest; a request for a patch not offered is refused
// (CodeBadRequest). The server answers FileStart{index, size}, the patch in
// FilePatch frames, and FileEnd{hash}; the client applies the patch to its
// base as it arrives, writing at most size bytes, and checks the result's
// BLAKE3 like any other file. A patch that the server finds damaged in its
// cache is not sent: the file follows as FileData instead, whole, and the
// cache entry is made again. A file's frames are all FilePatch or all
// FileData.
//
// # Signed releases
//
// The publisher signs each OS release offline (internal/releasemeta
// defines the format and the digest); the server keeps the signed
// metadata beside the update folder and sends it, unchanged, in a Release
// message before it answers GetManifest. The client checks it before it
// requests a byte: the signature against the publisher keys it trusts,
// the OS, the expiry, the release number against the highest it has
// seen, and, once the manifest is read, the digest of every entry and of
// the post-install step against the signed one. A server with no signed
// release sends no Release message.
//
// # Limits
//
// A manifest holds at most MaxFiles entries; a path is at most MaxPath bytes
// and all of a manifest's paths together at most MaxManifestPathBytes, as
// are all of its link targets;
// a Request frame carries at most MaxRequestBatch indices; builds, OS names
// and client ids are at most MaxShortString bytes; messages at most
// MaxMessage bytes.
//
// # Error codes
//
// See the Code constants. Codes are stable: a new code may be added, a
// code's meaning never changes.
//
// # Version history
//
//	1  2026-11: first version.
//	2  2026-11: GetManifest.Have and UpToDate (the no-op check), GetRaw,
//	   deltas (DeltaRequest, ChunkList, FileCopy). Never released with 1.
//	3  2026-11: server self-update: Stay and Notice, administrator sessions
//	   (AdminKey, Admin, AdminEvent, UpdateStatus), Error.Retry, codes
//	   Updating, Denied and Refused. Never released with 2.
//	4  2026-12: BlockRequest (rsync-style block sums for small files);
//	   GetSketch, Sketch, ManifestSame and ManifestEnd (manifests by
//	   difference). Never released with 3.
//	5  2026-12: FlagDir (empty folders). Never released with 4.
//	6  2026-12: TLS 1.3 transport; Hello.Host and Hello.User; Release
//	   (signed release metadata); NoticeHeartbeat; Welcome.Flags
//	   (WelcomeRenewID: a client id seen from two hosts is renewed);
//	   administrator requests bound to their seal (SealRequest),
//	   AdminToken, AdminSession and UpdateStatus.Session (a command logs
//	   in once); AdminFeed and the feed fields of UpdateStatus (the
//	   vendor's release feed). Never released with 5.
//	7  2026-12: patches from history (GetPatches, PatchOffer,
//	   PatchRequest, FilePatch); manifests compressed (GetZManifest,
//	   ManifestZ). Never released with 6.
//	8  2026-12: Report.Step, Report.Duration and Report.At (reports of
//	   earlier syncs, delivered late, after Welcome); OutcomeInterrupted;
//	   Hello.Path; Report.ID (a report sent twice is recorded once).
//	   Never released with 7.
package syncproto
