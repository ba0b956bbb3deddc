package mail_test

import (
	netmail "net/mail"
	"strings"
	"testing"

	"github.com/erpupdate/smartsync/appserver/mail"
)

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
