// Package session is the client's side of one session with the update
// server: the connection, the deadlines every message is held to (a slow
// link is fine, a silent one is not), and the exchanges that are the same
// whatever the client does with the session: the hello, the report of an
// outcome, and staying open for the server's notices.
//
// It imports syncproto and servertrust, and nothing else of the client.
package session

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/erpupdate/smartsync/internal/termtext"
	"github.com/erpupdate/smartsync/smartclient/internal/servertrust"
	"github.com/erpupdate/smartsync/syncproto"
)

// Conn is the client's side of one session.
type Conn struct {
	nc      net.Conn
	r       *syncproto.Reader
	w       *syncproto.Writer
	timeout time.Duration
	acked   bool // the server took the report: the session ended well
	// stopped makes Read and Expect return at once: a writer failed,
	// and what the stream still holds is of no use (see Interrupt).
	stopped atomic.Bool
	// outOfStep marks a transfer that ended early: the server may still
	// be sending, so the stream is of no more use (see SetOutOfStep).
	outOfStep bool
}

// Dial connects to the server at addr, over TLS as trust says (or plain
// TCP where it allows it). timeout bounds the dial, the handshake and each
// message after (see SetTimeout); ctx ending closes the connection, which
// is how a cancelled sync interrupts a blocked read or write.
func Dial(ctx context.Context, addr string, timeout time.Duration, trust servertrust.Config) (*Conn, error) {
	var tlsConf *tls.Config
	if !trust.Plaintext {
		var err error
		if tlsConf, err = trust.TLS(addr); err != nil {
			return nil, err
		}
	}
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the update server %s: %w", addr, err)
	}
	if tlsConf != nil {
		rec := &firstBytes{Conn: nc}
		tc := tls.Client(rec, tlsConf)
		hctx, cancel := context.WithTimeout(ctx, timeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			if v, ok := rec.plainFrame(); ok {
				return nil, fmt.Errorf("%w: the update server %s answered in plain TCP (protocol version %d), not TLS: it is an appserver older than protocol version 6, or one that is not ours; update the server, or, on a trusted network, set AllowPlaintext=1 in both smartclient.ini [SSL] and AppServer.ini [SSL]",
					servertrust.ErrPlaintextServer, addr, v)
			}
			return nil, fmt.Errorf("TLS handshake with the update server %s: %w", addr, err)
		}
		nc = tc
	}
	c := New(nc, timeout)
	// Closing the connection is how a cancelled context interrupts a
	// blocked read or write.
	context.AfterFunc(ctx, func() { nc.Close() })
	return c, nil
}

// firstBytes keeps the first bytes the server sends, to tell a plain
// frame (an older server's error) from a failed handshake.
type firstBytes struct {
	net.Conn
	head []byte
}

func (c *firstBytes) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if len(c.head) < syncproto.HeaderSize {
		c.head = append(c.head, p[:min(n, syncproto.HeaderSize-len(c.head))]...)
	}
	return n, err
}

// plainFrame reports whether the server began with a frame header, and
// its version.
func (c *firstBytes) plainFrame() (uint8, bool) {
	if len(c.head) < 3 || c.head[0] != syncproto.Magic[0] || c.head[1] != syncproto.Magic[1] {
		return 0, false
	}
	return c.head[2], true
}

// New returns the session over the open connection nc, each message held
// to timeout.
func New(nc net.Conn, timeout time.Duration) *Conn {
	return &Conn{nc: nc, r: syncproto.NewReader(nc), w: syncproto.NewWriter(nc), timeout: timeout}
}

