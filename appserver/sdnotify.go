package appserver

import (
	"context"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/erpupdate/smartsync/appserver/internal/handover"
)

// notifyReady tells systemd, when it started the server with Type=notify
// (NOTIFY_SOCKET set), READY=1 once a hello at addr is answered: "systemctl
// start", and a self-update's helper that starts the unit, return when the
// server serves, not when its process exists. The returned function, called
// when the server stops serving, sends STOPPING=1 (before the drain when
// ctx ends first). Without NOTIFY_SOCKET it does nothing.
func notifyReady(ctx context.Context, log *slog.Logger, addr net.Addr) (stopping func()) {
	if !notifySocketSet() {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	target := dialable(addr)
	go func() {
		defer close(done)
		// The listener is open: a hello waits in its backlog until Serve
		// accepts it, so the first answer is the server's own.
		for ctx.Err() == nil {
			hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
			err := handover.Hello(hctx, target)
			hcancel()
			if err == nil {
				// Logged first: once READY=1 is sent, the log is read.
				log.Info("telling systemd the server is ready", "addr", addr.String())
				if _, err := daemon.SdNotify(false, daemon.SdNotifyReady+"\nSTATUS=serving on "+addr.String()); err != nil {
					log.Warn("telling systemd the server is ready", "err", err)
				}
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	stop := context.AfterFunc(ctx, func() {
		daemon.SdNotify(false, daemon.SdNotifyStopping)
	})
	return func() {
		if stop() {
			// Serve ended on its own (a self-update's handoff).
			daemon.SdNotify(false, daemon.SdNotifyStopping)
		}
		cancel()
		<-done
	}
}

// dialable turns a listener's address into one a local client can dial.
func dialable(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func notifySocketSet() bool { return os.Getenv("NOTIFY_SOCKET") != "" }
