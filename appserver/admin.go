package appserver

import (
	"cmp"
	"context"
	"crypto/ecdh"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/throttle"
	"github.com/erpupdate/smartsync/syncproto"
)

// admin runs an administrator's session (see syncproto's doc): key
// exchange, login with the password or a session token, then one request.
func (s *Server) admin(ctx context.Context, ss *session, clientKey syncproto.AdminKey) error {
	ss.hello = syncproto.Hello{ClientID: "administrator"}
	if _, ok := unthrottled(ss.conn).(*tls.Conn); !ok {
		// The seal of the password is not authenticated: only the pinned
		// TLS key tells the server from a machine in the middle, which
		// plain TCP does not have, even where it is allowed.
		return &syncproto.Error{Code: syncproto.CodeDenied,
			Message: "administrator sessions need TLS: connect without AllowPlaintext"}
	}
	priv, key, err := syncproto.NewAdminKey()
	if err != nil {
		return err
	}
	if err := s.send(ss, key); err != nil {
		return err
	}
	m, err := s.next(ss, s.HandshakeTimeout, "administrator request")
	if err != nil {
		return err
	}
	req, ok := m.(syncproto.Admin)
	if !ok {
		return fmt.Errorf("got %v instead of Admin: %w", m.Type(), syncproto.ErrUnexpected)
	}
	host, _, _ := net.SplitHostPort(ss.conn.RemoteAddr().String())
	guesser := throttle.Key(host) // an IPv6 host's guesses count by /64
	if wait := s.logins.Begin(guesser); wait > 0 {
		s.log.Warn("administrator login refused: too many failures from the address", "client", ss.conn.RemoteAddr().String(), "user", req.User, "wait", wait.Round(time.Second))
		ss.outcome = "login refused"
		return &syncproto.Error{Code: syncproto.CodeDenied, Retry: uint16(min((wait+time.Second-1)/time.Second, 65535)),
			Message: fmt.Sprintf("too many failed logins from this address; try again in %d s", (wait+time.Second-1)/time.Second)}
	}
	sessionName, err := s.authenticate(priv, clientKey, req)
	if err != nil {
		n := s.logins.End(guesser, false)
		s.log.Warn("administrator login refused", "client", ss.conn.RemoteAddr().String(), "user", req.User,
			"token", req.Flags&syncproto.AdminToken != 0, "failures", n, "err", err)
		ss.outcome = "login refused"
		return &syncproto.Error{Code: syncproto.CodeDenied, Message: deniedMessage(err)}
	}
	s.logins.End(guesser, true)
	s.mu.Lock()
	s.admins[ss.raw] = true
	s.mu.Unlock()
	s.log.Info("administrator logged in", "client", ss.conn.RemoteAddr().String(), "user", req.User, "op", int(req.Op), "session", sessionName)
	ss.outcome = "administrator"
	switch req.Op {
	case syncproto.OpStatus:
		st := s.upd.status()
		st.Session = sessionName
		if req.Flags&syncproto.AdminFeed != 0 {
			s.feedFields(&st)
		}
		return s.send(ss, st)
	case syncproto.OpCancel:
		st, err := s.upd.cancelJob(req.User + "@" + host)
		if err != nil {
			return &syncproto.Error{Code: syncproto.CodeRefused, Message: reasonOf(err)}
		}
		return s.send(ss, st)
	}
	return s.adminUpdate(ctx, ss, req, host, priv, clientKey)
}

// authenticate opens the request's credential, bound to every field of
// the request, and checks it: the password, or a session token (which
// admits OpStatus only). It returns the name of the token's session, or
// "" for a password.
func (s *Server) authenticate(priv *ecdh.PrivateKey, clientKey syncproto.AdminKey, req syncproto.Admin) (string, error) {
	secret, err := syncproto.OpenRequest(priv, clientKey, req)
	if err != nil {
		return "", fmt.Errorf("opening the request: %w", err)
	}
	if req.Flags&syncproto.AdminToken == 0 {
		return "", CheckPassword(s.conf(), req.User, string(secret))
	}
	if !s.conf().SelfUpdateEnabled() {
		return "", ErrSelfUpdateDisabled
	}
	if req.Op != syncproto.OpStatus {
		return "", ErrTokenOp
	}
	rec, err := s.tokens.check(s.upd.dir, secret, req.User, time.Now())
	if err != nil {
		return "", fmt.Errorf("checking the session token: %w", err)
	}
	return rec.Session, nil
}

// deniedMessage says why a login was refused, without telling a wrong
// user from a wrong password.
func deniedMessage(err error) string {
	switch {
	case errors.Is(err, ErrSelfUpdateDisabled):
		return "self-update is disabled on this server: [ADMIN] PasswordHash is not set in AppServer.ini"
	case errors.Is(err, syncproto.ErrSeal):
		return "the request does not match its seal: it was changed on the way; nothing was done"
	case errors.Is(err, ErrTokenExpired), errors.Is(err, ErrTokenUnknown), errors.Is(err, ErrTokenOp):
		return "this command's administrator session has expired or is not known to this server; run the command again"
	}
	return "wrong administrator user or password"
}

