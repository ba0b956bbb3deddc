// Package appserver is the update server as a library: it reads
// AppServer.ini, keeps one index per OS update folder (see internal/index:
// a manifest of every file with its BLAKE3 hash, backed by a persistent
// hash cache), runs the compatibility gate and streams the files each
// client asks for over syncproto. It also runs the administrator's
// self-update of the server: the login, the countdown and its notices to
// sessions, the refusal of new sessions and the update's records, handing
// the installation's switch to internal/handover, and it checks the
// vendor's release feed ([SELFUPDATE] Feed) at start and daily, telling the
// administrator of a newer release (feed.go). The command in
// cmd/appserver is a thin wrapper around Run.
package appserver
