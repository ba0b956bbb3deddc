//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/syncproto"
)

// outcome is what one client's sync came to. Durations count from the
// client's start.
type outcome struct {
	welcome   time.Duration // its session's welcome read (0: none seen)
	firstByte time.Duration // the first file data received (0: none, or not measured)
	done      time.Duration // Sync returned, or the process exited
	busy      int           // busy answers it was given
	fetched   int           // files fetched (library clients; -1: not known)
	wire      int64         // bytes received from the server (library clients)
	err       error
	timeout   bool
}

// probe watches one library client: it is the sync's slog handler (the
// library logs "connected" once the server's welcome is read, and each
// answer asking it to come back later, with the code; a record whose
// message says busy counts too), its Progress (the
// first Add is the first file data received) and its Out (the message the
// user sees when told the server is busy).
type probe struct {
	start time.Time
	mu    sync.Mutex
	o     outcome
	// busyOut counts the user's "busy" messages, busyLog the log records
	// with the busy code; the larger is the count (both say the same).
	busyOut, busyLog int
}

func newProbe() *probe { return &probe{start: time.Now()} }

func (p *probe) since() time.Duration { return time.Since(p.start) }

// Enabled takes Info and above, the level of the records the probe reads.
func (p *probe) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (p *probe) Handle(_ context.Context, r slog.Record) error {
	busy := strings.Contains(strings.ToLower(r.Message), "busy")
	r.Attrs(func(a slog.Attr) bool {
		if isBusy(a.Value.Any()) {
			busy = true
			return false
		}
		return true
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.Message == "connected" && p.o.welcome == 0 {
		p.o.welcome = p.since()
	}
	if busy {
		p.busyLog++
	}
	return nil
}

// isBusy reports whether a logged value is the busy code, or an error
// that carries it.
func isBusy(v any) bool {
	switch v := v.(type) {
	case syncproto.Code:
		return v == syncproto.CodeBusy
	case error:
		var pe *syncproto.Error
		return errors.As(v, &pe) && pe.Code == syncproto.CodeBusy
	}
	return false
}

func (p *probe) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p *probe) WithGroup(string) slog.Handler      { return p }

// Write takes what the library tells the user.
func (p *probe) Write(b []byte) (int, error) {
	n := bytes.Count(bytes.ToLower(b), []byte("busy"))
	if n > 0 {
		p.mu.Lock()
		p.busyOut += n
		p.mu.Unlock()
	}
	return len(b), nil
}

// The Progress of the download.
func (p *probe) Start(int, int64) {}
func (p *probe) FileDone()        {}
func (p *probe) Finish()          {}
func (p *probe) Add(n int64) {
	if n <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.o.firstByte == 0 {
		p.o.firstByte = p.since()
	}
}

// result is the outcome once the sync returned res and err.
func (p *probe) result(res *smartclient.Result, err error) outcome {
	p.mu.Lock()
	defer p.mu.Unlock()
	o := p.o
	o.fetched = -1
	if res != nil {
		o.fetched, o.wire = res.Fetched, res.Received
	}
	o.done = p.since()
	o.busy = max(p.busyOut, p.busyLog)
	o.err = err
	o.timeout = isTimeout(err)
	return o
}

// isTimeout tells a timeout (the harness's deadline, or one of the
// client's own) from another failure.
func isTimeout(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) || strings.Contains(err.Error(), "timed out") || strings.Contains(err.Error(), "timeout")
}

// slogNew is a logger writing to h.
func slogNew(h slog.Handler) *slog.Logger { return slog.New(h) }
