// Package appserver is the update server as a library: it reads
// AppServer.ini, keeps one index per OS update folder (see internal/index:
// a manifest of every file with its BLAKE3 hash, backed by a persistent
// hash cache), runs the compatibility gate and streams the files each
// client asks for over syncproto. The command in cmd/appserver is a thin
// wrapper around Run.
package appserver
