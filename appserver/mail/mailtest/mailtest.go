// Package mailtest runs a real SMTP server on 127.0.0.1 for tests, built on
// github.com/emersion/go-smtp, and records what it is sent.
//
// It exists so that tests of package mail, and of the server that uses it,
// talk to an independent implementation of SMTP (its greeting, EHLO, STARTTLS
// and AUTH) rather than to a stub that shares their assumptions. Only tests
// import it.
package mailtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Options says what the server asks of its clients.
type Options struct {
	// User and Password, when User is not empty, make AUTH PLAIN with these
	// credentials required before MAIL FROM.
	User     string
	Password string
	// TLS makes the server offer STARTTLS, with a self-signed certificate
	// for 127.0.0.1 made at Start; Server.ClientTLS trusts it. Without TLS,
	// AUTH is offered over the plain connection.
	TLS bool
}

// Message is one message the server accepted.
type Message struct {
	// From and To are the envelope: MAIL FROM and every RCPT TO.
	From string
	To   []string
	// Data is the message as sent after DATA, headers and body.
	Data []byte
	// Header is Data's header.
	Header mail.Header
	// Subject is the Subject header with any RFC 2047 encoded words decoded.
	Subject string
	// Body is the body with its Content-Transfer-Encoding (quoted-printable
	// or base64) undone and CRLF turned into LF. Multipart bodies are left
	// as sent.
	Body string
}

// Server is a running SMTP server. Its methods are safe for concurrent use.
type Server struct {
	opt       Options
	addr      *net.TCPAddr
	smtp      *smtp.Server
	clientTLS *tls.Config

	mu       sync.Mutex
	messages []Message
	arrived  chan struct{} // closed, and replaced, when a message arrives
	closed   bool          // the test is over: log nothing more
}

// Start starts a server on 127.0.0.1:0 and closes it when the test ends.
func Start(t testing.TB, opt Options) *Server {
	t.Helper()
	s := &Server{opt: opt, arrived: make(chan struct{})}

	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{server: s}, nil
	}))
	srv.Domain = "localhost"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.MaxMessageBytes = 1 << 20
	srv.MaxRecipients = 50
	// A client that fails on purpose makes the server log; send that to
	// the test's log, and nowhere once the test is over.
	srv.ErrorLog = log.New(writerFunc(func(p []byte) (int, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closed {
			t.Logf("mailtest: %s", bytes.TrimRight(p, "\n"))
		}
		return len(p), nil
	}), "", 0)
	if opt.TLS {
		serverTLS, clientTLS, err := selfSigned()
		if err != nil {
			t.Fatalf("mailtest: %v", err)
		}
		srv.TLSConfig = serverTLS
		s.clientTLS = clientTLS
	} else {
		// Without TLS there is nothing to protect AUTH with; allow it, as
		// a test of AUTH over a plain connection needs.
		srv.AllowInsecureAuth = true
	}
	s.smtp = srv

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mailtest: %v", err)
	}
	s.addr = l.Addr().(*net.TCPAddr)
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(l)
	}()
	t.Cleanup(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		srv.Close()
		// go-smtp closes only the listeners Serve has registered, and
		// Serve may not have started yet.
		l.Close()
		<-served
	})
	return s
}

// Addr is the server's address, "127.0.0.1:port".
func (s *Server) Addr() string { return s.addr.String() }

// Host is "127.0.0.1".
func (s *Server) Host() string { return s.addr.IP.String() }

// Port is the port the server listens on.
func (s *Server) Port() int { return s.addr.Port }

// ClientTLS is a client configuration that trusts the server's certificate,
// for ServerName 127.0.0.1; it is nil when the server does not offer TLS.
// Each call returns a new copy.
func (s *Server) ClientTLS() *tls.Config {
	if s.clientTLS == nil {
		return nil
	}
	return s.clientTLS.Clone()
}

// Messages returns the messages accepted so far, oldest first.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.messages)
}

// Wait waits until at least n messages have been accepted and returns them
// all, or returns those there are and ctx's error when ctx ends first.
func (s *Server) Wait(ctx context.Context, n int) ([]Message, error) {
	for {
		s.mu.Lock()
		msgs, arrived := slices.Clone(s.messages), s.arrived
		s.mu.Unlock()
		if len(msgs) >= n {
			return msgs, nil
		}
		select {
		case <-arrived:
		case <-ctx.Done():
			return msgs, fmt.Errorf("mailtest: waiting for %d messages, got %d: %w", n, len(msgs), context.Cause(ctx))
		}
	}
}

func (s *Server) add(m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.messages = append(s.messages, m)
	close(s.arrived)
	s.arrived = make(chan struct{})
}

// session is one SMTP connection.
type session struct {
	server *Server
	authed bool
	from   string
	to     []string
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string {
	if ss.server.opt.User == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.server.opt.User == "" || mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, user, password string) error {
		if (identity != "" && identity != user) || user != ss.server.opt.User || password != ss.server.opt.Password {
			return smtp.ErrAuthFailed
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.server.opt.User != "" && !ss.authed {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m, err := parse(data)
	if err != nil {
		// Refuse what does not parse, so that the sender's test fails
		// at once rather than on an empty Message later.
		return &smtp.SMTPError{
			Code:         554,
			EnhancedCode: smtp.EnhancedCode{5, 6, 0},
			Message:      "mailtest: " + err.Error(),
		}
	}
	m.From, m.To = ss.from, slices.Clone(ss.to)
	ss.server.add(m)
	return nil
}

func (ss *session) Reset() {
	ss.from, ss.to = "", nil
}

func (ss *session) Logout() error { return nil }

// parse splits a message into header and decoded body.
func parse(data []byte) (Message, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return Message{}, fmt.Errorf("reading the header: %w", err)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		return Message{}, fmt.Errorf("decoding the subject: %w", err)
	}
	var body io.Reader = msg.Body
	switch cte := strings.ToLower(strings.TrimSpace(msg.Header.Get("Content-Transfer-Encoding"))); cte {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, body) // which skips line breaks
	case "", "7bit", "8bit", "binary":
	default:
		return Message{}, fmt.Errorf("unknown Content-Transfer-Encoding %q", cte)
	}
	text, err := io.ReadAll(body)
	if err != nil {
		return Message{}, fmt.Errorf("decoding the body: %w", err)
	}
	return Message{
		Data:    data,
		Header:  msg.Header,
		Subject: subject,
		Body:    strings.ReplaceAll(string(text), "\r\n", "\n"),
	}, nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// selfSigned makes an ECDSA certificate for 127.0.0.1, valid for a day, and
// the server and client configurations that use and trust it.
func selfSigned() (server, client *tls.Config, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating a key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("generating a serial number: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "mailtest"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating a certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing the new certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	server = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}},
		MinVersion:   tls.VersionTLS12,
	}
	client = &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	return server, client, nil
}
