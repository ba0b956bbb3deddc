package appserver

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"
)

// Errors of CheckPassword. A wrong user name and a wrong password give the
// same error, so that a caller cannot tell which one it got right.
var (
	ErrSelfUpdateDisabled = errors.New("appserver: self-update is disabled: [ADMIN] PasswordHash is not set")
	ErrBadCredentials     = errors.New("appserver: wrong user name or password")
)

// Password rules of "appserver passwd".
const (
	// passwordCost is the bcrypt cost of the hashes appserver passwd makes:
	// two above the lowest that AppServer.ini accepts, about a quarter of a
	// second per check on a current server, which is nothing for one login
	// and a lot for someone guessing.
	passwordCost = 12
	// minPasswordLen is counted in characters, maxPasswordLen in bytes,
	// bcrypt's limit: it would otherwise ignore everything past it.
	minPasswordLen = 8
	maxPasswordLen = 72
)

// CheckPassword checks user and password against [ADMIN] in cfg. It returns
// nil for the administrator, ErrSelfUpdateDisabled when no password hash is
// configured, and ErrBadCredentials otherwise.
func CheckPassword(cfg *Config, user, password string) error {
	if !cfg.SelfUpdateEnabled() {
		return ErrSelfUpdateDisabled
	}
	userOK := subtle.ConstantTimeCompare([]byte(user), []byte(cfg.Admin.User)) == 1
	// The password is compared whatever the user name, so that a wrong
	// name takes as long to refuse as a wrong password.
	pwErr := bcrypt.CompareHashAndPassword([]byte(cfg.Admin.PasswordHash), []byte(password))
	if !userOK || pwErr != nil {
		return ErrBadCredentials
	}
	return nil
}

// Passwd is "appserver passwd": it reads a new administrator password
// and prints the [ADMIN] PasswordHash line for it. On a terminal it asks
// twice without echo; otherwise it reads one line from stdin, for scripts.
func Passwd(stdin *os.File, stdout, stderr io.Writer) error {
	var pw []byte
	var err error
	if fd := int(stdin.Fd()); term.IsTerminal(fd) {
		pw, err = promptTwice(func(prompt string) ([]byte, error) {
			fmt.Fprint(stderr, prompt)
			b, err := term.ReadPassword(fd)
			fmt.Fprintln(stderr) // The user's Enter was not echoed either.
			return b, err
		})
	} else {
		pw, err = readPasswordLine(stdin)
	}
	if err != nil {
		return err
	}
	hash, err := hashPassword(pw)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "PasswordHash=%s\n", hash)
	return err
}

// promptTwice reads a password with read, checks it, and reads it again to
// catch a typing mistake that the missing echo hid.
func promptTwice(read func(prompt string) ([]byte, error)) ([]byte, error) {
	pw, err := read("New administrator password: ")
	if err != nil {
		return nil, fmt.Errorf("reading the password: %w", err)
	}
	// Saying at once that it is too short spares typing it again.
	if err := checkNewPassword(pw); err != nil {
		return nil, err
	}
	again, err := read("Same password again: ")
	if err != nil {
		return nil, fmt.Errorf("reading the password: %w", err)
	}
	if subtle.ConstantTimeCompare(pw, again) != 1 {
		return nil, errors.New("the two passwords differ; nothing was changed")
	}
	return pw, nil
}

// readPasswordLine reads the first line of r, without its line end (LF or
// CRLF); anything after it is ignored.
func readPasswordLine(r io.Reader) ([]byte, error) {
	// A bound, so that a file given by mistake is not read whole.
	br := bufio.NewReaderSize(io.LimitReader(r, 4096), 4096)
	line, err := br.ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading the password from standard input: %w", err)
	}
	if err != nil && len(line) == 0 {
		return nil, errors.New("no password on standard input: give it as one line, or run appserver passwd on a terminal")
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	return line, nil
}

// checkNewPassword returns what is wrong with pw as a new password, or nil.
func checkNewPassword(pw []byte) error {
	switch {
	case len(pw) == 0:
		return errors.New("the password is empty")
	case utf8.RuneCount(pw) < minPasswordLen:
		return fmt.Errorf("the password is shorter than %d characters", minPasswordLen)
	case len(pw) > maxPasswordLen:
		return fmt.Errorf("the password is longer than %d bytes, more than bcrypt can use", maxPasswordLen)
	}
	return nil
}

// hashPassword checks pw and returns its bcrypt hash.
func hashPassword(pw []byte) ([]byte, error) {
	if err := checkNewPassword(pw); err != nil {
		return nil, err
	}
	hash, err := bcrypt.GenerateFromPassword(pw, passwordCost)
	if err != nil {
		return nil, fmt.Errorf("hashing the password: %w", err)
	}
	return hash, nil
}
