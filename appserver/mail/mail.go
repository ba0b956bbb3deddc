// Package mail sends the administrator a plain-text e-mail over SMTP, such as
// the outcome of a server self-update.
//
// The package does not import package appserver, which calls it with the
// [MAIL] section of AppServer.ini.
package mail

import (
	"fmt"
	netmail "net/mail"
	"strings"
)

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
