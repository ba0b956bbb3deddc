package mail_test

import (
	"context"
	"errors"
	"net"
	netmail "net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/mail"
	"github.com/erpupdate/smartsync/appserver/mail/mailtest"
)

const (
	from  = "SmartSync <updates@example.com>"
	admin = "admin@example.com"
)

// config is a Config for srv, without TLS or AUTH.
func config(srv *mailtest.Server) mail.Config {
	return mail.Config{
		Host:    srv.Host(),
		Port:    srv.Port(),
		From:    from,
		Timeout: 10 * time.Second,
	}
}

func TestSendDelivers(t *testing.T) {
	const (
		subject = "AppServer updated to 7.00.240601A"
		body    = "The update to 7.00.240601A succeeded.\nÄnderungen: keine.\n"
	)
	tests := []struct {
		name string
		opt  mailtest.Options
	}{
		{"plain", mailtest.Options{}},
		{"plain with AUTH", mailtest.Options{User: "smartsync", Password: "s3cret pass"}},
		{"STARTTLS", mailtest.Options{TLS: true}},
		{"STARTTLS with AUTH", mailtest.Options{TLS: true, User: "smartsync", Password: "s3cret pass"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := mailtest.Start(t, tt.opt)
			cfg := config(srv)
			cfg.User, cfg.Password = tt.opt.User, tt.opt.Password
			if tt.opt.TLS {
				cfg.StartTLS, cfg.TLSConfig = true, srv.ClientTLS()
			}

			if err := mail.Send(t.Context(), cfg, "Admin <"+admin+">", subject, body); err != nil {
				t.Fatalf("Send: %v", err)
			}

			msgs := srv.Messages()
			if len(msgs) != 1 {
				t.Fatalf("server got %d messages, want 1", len(msgs))
			}
			m := msgs[0]
			if m.From != "updates@example.com" {
				t.Errorf("MAIL FROM %q, want updates@example.com", m.From)
			}
			if len(m.To) != 1 || m.To[0] != admin {
				t.Errorf("RCPT TO %q, want [%s]", m.To, admin)
			}
			if m.Subject != subject {
				t.Errorf("Subject %q, want %q", m.Subject, subject)
			}
			if m.Body != body {
				t.Errorf("body %q, want %q", m.Body, body)
			}
			if got := m.Header.Get("To"); !strings.Contains(got, admin) {
				t.Errorf("To header %q does not name %s", got, admin)
			}
			if got := m.Header.Get("Content-Type"); !strings.HasPrefix(got, "text/plain") || !strings.Contains(strings.ToLower(got), "charset=utf-8") {
				t.Errorf("Content-Type %q, want text/plain in UTF-8", got)
			}
			if _, err := m.Header.Date(); err != nil {
				t.Errorf("Date header: %v", err)
			}
			if m.Header.Get("Message-ID") == "" {
				t.Error("no Message-ID header")
			}
		})
	}
}

func TestSendFails(t *testing.T) {
	tests := []struct {
		name string
		opt  mailtest.Options
		// set adjusts the Config made for the server.
		set func(cfg *mail.Config, srv *mailtest.Server)
		// want are the parts of the error, in order.
		want []string
	}{{
		name: "STARTTLS required, not offered",
		opt:  mailtest.Options{},
		set:  func(cfg *mail.Config, _ *mailtest.Server) { cfg.StartTLS = true },
		want: []string{"mail: opening the session with 127.0.0.1:", "STARTTLS"},
	}, {
		name: "certificate not trusted",
		opt:  mailtest.Options{TLS: true},
		set:  func(cfg *mail.Config, _ *mailtest.Server) { cfg.StartTLS = true },
		want: []string{"mail: opening the session with 127.0.0.1:", "certificate"},
	}, {
		name: "wrong password",
		opt:  mailtest.Options{TLS: true, User: "smartsync", Password: "right"},
		set: func(cfg *mail.Config, srv *mailtest.Server) {
			cfg.StartTLS, cfg.TLSConfig = true, srv.ClientTLS()
			cfg.User, cfg.Password = "smartsync", "wrong"
		},
		want: []string{`mail: authenticating as "smartsync" with 127.0.0.1:`, "535"},
	}, {
		name: "wrong password without TLS",
		opt:  mailtest.Options{User: "smartsync", Password: "right"},
		set:  func(cfg *mail.Config, _ *mailtest.Server) { cfg.User, cfg.Password = "smartsync", "wrong" },
		want: []string{`mail: authenticating as "smartsync" with 127.0.0.1:`, "535"},
	}, {
		name: "AUTH not offered",
		opt:  mailtest.Options{},
		set:  func(cfg *mail.Config, _ *mailtest.Server) { cfg.User, cfg.Password = "smartsync", "pw" },
		want: []string{`mail: authenticating as "smartsync" with 127.0.0.1:`, "does not offer AUTH"},
	}, {
		name: "AUTH required, no user",
		opt:  mailtest.Options{User: "smartsync", Password: "right"},
		set:  func(*mail.Config, *mailtest.Server) {},
		want: []string{"mail: sending to admin@example.com via 127.0.0.1:", "authenticate"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := mailtest.Start(t, tt.opt)
			cfg := config(srv)
			tt.set(&cfg, srv)

			err := mail.Send(t.Context(), cfg, admin, "subject", "body")
			if err == nil {
				t.Fatal("Send succeeded")
			}
			assertParts(t, err, tt.want...)
			if !strings.Contains(err.Error(), srv.Addr()) {
				t.Errorf("error %q does not name the server %s", err, srv.Addr())
			}
			if n := len(srv.Messages()); n != 0 {
				t.Errorf("server got %d messages", n)
			}
		})
	}
}

