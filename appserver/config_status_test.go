package appserver

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestParseConfigHTTPStatus: [HTTP] and [STATUS] are optional, with the
// console on loopback and 90 days of history by default; every key is
// checked, and a bad value or an unknown key is an error naming the
// file, section and key.
func TestParseConfigHTTPStatus(t *testing.T) {
	hash, _ := testHashes()
	key, _ := testPublicKey(1)
	tests := []struct {
		name    string
		text    string
		listen  string
		status  StatusConfig
		section string // of the error; "" for none
		key     string
		problem string
	}{
		{"absent", "", "127.0.0.1:8088", defaultStatus, "", "", ""},
		{"off", "[HTTP]\nListen=off\n", "", defaultStatus, "", "", ""},
		{"loopback v6", "[http]\nlisten=[::1]:9000\n", "[::1]:9000", defaultStatus, "", "", ""},
		{"any port", "[HTTP]\nListen=127.0.0.1:0\n", "127.0.0.1:0", defaultStatus, "", "", ""},
		{"beyond loopback with a login", "[ADMIN]\nPasswordHash=" + hash + "\n[SELFUPDATE]\nPublicKey=" + key + "\n[HTTP]\nListen=0.0.0.0:8443\n", "0.0.0.0:8443", defaultStatus, "", "", ""},
		{"status set", "[MAIL]\nHost=mail.example.com\nFrom=appserver@example.com\n[STATUS]\nKeepDays=30\nStaleDays=3\nNotify=ti@example.com\nDigestAt=06:05\n",
			"127.0.0.1:8088", StatusConfig{KeepDays: 30, StaleDays: 3, Notify: "ti@example.com", DigestAt: 6*time.Hour + 5*time.Minute}, "", "", ""},
		{"beyond loopback without a login", "[HTTP]\nListen=0.0.0.0:8443\n", "", defaultStatus, "HTTP", "Listen", "is beyond loopback, where the console needs the [ADMIN] login, but [ADMIN] PasswordHash is not set"},
		{"host name", "[HTTP]\nListen=console.example.com:8443\n", "", defaultStatus, "HTTP", "Listen", `"console.example.com" is not an IP address`},
		{"no port", "[HTTP]\nListen=127.0.0.1\n", "", defaultStatus, "HTTP", "Listen", `"127.0.0.1" is not an address to listen on`},
		{"bad port", "[HTTP]\nListen=127.0.0.1:80800\n", "", defaultStatus, "HTTP", "Listen", `"80800" is not a port from 0 to 65535`},
		{"totvs keys", "[HTTP]\nEnable=0\nPort=8181\nListen=127.0.0.1:8089\n", "127.0.0.1:8089", defaultStatus, "", "", ""},
		{"listen twice", "[HTTP]\nListen=127.0.0.1:1\nListen=127.0.0.1:2\n", "", defaultStatus, "HTTP", "Listen", "given 2 times"},
		{"keep 0", "[STATUS]\nKeepDays=0\n", "", defaultStatus, "STATUS", "KeepDays", `"0" is not a number of days from 1 to 3650`},
		{"keep word", "[STATUS]\nKeepDays=ninety\n", "", defaultStatus, "STATUS", "KeepDays", `"ninety" is not a number of days from 1 to 3650`},
		{"stale too long", "[STATUS]\nStaleDays=366\n", "", defaultStatus, "STATUS", "StaleDays", `"366" is not a number of days from 1 to 365`},
		{"notify without mail", "[STATUS]\nNotify=ti@example.com\n", "", defaultStatus, "STATUS", "Notify", "is set but [MAIL] Host is not"},
		{"notify two", "[MAIL]\nHost=mail.example.com\nFrom=appserver@example.com\n[STATUS]\nNotify=a@example.com, b@example.com\n", "", defaultStatus, "STATUS", "Notify", "is not one e-mail address"},
		{"digest at 25:00", "[STATUS]\nDigestAt=25:00\n", "", defaultStatus, "STATUS", "DigestAt", `"25:00" is not a time of day as HH:MM`},
		{"unknown status key", "[STATUS]\nKeepDay=3\n", "", defaultStatus, "STATUS", "KeepDay", "unknown key (did you mean KeepDays?)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("AppServer.ini", []byte(baseINI+tc.text), t.TempDir())
			if tc.key == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.HTTP.Listen != tc.listen {
					t.Errorf("HTTP.Listen = %q, want %q", cfg.HTTP.Listen, tc.listen)
				}
				if cfg.Status != tc.status {
					t.Errorf("Status = %+v, want %+v", cfg.Status, tc.status)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a ConfigError", err)
			}
			if ce.File != "AppServer.ini" || ce.Section != tc.section || ce.Key != tc.key || !strings.Contains(ce.Problem, tc.problem) {
				t.Errorf("got %s (section %q, key %q), want [%s] %s: ...%s...", ce, ce.Section, ce.Key, tc.section, tc.key, tc.problem)
			}
		})
	}
}

// TestHTTPLoopback: which listen addresses are loopback only, served
// without TLS and login.
func TestHTTPLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8088": true, "127.1.2.3:1": true, "[::1]:8088": true, "localhost:8088": true,
		"0.0.0.0:8088": false, "[::]:8088": false, ":8088": false, "10.0.0.1:8088": false, "": false,
	} {
		if got := (HTTPConfig{Listen: addr}).Loopback(); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