// adminUpdate starts an update and, for one to run now, streams its steps
// to the administrator until it ends or the server stops for the switch.
func (s *Server) adminUpdate(ctx context.Context, ss *session, req syncproto.Admin, host string, priv *ecdh.PrivateKey, clientKey syncproto.AdminKey) error {
	ur := updateRequest{
		Source: req.Source, Countdown: time.Duration(req.Countdown) * time.Second, Notify: cmp.Or(req.Notify, s.conf().SelfUpdate.Notify),
		AllowDowngrade: req.Flags&syncproto.AdminAllowDowngrade != 0, User: req.User, From: host,
	}
	if req.Source == "" {
		// No source: the newest release of the vendor's feed, checked now,
		// whose archive must then match the feed's size and digest.
		r, source, err := s.feed.newestForUpdate(ctx)
		if err != nil {
			s.log.Warn("self-update request refused", "user", req.User, "client", host, "reason", reasonOf(err))
			return &syncproto.Error{Code: syncproto.CodeRefused, Message: reasonOf(err)}
		}
		s.log.Info("self-update: no source given; taking the newest release of the feed", "build", r.Build, "source", source)
		ur.Source, ur.FeedBuild, ur.FeedSize, ur.FeedSHA256 = source, r.Build, r.Size, r.SHA256
	}
	if req.At != 0 {
		ur.At = time.Unix(req.At, 0)
	}
	// An update run now gets the command's session token, recorded before
	// the update starts, so that the command can always ask the server
	// after the restart for the outcome.
	var tokenMsg *syncproto.AdminSession
	if req.At == 0 {
		ur.ID = newUpdateID()
		expires := time.Now().Add(ur.Countdown + adminTokenLife)
		token, name, err := s.tokens.issue(s.upd.dir, req.User, ur.ID, expires, time.Now())
		if err != nil {
			s.log.Error("self-update request refused: the session token cannot be recorded", "user", req.User, "client", host, "err", err)
			return &syncproto.Error{Code: syncproto.CodeRefused,
				Message: "the server cannot record the administrator's session in its state folder (see its log); nothing was done"}
		}
		tokenMsg = &syncproto.AdminSession{Session: name, UpdateID: ur.ID, Expires: expires.Unix()}
		if err := syncproto.SealToken(priv, clientKey, tokenMsg, token); err != nil {
			return fmt.Errorf("sealing the session token: %w", err)
		}
		clear(token)
	}
	events, unsubscribe := s.upd.subscribe()
	defer unsubscribe()
	j, err := s.upd.request(ur)
	if err != nil && tokenMsg != nil {
		if rerr := s.tokens.revoke(s.upd.dir, tokenMsg.Session); rerr != nil {
			s.log.Warn("forgetting the session token of a refused update", "err", rerr)
		}
	}
	if err != nil {
		var r *refusedError
		if errors.As(err, &r) {
			s.log.Warn("self-update request refused", "user", req.User, "client", host, "reason", r.msg)
			return &syncproto.Error{Code: syncproto.CodeRefused, Message: r.msg}
		}
		return err
	}
	s.log.Warn("self-update requested", "id", j.req.ID, "user", req.User, "client", host, "source", req.Source,
		"countdown", ur.Countdown, "at", ur.At, "notify", req.Notify)
	s.upd.mu.Lock()
	first := j.status
	s.upd.mu.Unlock()
	first.RunningBuild = s.self.Build
	if tokenMsg != nil {
		if err := s.send(ss, *tokenMsg); err != nil {
			return err
		}
	}
	if err := s.send(ss, first); err != nil || req.At != 0 {
		return err
	}
	// The session has no read deadline while it waits for the update, but
	// a write that cannot go through drops it, never the update.
	for {
		select {
		case text := <-events:
			if err := s.send(ss, syncproto.AdminEvent{Text: text}); err != nil {
				return err
			}
		case <-j.done:
			for drained := false; !drained; {
				select {
				case text := <-events:
					if err := s.send(ss, syncproto.AdminEvent{Text: text}); err != nil {
						return err
					}
				default:
					drained = true
				}
			}
			s.upd.mu.Lock()
			st := j.status
			s.upd.mu.Unlock()
			st.RunningBuild = s.self.Build
			if st.State == syncproto.StateFailed {
				return &syncproto.Error{Code: syncproto.CodeRefused, Message: st.Message}
			}
			// A handed-over update ends with the server; the client asks
			// the next one for the outcome.
			return s.send(ss, st)
		case <-ctx.Done():
			return nil
		}
	}
}
