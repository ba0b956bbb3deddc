// Package index keeps the index of one update folder: the manifest of every
// file with its size, mtime, mode and BLAKE3 hash, made by a scan that
// rehashes only what changed (the hash cache, keyed by path, size, mtime,
// inode and change time, persists in the server's state folder), a watch
// of the folder (fsnotify) so that an unchanged folder is not scanned
// again, the manifest encoded as the protocol sends it, and the cache of
// the chunk lists of the files sent as deltas.
//
// It may import the standard library, syncproto, internal/atomicfile,
// internal/cdc, fsnotify and blake3; it knows nothing of the server, its
// configuration or its sessions, which appserver builds on it.
package index
