package smartclient

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/syncproto"
)

// heartbeatFallback is the server's heartbeat interval assumed until its
// first heartbeat, sent as soon as the session stays, says the interval.
const heartbeatFallback = time.Minute

// watchNotices reads the server's notices on a staying session until it
// ends, tells the user of a restart for an update on out, and at the
// server's deadline calls stop to end the program. Nothing else stops the
// program: a connection that drops (a server that crashed or stopped), a
// server silent for three heartbeat intervals, or one that keeps no more
// staying sessions only ends the watch, and anything but a Notice ends the
// session. Heartbeats are only counted on.
func watchNotices(c *conn, program string, out io.Writer, log *slog.Logger, stop func()) {
	defer c.Close()
	wait := 3 * heartbeatFallback
	for {
		m, err := c.ReadIdle(wait)
		var pe *syncproto.Error
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			log.Warn("no word from the server, not even a heartbeat; taking it as gone (the program runs on, but will not hear of a server restart)", "silent_for", wait)
			return
		case errors.As(err, &pe) && pe.Code == syncproto.CodeBusy:
			log.Warn("the server keeps no more sessions open: the program runs on, but will not hear of a server restart", "server_said", pe.Message)
			return
		case err != nil && (lostConnection(err) || errors.As(err, &pe)):
			log.Info("the session with the server ended", "err", err)
			return
		case err != nil:
			log.Warn("closing the session with the server", "err", err)
			return
		}
		n, ok := m.(syncproto.Notice)
		if !ok {
			log.Warn("closing the session with the server", "err", fmt.Errorf("got %v instead of a notice: %w", m.Type(), syncproto.ErrUnexpected))
			return
		}
		if n.Kind == syncproto.NoticeHeartbeat {
			if n.Seconds > 0 {
				wait = 3 * time.Duration(n.Seconds) * time.Second
			}
			continue
		}
		log.Info("notice from the server", "kind", n.Kind, "seconds", n.Seconds, "message", n.Message)
		// Our own words, from Seconds, rather than the server's Message:
		// the user sees the same sentences whatever the server's build.
		switch n.Kind {
		case syncproto.NoticeCountdown:
			fmt.Fprintf(out, "The server will restart for an update in %s. Please save your work and quit.\n", minSec(n.Seconds))
		case syncproto.NoticeCancelled:
			fmt.Fprintln(out, "The server restart was cancelled.")
		case syncproto.NoticeClosing:
			fmt.Fprintf(out, "The server is restarting now; closing %s.\n", program)
			stop()
			return
		}
	}
}

// minSec writes seconds as m:ss (h:mm:ss from an hour on).
func minSec(s uint32) string {
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// lockedWriter lets the program's output and the server's notices share
// a writer that may not be written concurrently (an *os.File may).
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
