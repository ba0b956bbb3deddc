// Package mail sends the administrator a plain-text e-mail over SMTP, such as
// the outcome of a server self-update.
//
// Send makes one connection per message: an update is rare, and a connection
// kept open between updates would only go stale. The SMTP conversation itself
// (EHLO, STARTTLS, AUTH, the message's MIME form, Date and Message-ID) is
// left to github.com/wneessen/go-mail; this package decides the policy: TLS is
// either required or not used at all, never opportunistic, so that a
// configuration that asks for TLS cannot silently send the password in the
// clear, and every error names the step and the server, for the log.
//
// The package does not import package appserver, which calls it with the
// [MAIL] section of AppServer.ini.
package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	netmail "net/mail"
	"slices"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
)

// ErrNoMail is returned by Send when no SMTP server is configured (an empty
// Host), so that a caller can tell "mail is off" from a failure to send.
var ErrNoMail = errors.New("mail: no SMTP server configured")

const (
	// DefaultPort is the submission port, used when Config.Port is 0; it is
	// also the default of [MAIL] Port in AppServer.ini.
	DefaultPort = 587
	// DefaultTimeout bounds a whole Send when Config.Timeout is 0.
	DefaultTimeout = 30 * time.Second
)

// Config says how to reach the SMTP server.
type Config struct {
	// Host is the SMTP server's name or address; empty means mail is off.
	Host string
	// Port is the SMTP server's port; 0 means DefaultPort.
	Port int
	// From is the sender, a bare address or one with a display name
	// ("SmartSync <updates@example.com>").
	From string
	// User and Password are for SMTP AUTH (PLAIN, or LOGIN when the server
	// does not offer PLAIN); an empty User means no AUTH.
	User     string
	Password string
	// StartTLS true requires STARTTLS before AUTH and the message, and fails
	// when the server does not offer it; false means no TLS at all, and the
	// password, if any, goes in the clear.
	StartTLS bool
	// TLSConfig is used for STARTTLS; nil means the system's roots and
	// ServerName Host.
	TLSConfig *tls.Config
	// Timeout bounds the whole of Send, from connecting to QUIT; 0 means
	// DefaultTimeout.
	Timeout time.Duration
}

func (c *Config) port() int {
	if c.Port == 0 {
		return DefaultPort
	}
	return c.Port
}

// addr is the server's host:port, as errors name it.
func (c *Config) addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.port())) }

// ParseAddress checks that s is exactly one e-mail address, possibly with a
// display name ("Admin <admin@example.com>"), and returns the bare address.
// It refuses lists and line breaks, which have no place in one recipient.
func ParseAddress(s string) (string, error) {
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("mail: address %q contains a line break", s)
	}
	a, err := netmail.ParseAddress(s)
	if err != nil {
		// ParseAddress also refuses "a@b.c, d@e.f": a list is not one address.
		return "", fmt.Errorf("mail: address %q: %w", s, err)
	}
	return a.Address, nil
}

// Send sends one plain-text UTF-8 message with the given subject and body
// to the address to, through the server cfg describes. It returns ErrNoMail,
// and does nothing, when cfg.Host is empty. Cancelling ctx, or cfg.Timeout
// running out, aborts the conversation at whatever step it is in.
//
// A line break in subject becomes a space: the subject is a header, and a
// line break there must not start another one.
func Send(ctx context.Context, cfg Config, to string, subject, body string) error {
	if cfg.Host == "" {
		return ErrNoMail
	}
	addr := cfg.addr()
	rcpt, err := ParseAddress(to)
	if err != nil {
		return err
	}
	msg, err := message(cfg.From, rcpt, subject, body)
	if err != nil {
		return err
	}

	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout,
		fmt.Errorf("%w: the server took more than %v", context.DeadlineExceeded, timeout))
	defer cancel()

	// go-mail bounds the dial with a context and each command with a
	// deadline, but nothing watches ctx once connected; so the connection
	// is closed when ctx ends, which fails whatever read or write is under
	// way. It is also closed on every return, since go-mail leaves it open
	// when the greeting, STARTTLS or AUTH fails.
	var conn net.Conn
	stop := func() bool { return false }
	dial := func(dialCtx context.Context, network, address string) (net.Conn, error) {
		c, err := new(net.Dialer).DialContext(dialCtx, network, address)
		if err != nil {
			return nil, err
		}
		conn = c
		stop = context.AfterFunc(ctx, func() { c.Close() })
		return c, nil
	}
	defer func() {
		stop()
		if conn != nil {
			conn.Close()
		}
	}()

	a := &auth{user: cfg.User, password: cfg.Password, host: cfg.Host, plaintext: !cfg.StartTLS}
	client, err := newClient(cfg, timeout, dial, a)
	if err != nil {
		return fmt.Errorf("mail: %s: %w", addr, err)
	}

	// fail names the step and prefers ctx's reason to the closed
	// connection's error it caused.
	fail := func(step string, err error) error {
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return fmt.Errorf("mail: %s: %w", step, err)
	}

	session, err := client.DialToSMTPClientWithContext(ctx)
	switch {
	case err == nil:
	case conn == nil:
		return fail("connecting to "+addr, err)
	case a.started:
		return fail(fmt.Sprintf("authenticating as %q with %s", cfg.User, addr), err)
	default:
		// The greeting, EHLO or STARTTLS; go-mail's error says which.
		return fail("opening the session with "+addr, err)
	}
	if err := client.SendWithSMTPClient(session, msg); err != nil {
		return fail(fmt.Sprintf("sending to %s via %s", rcpt, addr), err)
	}
	// The server has taken the message once it accepted the data; a failed
	// QUIT does not undo that, and reporting it would only invite a second
	// copy, so its error is dropped.
	_ = client.CloseWithSMTPClient(session)
	return nil
}

