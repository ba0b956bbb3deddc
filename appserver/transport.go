package appserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/erpupdate/smartsync/syncproto"
)

// tlsRecord is the first byte of every TLS connection: a handshake
// record. A frame starts with syncproto.Magic instead.
const tlsRecord = 0x16

// errPlaintextRefused marks a plain TCP client of a server that accepts
// TLS only; it was told why.
var errPlaintextRefused = errors.New("plain TCP refused: this server accepts TLS only ([SSL] AllowPlaintext is off)")

// secure decides a new connection's transport from its first byte (see
// syncproto's doc, "Transport"): a TLS handshake is completed within
// timeout; a plain frame is served where [SSL] AllowPlaintext
// allows it, and otherwise answered with an Error in the client's own
// protocol version that says why, and closed.
func (s *Server) secure(ctx context.Context, conn net.Conn, timeout time.Duration) (net.Conn, error) {
	conn.SetDeadline(time.Now().Add(timeout))
	defer conn.SetDeadline(time.Time{})
	var first [1]byte
	if _, err := io.ReadFull(conn, first[:]); err != nil {
		return nil, fmt.Errorf("reading the first byte: %w", err)
	}
	pc := &prefixConn{Conn: conn, prefix: first[:]}
	switch {
	case first[0] == tlsRecord:
		tc := tls.Server(pc, s.tlsConfig)
		// The handshake runs on a goroutine of its own, which ends with
		// it: it grows its stack to tens of KiB (the key exchange, the
		// certificate), which the session's goroutine would otherwise
		// keep for the session's life, all day for smartclient run.
		handshake := make(chan error, 1)
		go func() { handshake <- tc.HandshakeContext(ctx) }()
		if err := <-handshake; err != nil {
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		return tc, nil
	case first[0] == syncproto.Magic[0] && s.conf().TLS.AllowPlaintext:
		return pc, nil
	case first[0] == syncproto.Magic[0]:
		return nil, s.refusePlaintext(pc)
	}
	return nil, fmt.Errorf("first byte %#02x is neither a TLS handshake nor a frame", first[0])
}

// firstTLSVersion is the protocol version that brought TLS: a plain
// client of an older one cannot speak TLS at all.
const firstTLSVersion = 6

// refusePlaintext answers a plain frame header: an older client (before
// version 6, when there was no TLS) reads that it must be updated, a
// client of ours configured for plain TCP that this server wants TLS.
func (s *Server) refusePlaintext(conn net.Conn) error {
	var hdr [syncproto.HeaderSize]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return fmt.Errorf("reading a plain frame header: %w", err)
	}
	if hdr[1] != syncproto.Magic[1] {
		return fmt.Errorf("reading a plain frame header: got % x: %w", hdr[:2], syncproto.ErrBadMagic)
	}
	v := hdr[2]
	e := &syncproto.Error{Code: syncproto.CodePlaintext,
		Message: "this server accepts TLS connections only: remove AllowPlaintext from the client's smartclient.ini, or set [SSL] AllowPlaintext=1 in AppServer.ini to allow plain TCP"}
	switch {
	case v < firstTLSVersion && v >= 2:
		e = &syncproto.Error{Code: syncproto.CodeVersion,
			Message: fmt.Sprintf("this server speaks protocol version %d, over TLS; this SmartClient speaks version %d: install a newer SmartClient", syncproto.Version, v)}
	case v != syncproto.Version:
		v = syncproto.Version
	}
	conn.Write(syncproto.AppendErrorFrame(nil, v, e))
	lingerClose(conn)
	return fmt.Errorf("a client of protocol version %d: %w", hdr[2], errPlaintextRefused)
}

// lingerClose ends the server's side of conn after a final answer and
// reads what the client still sends (the rest of its hello) for a
// moment, as net/http does: closing with unread data would send a reset,
// which can destroy the answer before the client reads it.
func lingerClose(conn net.Conn) {
	if pc, ok := conn.(*prefixConn); ok {
		conn = pc.Conn
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	conn.SetReadDeadline(time.Now().Add(busyWriteTimeout))
	io.Copy(io.Discard, io.LimitReader(conn, 1<<20))
}

// prefixConn is a connection whose first bytes were read already.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