// Open connects once, says hello and reads the welcome.
func Open(ctx context.Context, addr string, timeout time.Duration, trust servertrust.Config, hello syncproto.Hello) (*Conn, syncproto.Welcome, error) {
	c, err := Dial(ctx, addr, timeout, trust)
	if err != nil {
		return nil, syncproto.Welcome{}, err
	}
	if err := c.Send(hello); err != nil {
		c.Close()
		return nil, syncproto.Welcome{}, fmt.Errorf("sending hello: %w", err)
	}
	m, err := c.Expect(syncproto.MsgWelcome)
	if err != nil {
		c.Close()
		return nil, syncproto.Welcome{}, fmt.Errorf("waiting for the server's welcome: %w", err)
	}
	return c, m.(syncproto.Welcome), nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// Timeout returns how long each message may take.
func (c *Conn) Timeout() time.Duration { return c.timeout }

// SetTimeout sets how long each message may take from now on.
func (c *Conn) SetTimeout(d time.Duration) { c.timeout = d }

// RemoteAddr returns the server's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// Received returns the bytes received from the server, frames included.
func (c *Conn) Received() int64 { return c.r.N }

// Sent returns the bytes sent to the server, frames included.
func (c *Conn) Sent() int64 { return c.w.N }

// Send sends msgs within the timeout.
func (c *Conn) Send(msgs ...syncproto.Message) error {
	c.nc.SetWriteDeadline(time.Now().Add(c.timeout))
	for _, m := range msgs {
		if err := c.w.Write(m); err != nil {
			return err
		}
	}
	return c.w.Flush()
}

// ExtendWrite sets the deadline of the writes that follow: the timeout
// from now. Send does it itself; a caller that writes a long run of
// frames with Write calls it first, and again before each part that may
// take long.
func (c *Conn) ExtendWrite() { c.nc.SetWriteDeadline(time.Now().Add(c.timeout)) }

// Write buffers m, to be sent by Flush (or sooner, when the buffer
// fills), within the deadline that ExtendWrite set.
func (c *Conn) Write(m syncproto.Message) error { return c.w.Write(m) }

// Flush sends what Write buffered.
func (c *Conn) Flush() error { return c.w.Flush() }

// Read reads the next message within the timeout.
func (c *Conn) Read() (syncproto.Message, error) {
	c.deadline()
	return Printable(c.r.Read())
}

// Expect reads the next message, of type t, within the timeout.
func (c *Conn) Expect(t syncproto.MsgType) (syncproto.Message, error) {
	c.deadline()
	return Printable(c.r.Expect(t))
}

// ReadIdle reads the next message within wait, which on a session that
// stays (see Stay) is longer than the timeout of every other message: the
// server says nothing but heartbeats until it has something to say. A
// wait of 0 waits however long it takes.
func (c *Conn) ReadIdle(wait time.Duration) (syncproto.Message, error) {
	var deadline time.Time
	if wait > 0 {
		deadline = time.Now().Add(wait)
	}
	c.nc.SetReadDeadline(deadline)
	return Printable(c.r.Read())
}

// Printable escapes the control characters of every text a server sends for
// people (a message, a reason, a build, an update's source) in m, or in
// the *syncproto.Error that err is: this is where everything the client
// reads comes in, so no server-provided string reaches a terminal raw.
func Printable(m syncproto.Message, err error) (syncproto.Message, error) {
	var pe *syncproto.Error
	if errors.As(err, &pe) {
		pe.Message = termtext.Escape(pe.Message)
	}
	e := termtext.Escape
	switch v := m.(type) {
	case syncproto.Welcome:
		v.ServerBuild, v.Message = e(v.ServerBuild), e(v.Message)
		return v, err
	case syncproto.UpToDate:
		v.Build = e(v.Build)
		return v, err
	case syncproto.ManifestHeader:
		v.Build = e(v.Build)
		return v, err
	case syncproto.Notice:
		v.Message = e(v.Message)
		return v, err
	case syncproto.AdminEvent:
		v.Text = e(v.Text)
		return v, err
	case syncproto.UpdateStatus:
		v.ID, v.RunningBuild, v.OldBuild, v.NewBuild = e(v.ID), e(v.RunningBuild), e(v.OldBuild), e(v.NewBuild)
		v.Source, v.Message, v.Session = e(v.Source), e(v.Message), e(v.Session)
		// The notes come from the vendor's feed through the server.
		v.NewestBuild, v.NewestNotes, v.FeedError = e(v.NewestBuild), e(v.NewestNotes), e(v.FeedError)
		return v, err
	case syncproto.AdminSession:
		// Escaped like the status that names them; a real server's
		// names have nothing to escape, so the seal still opens.
		v.Session, v.UpdateID = e(v.Session), e(v.UpdateID)
		return v, err
	}
	return m, err
}

// deadline sets the deadline of the next read: the timeout from now, or
// the past once interrupted.
func (c *Conn) deadline() {
	c.nc.SetReadDeadline(time.Now().Add(c.timeout))
	// After the deadline is set: an interrupt between the two still
	// leaves it in the past.
	if c.stopped.Load() {
		c.nc.SetReadDeadline(time.Unix(1, 0))
	}
}

// Interrupt makes a read blocked in another goroutine, and every later
// one, fail at once, until Resume.
func (c *Conn) Interrupt() {
	c.stopped.Store(true)
	c.nc.SetReadDeadline(time.Unix(1, 0))
}

// Resume undoes Interrupt.
func (c *Conn) Resume() { c.stopped.Store(false) }

// SetOutOfStep marks a transfer that ended early: the server may still be
// sending, so what the stream holds is of no more use, and a report must
// take a session of its own.
func (c *Conn) SetOutOfStep() { c.outOfStep = true }

// OutOfStep reports whether SetOutOfStep was called.
func (c *Conn) OutOfStep() bool { return c.outOfStep }

// ReportTimeout bounds the wait for the server to take a report.
const ReportTimeout = 3 * time.Second

// Report tells the server how the sync ended. It is for the
// administrator's log; the sync's result does not depend on it, so a
// failure is only logged.
func (c *Conn) Report(log *slog.Logger, r syncproto.Report) {
	// A report is worth a short wait, not another full timeout on a
	// connection that may be why the sync failed.
	saved := c.timeout
	c.timeout = min(c.timeout, ReportTimeout)
	defer func() { c.timeout = saved }()
	err := c.Send(r)
	if err == nil {
		_, err = c.Expect(syncproto.MsgReportAck)
	}
	if err != nil {
		log.Info("could not report the outcome to the server", "err", err)
		return
	}
	c.acked = true
}

// ReportEarlier sends the report of an earlier sync (r.At set), right
// after the welcome, and waits for the server's ReportAck; the session
// goes on with its requests (see syncproto's "Reports delivered late").
func (c *Conn) ReportEarlier(r syncproto.Report) error {
	if r.At == 0 {
		return fmt.Errorf("reporting an earlier sync: no time")
	}
	saved := c.timeout
	c.timeout = min(c.timeout, ReportTimeout)
	defer func() { c.timeout = saved }()
	if err := c.Send(r); err != nil {
		return fmt.Errorf("reporting an earlier sync: %w", err)
	}
	if _, err := c.Expect(syncproto.MsgReportAck); err != nil {
		return fmt.Errorf("reporting an earlier sync: %w", err)
	}
	return nil
}

// Acked reports whether the server took the report: the session ended
// well.
func (c *Conn) Acked() bool { return c.acked }

// Stay keeps a session that ended with the server's ReportAck open while
// the program of 'run' runs: it sends Stay and lifts the deadlines, since
// the server says nothing but heartbeats until it has something to say,
// hours later maybe; read it with ReadIdle, whose wait follows the
// heartbeats. It reports whether the session is kept.
func (c *Conn) Stay(log *slog.Logger) bool {
	if err := c.Send(syncproto.Stay{}); err != nil {
		log.Info("could not keep the session open for the server's notices", "err", err)
		return false
	}
	c.nc.SetDeadline(time.Time{})
	return true
}
