// Package handover owns what a self-update of the server does to its
// installation once an administrator's update is under way: it prepares
// the new installation beside the old one (fetched, verified and unpacked
// as <name>_new), backs up the server's data and carries its
// configuration, certificates and backups into it, and hands over to a
// helper process with a journal. The helper, a copy of the server's
// program run as "appserver selfupdate-helper", swaps the installations,
// starts the new server and checks that it answers, reverts to the old
// build if it does not, and records the outcome. The old build replaces
// <name>_old, the build before it, only once the new one has answered. Recover, which a server runs as
// it starts, finishes what a killed helper left, deciding by the folders.
//
// A server run as a service (Self.Manager) is stopped and started through
// its service manager (Manager), so that the service runs the new build
// afterwards: on systemd the helper runs in a transient unit of its own
// (systemd-run), outside the server's unit, which it stops and starts with
// systemctl; when the helper's unit ends, however, systemd runs the
// helper's own copy of the program (RecoverService), which completes the
// switch, or reverts a new build not yet found healthy, and then starts
// the server's unit. A Windows service and a launchd job are driven
// through kardianos/service; their old server waits for the helper's
// stop, but exits when the helper is gone (AwaitStop). Under any service
// manager, Recover reverts a new build the helper left unchecked.
//
// The server's side of an update (the administrator's session, the
// countdown, the notices to sessions and the refusal of new ones, the
// records of scheduled and past updates, the mail) stays in appserver,
// which calls this package and gives it a Notify for the outcome mail.
// It may import the standard library, syncproto, appserver/release,
// internal/atomicfile, otiai10/copy, kardianos/service and golang.org/x/sys;
// never appserver.
package handover
