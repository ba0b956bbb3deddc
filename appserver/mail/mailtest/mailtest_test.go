package mailtest_test

import (
	"context"
	"net/smtp"
	"slices"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/mail/mailtest"
)

// The server is checked with the standard library's SMTP client, which
// shares no code with go-smtp or with go-mail.

const data = "From: a@example.com\r\n" +
	"To: b@example.com\r\n" +
	"Subject: =?UTF-8?q?Gr=C3=BC=C3=9Fe?=\r\n" +
	"Content-Type: text/plain; charset=UTF-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"H=C3=A4llo\r\n" +
	"a soft=\r\n" +
	" break\r\n"

func send(t *testing.T, srv *mailtest.Server, auth smtp.Auth) error {
	t.Helper()
	c, err := smtp.Dial(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if tlsConfig := srv.ClientTLS(); tlsConfig != nil {
		if err := c.StartTLS(tlsConfig); err != nil {
			return err
		}
	}
	if auth != nil {
		if err := c.Auth(auth); err != nil {
			return err
		}
	}
	if err := c.Mail("a@example.com"); err != nil {
		return err
	}
	for _, to := range []string{"b@example.com", "c@example.com"} {
		if err := c.Rcpt(to); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(data)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func TestServer(t *testing.T) {
	tests := []struct {
		name string
		opt  mailtest.Options
		auth smtp.Auth
	}{
		{"plain", mailtest.Options{}, nil},
		{"AUTH without TLS", mailtest.Options{User: "u", Password: "p"}, smtp.PlainAuth("", "u", "p", "127.0.0.1")},
		{"STARTTLS with AUTH", mailtest.Options{TLS: true, User: "u", Password: "p"}, smtp.PlainAuth("", "u", "p", "127.0.0.1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := mailtest.Start(t, tt.opt)
			if err := send(t, srv, tt.auth); err != nil {
				t.Fatalf("sending: %v", err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			msgs, err := srv.Wait(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			m := msgs[0]
			if m.From != "a@example.com" || !slices.Equal(m.To, []string{"b@example.com", "c@example.com"}) {
				t.Errorf("envelope %q -> %q", m.From, m.To)
			}
			if string(m.Data) != data {
				t.Errorf("data %q, want %q", m.Data, data)
			}
			if m.Subject != "Grüße" {
				t.Errorf("Subject %q, want %q", m.Subject, "Grüße")
			}
			if want := "Hällo\na soft break\n"; m.Body != want {
				t.Errorf("body %q, want %q", m.Body, want)
			}
			if got := m.Header.Get("To"); got != "b@example.com" {
				t.Errorf("To header %q", got)
			}
		})
	}
}

func TestServerRefuses(t *testing.T) {
	tests := []struct {
		name string
		auth smtp.Auth
	}{
		{"no AUTH", nil},
		{"wrong password", smtp.PlainAuth("", "u", "wrong", "127.0.0.1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := mailtest.Start(t, mailtest.Options{User: "u", Password: "p"})
			if err := send(t, srv, tt.auth); err == nil {
				t.Fatal("the server accepted the message")
			}
			if n := len(srv.Messages()); n != 0 {
				t.Errorf("the server recorded %d messages", n)
			}
		})
	}
}

func TestWaitGivesUp(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if msgs, err := srv.Wait(ctx, 1); err == nil || len(msgs) != 0 {
		t.Fatalf("Wait = %d messages, %v; want none and an error", len(msgs), err)
	}
}

func TestClientTLSWithoutTLS(t *testing.T) {
	if c := mailtest.Start(t, mailtest.Options{}).ClientTLS(); c != nil {
		t.Errorf("ClientTLS = %v without TLS, want nil", c)
	}
}
