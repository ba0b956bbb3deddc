package smartclient

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/erpupdate/smartsync/syncproto"
)

// watchNotices reads the server's notices on a staying session until it
// ends, tells the user of a restart for an update on out, and at the
// server's deadline calls stop to end the program. Nothing else stops the
// program: a connection that drops (a server that crashed or stopped) only
// ends the watch, and anything but a Notice ends the session.
func watchNotices(c *conn, program string, out io.Writer, log *slog.Logger, stop func()) {
	defer c.Close()
	for {
		m, err := c.ReadIdle()
		var pe *syncproto.Error
		switch {
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
