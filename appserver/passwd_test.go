package appserver

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// stdinWith returns a pipe's reading end that yields data and then EOF, as
// the stdin of a script does.
func stdinWith(t *testing.T, data string) *os.File {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	go func() {
		w.WriteString(data)
		w.Close()
	}()
	return r
}

// TestPasswdStdin runs the whole command once: bcrypt at cost 12 is slow on
// purpose, and much slower under the race detector, so the line handling
// is tested on its own in TestReadPasswordLine.
func TestPasswdStdin(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if err := Passwd(stdinWith(t, "correct horse\r\nsomething else\n"), &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	out := stdout.String()
	hash, ok := strings.CutPrefix(out, "PasswordHash=")
	if !ok || !strings.HasSuffix(hash, "\n") || strings.Count(out, "\n") != 1 {
		t.Fatalf("stdout = %q, want one line PasswordHash=HASH", out)
	}
	hash = strings.TrimSuffix(hash, "\n")
	if cost, err := bcrypt.Cost([]byte(hash)); err != nil || cost != 12 {
		t.Errorf("hash %q: cost %d, %v; want cost 12", hash, cost, err)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr = %q, want nothing when reading stdin", stderr.String())
	}

	// The printed line, pasted into [ADMIN], must be accepted and let the
	// administrator in with the password of the first line.
	key, _ := testPublicKey(1)
	text := baseINI + "[ADMIN]\n" + out + "[SELFUPDATE]\nPublicKey=" + key + "\n"
	cfg, err := ParseConfig("AppServer.ini", []byte(text), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPassword(cfg, "admin", "correct horse"); err != nil {
		t.Errorf("CheckPassword with the pasted hash: %v", err)
	}
}

func TestReadPasswordLine(t *testing.T) {
	for _, tt := range []struct{ name, input, password string }{
		{"LF", "correct horse\n", "correct horse"},
		{"CRLF", "correct horse\r\n", "correct horse"},
		{"no line end", "correct horse", "correct horse"},
		{"second line ignored", "correct horse\nsomething else\n", "correct horse"},
		{"spaces kept", "  eight ch  \n", "  eight ch  "},
		{"CR inside kept", "a\rbcdefgh\n", "a\rbcdefgh"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pw, err := readPasswordLine(stdinWith(t, tt.input))
			if err != nil || string(pw) != tt.password {
				t.Errorf("got %q, %v; want %q", pw, err, tt.password)
			}
			if err := checkNewPassword(pw); err != nil {
				t.Errorf("checkNewPassword(%q) = %v", pw, err)
			}
		})
	}
	// Eight characters are enough even when they take more bytes.
	if err := checkNewPassword([]byte("éééééééé")); err != nil {
		t.Errorf("checkNewPassword(8 × é) = %v", err)
	}
}

func TestPasswdRefused(t *testing.T) {
	for _, tt := range []struct {
		name  string
		args  []string
		input string
		want  string
		usage bool
	}{
		{"empty line", nil, "\n", "the password is empty", false},
		{"no input", nil, "", "no password on standard input", false},
		{"too short", nil, "1234567\n", "shorter than 8 characters", false},
		{"too short in characters", nil, "ééééééé\n", "shorter than 8 characters", false},
		{"too long", nil, strings.Repeat("x", 73) + "\n", "longer than 72 bytes", false},
		// "argument" and "unknown flag" are the command line's: see
		// TestPasswdCommandLine in appserver/internal/cli.
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := Passwd(stdinWith(t, tt.input), &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
			if errors.Is(err, ErrUsage) != tt.usage {
				t.Errorf("errors.Is(err, ErrUsage) = %v, want %v", !tt.usage, tt.usage)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing on error", stdout.String())
			}
		})
	}
}

// TestPasswdPromptTwice checks the terminal dialogue, with the terminal
// replaced by a list of answers.
func TestPasswdPromptTwice(t *testing.T) {
	for _, tt := range []struct {
		name    string
		answers []string
		want    string // error substring; "" for success
		prompts int
	}{
		{"match", []string{"correct horse", "correct horse"}, "", 2},
		{"mismatch", []string{"correct horse", "correct hors"}, "the two passwords differ", 2},
		{"too short asks once", []string{"short", "short"}, "shorter than 8 characters", 1},
		{"empty", []string{"", ""}, "the password is empty", 1},
		{"read error", nil, "reading the password", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var prompts []string
			pw, err := promptTwice(func(prompt string) ([]byte, error) {
				prompts = append(prompts, prompt)
				if len(tt.answers) == 0 {
					return nil, errors.New("inappropriate ioctl for device")
				}
				a := tt.answers[0]
				tt.answers = tt.answers[1:]
				return []byte(a), nil
			})
			if len(prompts) != tt.prompts {
				t.Errorf("prompts = %q, want %d", prompts, tt.prompts)
			}
			if tt.want == "" {
				if err != nil || string(pw) != "correct horse" {
					t.Errorf("got %q, %v", pw, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestCheckPassword(t *testing.T) {
	// CheckPassword does not look at the cost (ParseConfig does), so the
	// cheap hash keeps this test fast under the race detector.
	_, hash := testHashes()
	enabled := &Config{Admin: AdminConfig{User: "admin", PasswordHash: hash}}
	for _, tt := range []struct {
		name           string
		cfg            *Config
		user, password string
		want           error
	}{
		{"right", enabled, "admin", "correct horse", nil},
		{"wrong user", enabled, "root", "correct horse", ErrBadCredentials},
		{"user differs in case", enabled, "Admin", "correct horse", ErrBadCredentials},
		{"user prefix", enabled, "adm", "correct horse", ErrBadCredentials},
		{"wrong password", enabled, "admin", "correct horsE", ErrBadCredentials},
		{"empty password", enabled, "admin", "", ErrBadCredentials},
		{"password too long for bcrypt", enabled, "admin", "correct horse" + strings.Repeat("x", 80), ErrBadCredentials},
		{"wrong both", enabled, "root", "x", ErrBadCredentials},
		{"disabled", &Config{Admin: AdminConfig{User: "admin"}}, "admin", "correct horse", ErrSelfUpdateDisabled},
		{"disabled, empty credentials", &Config{Admin: AdminConfig{User: "admin"}}, "", "", ErrSelfUpdateDisabled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := CheckPassword(tt.cfg, tt.user, tt.password); err != tt.want {
				t.Errorf("CheckPassword(%q, %q) = %v, want %v", tt.user, tt.password, err, tt.want)
			}
		})
	}
}