// newClient configures a go-mail client for one message.
func newClient(cfg Config, timeout time.Duration, dial gomail.DialContextFunc, a *auth) (*gomail.Client, error) {
	tlsConfig := cfg.TLSConfig
	if tlsConfig == nil {
		tlsConfig = &tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12}
	} else {
		tlsConfig = tlsConfig.Clone()
	}
	policy := gomail.NoTLS
	if cfg.StartTLS {
		policy = gomail.TLSMandatory
	}
	opts := []gomail.Option{
		gomail.WithPort(cfg.port()),
		// ctx bounds the whole send, and its end says why; go-mail's own
		// deadlines, which would fail with a bare "i/o timeout", are only
		// a backstop and must not win the race.
		gomail.WithTimeout(timeout + time.Second),
		gomail.WithTLSPolicy(policy),
		gomail.WithTLSConfig(tlsConfig),
		gomail.WithDialContextFunc(dial),
		// One message per fresh connection: a NOOP before it and a RSET
		// after it are round trips that can only fail, and a failed RSET
		// would report a delivered message as not sent.
		gomail.WithoutNoop(),
		gomail.WithoutRset(),
	}
	if cfg.User != "" {
		opts = append(opts, gomail.WithSMTPAuthCustom(a))
	}
	return gomail.NewClient(cfg.Host, opts...)
}

// message builds the e-mail; go-mail adds Date, Message-ID and MIME-Version
// when it writes it.
func message(from, to, subject, body string) (*gomail.Msg, error) {
	msg := gomail.NewMsg()
	if err := msg.From(from); err != nil {
		return nil, fmt.Errorf("mail: sender %q: %w", from, err)
	}
	// Not msg.To(to): it would parse the bare address again, which fails
	// for one with a quoted local part ("a b"@example.com).
	msg.ToMailAddress(&netmail.Address{Address: to})
	msg.Subject(strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, subject))
	msg.SetBodyString(gomail.TypeTextPlain, body)
	return msg, nil
}

// auth is SMTP AUTH with go-mail's PLAIN, or its LOGIN for servers that
// offer only that (as some Microsoft ones do). It stands in for go-mail's own
// choice of mechanism, which never picks either over a connection without
// TLS even when told that is intended, and it notes that AUTH began, so that
// Send can name that step when it fails.
type auth struct {
	user, password, host string
	// plaintext allows the password over a connection without TLS, which
	// go-mail otherwise refuses; Send sets it when TLS is off by choice.
	plaintext bool

	started bool
	mech    smtp.Auth
}

func (a *auth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	a.started = true
	switch {
	case slices.Contains(server.Auth, "PLAIN"):
		a.mech = smtp.PlainAuth("", a.user, a.password, a.host, a.plaintext)
	case slices.Contains(server.Auth, "LOGIN"):
		a.mech = smtp.LoginAuth(a.user, a.password, a.host, a.plaintext)
	case len(server.Auth) == 0 && !server.TLS:
		return "", nil, errors.New("the server does not offer AUTH on a connection without TLS")
	case len(server.Auth) == 0:
		return "", nil, errors.New("the server does not offer AUTH")
	default:
		return "", nil, fmt.Errorf("the server offers neither PLAIN nor LOGIN, only %s", strings.Join(server.Auth, " "))
	}
	return a.mech.Start(server)
}

func (a *auth) Next(fromServer []byte, more bool) ([]byte, error) {
	return a.mech.Next(fromServer, more)
}