func TestSendServerDown(t *testing.T) {
	// A port that was just in use and is now closed refuses connections.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	start := time.Now()
	err = mail.Send(t.Context(), mail.Config{Host: "127.0.0.1", Port: port, From: from}, admin, "s", "b")
	if err == nil {
		t.Fatal("Send succeeded")
	}
	assertParts(t, err, "mail: connecting to "+l.Addr().String()+": ")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Send took %v to fail", d)
	}
}

func TestSendAborts(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		cancel  time.Duration // cancel ctx after this; 0: do not
		want    error
	}{
		{"ctx cancelled", time.Minute, 100 * time.Millisecond, context.Canceled},
		{"Timeout", 200 * time.Millisecond, 0, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := silent(t)
			ctx := t.Context()
			if tt.cancel > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				time.AfterFunc(tt.cancel, cancel)
			}
			cfg := mail.Config{Host: addr.IP.String(), Port: addr.Port, From: from, Timeout: tt.timeout}

			start := time.Now()
			err := mail.Send(ctx, cfg, admin, "s", "b")
			if !errors.Is(err, tt.want) {
				t.Fatalf("Send: %v, want %v", err, tt.want)
			}
			assertParts(t, err, "mail: opening the session with "+addr.String())
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Send took %v to give up", d)
			}
		})
	}
}

func TestSendCancelledBeforehand(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := mail.Send(ctx, config(srv), admin, "s", "b")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Send: %v, want %v", err, context.Canceled)
	}
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("server got %d messages", n)
	}
}

func TestSendNoMail(t *testing.T) {
	err := mail.Send(t.Context(), mail.Config{From: from}, admin, "s", "b")
	if !errors.Is(err, mail.ErrNoMail) {
		t.Fatalf("Send: %v, want ErrNoMail", err)
	}
}

func TestSendBadRecipient(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{})
	err := mail.Send(t.Context(), config(srv), "admin@example.com\r\nRCPT TO:<evil@example.com>", "s", "b")
	if err == nil {
		t.Fatal("Send succeeded")
	}
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("server got %d messages", n)
	}
}

func TestSendSubjectCannotInjectHeaders(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{})
	const subject = "Update done\r\nBcc: evil@example.com\r\nX-Injected: yes\n\nnot the body"
	if err := mail.Send(t.Context(), config(srv), admin, subject, "the body\n"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("server got %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	for _, h := range []string{"Bcc", "X-Injected"} {
		if v, ok := m.Header[h]; ok {
			t.Errorf("header %s: %q was injected", h, v)
		}
	}
	if len(m.To) != 1 || m.To[0] != admin {
		t.Errorf("RCPT TO %q, want [%s]", m.To, admin)
	}
	if strings.ContainsAny(m.Subject, "\r\n") || !strings.HasPrefix(m.Subject, "Update done") {
		t.Errorf("Subject %q, want one line starting with the subject", m.Subject)
	}
	if m.Body != "the body\n" {
		t.Errorf("body %q, want %q", m.Body, "the body\n")
	}
}

func TestParseAddress(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"admin@example.com", "admin@example.com", true},
		{"  admin@example.com ", "admin@example.com", true},
		{"Admin <a@b.c>", "a@b.c", true},
		{`"Müller, Admin" <mueller@example.com>`, "mueller@example.com", true},
		{"", "", false},
		{"admin", "", false},
		{"a@b.c, d@e.f", "", false},
		{"Admin <a@b.c>, d@e.f", "", false},
		{"a@b.c\r\nBcc: d@e.f", "", false},
		{"a@b.c\n", "", false},
		{"Admin\r\n <a@b.c>", "", false},
		{`"a b"@example.com`, "a b@example.com", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := mail.ParseAddress(tt.in)
			if tt.ok != (err == nil) {
				t.Fatalf("ParseAddress(%q) = %q, %v; want ok %v", tt.in, got, err, tt.ok)
			}
			if got != tt.want {
				t.Errorf("ParseAddress(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "mail: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

// FuzzParseAddress checks that ParseAddress never returns an address with a
// line break, and that what it returns is one address that net/mail reads
// back unchanged, as go-mail will.
func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{
		"admin@example.com", "Admin <a@b.c>", `"a b"@example.com`, `"Müller, Admin" <m@example.com>`,
		"a@b.c, d@e.f", "a@b.c\r\nBcc: d@e.f", "=?utf-8?q?Admin?= <a@b.c>", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := mail.ParseAddress(s)
		if err != nil {
			return
		}
		if strings.ContainsAny(got, "\r\n") {
			t.Fatalf("ParseAddress(%q) = %q, with a line break", s, got)
		}
		back, err := netmail.ParseAddress((&netmail.Address{Address: got}).String())
		if err != nil || back.Address != got {
			t.Fatalf("ParseAddress(%q) = %q, which reads back as %v, %v", s, got, back, err)
		}
	})
}

// assertParts checks that err's text has each of parts, in order.
func assertParts(t *testing.T, err error, parts ...string) {
	t.Helper()
	rest := err.Error()
	for _, p := range parts {
		i := strings.Index(rest, p)
		if i < 0 {
			t.Errorf("error %q: want %q (in order of %q)", err, p, parts)
			return
		}
		rest = rest[i+len(p):]
	}
}

// silent listens on 127.0.0.1:0 and accepts connections but never says a
// word, like a server that hangs, until the test ends.
func silent(t *testing.T) *net.TCPAddr {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().(*net.TCPAddr)
}
