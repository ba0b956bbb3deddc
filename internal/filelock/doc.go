// Package filelock takes an OS lock on an open file without waiting:
// flock(2) on Unix, LockFileEx on Windows. The lock goes with the file's
// last descriptor, so a killed process never leaves a stale one. The
// server's state-folder lock and the release store's publish lock use it.
package filelock
