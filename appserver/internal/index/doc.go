// Package index keeps the index of one update folder: the manifest of every
// file with its size, mtime, mode and BLAKE3 hash, made by a scan that
// rehashes only what changed (the hash cache, keyed by path, size, mtime,
// inode and change time, persists in the server's state folder), a watch
// of the folder (fsnotify) so that an unchanged folder is not scanned
// again, the manifest encoded as the protocol sends it, and the cache of
// the chunk lists of the files sent as deltas.
//
// Every scan is checked with the clients' own rules (internal/releasecheck):
// a folder every client would refuse (README.TXT beside readme.txt, a file
// aux.log) fails Open, naming every offending path, and a folder changed
// into one on a running server is not served: the last good manifest stays
// current until the folder is fixed (see Index.Refused).
//
// It may import the standard library, syncproto, internal/atomicfile,
// internal/cdc, internal/releasecheck, fsnotify and blake3; it knows
// nothing of the server, its configuration or its sessions, which
// appserver builds on it.
package index
