package appserver

import (
	"crypto/ed25519"
	"encoding/base64"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// testHashes are bcrypt hashes of "correct horse" at cost 10 (the lowest
// accepted) and 4 (too cheap), made once: bcrypt is slow on purpose.
var testHashes = sync.OnceValues(func() (good, cheap string) {
	h10, err := bcrypt.GenerateFromPassword([]byte("correct horse"), 10)
	if err != nil {
		panic(err)
	}
	h4, err := bcrypt.GenerateFromPassword([]byte("correct horse"), 4)
	if err != nil {
		panic(err)
	}
	return string(h10), string(h4)
})

// testPublicKey returns a deterministic ed25519 public key, in the form
// [SELFUPDATE] PublicKey wants, and its bytes.
func testPublicKey(seed byte) (string, ed25519.PublicKey) {
	pub := ed25519.NewKeyFromSeed([]byte(strings.Repeat(string(rune('a'+seed)), ed25519.SeedSize))).Public().(ed25519.PublicKey)
	return "ed25519:" + base64.StdEncoding.EncodeToString(pub), pub
}

const baseINI = "[TCP]\nPort=1234\n[UPDATE]\nEnable=0\n"

func TestParseConfigSelfUpdateDefaults(t *testing.T) {
	cfg, err := ParseConfig("AppServer.ini", []byte(baseINI), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Admin.User != "admin" || cfg.Admin.PasswordHash != "" || cfg.SelfUpdateEnabled() {
		t.Errorf("Admin = %+v, enabled %v; want user admin, no hash, disabled", cfg.Admin, cfg.SelfUpdateEnabled())
	}
	su := cfg.SelfUpdate
	if su.PublicKeys != nil || su.Carry != nil || su.HealthTimeout != 30*time.Second {
		t.Errorf("SelfUpdate = %+v, want no keys, no Carry, HealthTimeout 30s", su)
	}
	want := MailConfig{Port: 587, StartTLS: true}
	if cfg.Mail != want {
		t.Errorf("Mail = %+v, want %+v", cfg.Mail, want)
	}

	// Empty sections and blanked keys mean the same as absent ones.
	text := baseINI + "[ADMIN]\nUser=\nPasswordHash=\n[SELFUPDATE]\nPublicKey=\nCarry=\nHealthTimeout=\n[MAIL]\nHost=\nPort=\nFrom=\nUser=\nPassword=\n"
	cfg2, err := ParseConfig("AppServer.ini", []byte(text), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if cfg2.Admin != cfg.Admin || cfg2.SelfUpdate.HealthTimeout != su.HealthTimeout || len(cfg2.SelfUpdate.PublicKeys)+len(cfg2.SelfUpdate.Carry) != 0 || cfg2.Mail != want {
		t.Errorf("blanked keys gave %+v %+v %+v, want the defaults", cfg2.Admin, cfg2.SelfUpdate, cfg2.Mail)
	}
}

func TestParseConfigSelfUpdateGood(t *testing.T) {
	hash, _ := testHashes()
	key1, pub1 := testPublicKey(1)
	key2, pub2 := testPublicKey(2)
	tests := []struct {
		name  string
		text  string
		check func(t *testing.T, cfg *Config)
	}{
		{"admin and one key", "[admin]\nuser=root\npasswordhash=" + hash + "\n[selfupdate]\npublickey=" + key1 + "\n",
			func(t *testing.T, cfg *Config) {
				if cfg.Admin.User != "root" || cfg.Admin.PasswordHash != hash || !cfg.SelfUpdateEnabled() {
					t.Errorf("Admin = %+v", cfg.Admin)
				}
				if len(cfg.SelfUpdate.PublicKeys) != 1 || !cfg.SelfUpdate.PublicKeys[0].Equal(pub1) {
					t.Errorf("PublicKeys = %v", cfg.SelfUpdate.PublicKeys)
				}
			}},
		{"two keys with a comment", "[ADMIN]\nPasswordHash=" + hash + " ; made by appserver passwd\n[SELFUPDATE]\nPublicKey=" + key1 + ", " + key2 + ",\t; old, new\n",
			func(t *testing.T, cfg *Config) {
				ks := cfg.SelfUpdate.PublicKeys
				if len(ks) != 2 || !ks[0].Equal(pub1) || !ks[1].Equal(pub2) {
					t.Errorf("PublicKeys = %v", ks)
				}
			}},
		{"key without admin", "[SELFUPDATE]\nPublicKey=" + key2 + "\n",
			func(t *testing.T, cfg *Config) {
				if cfg.SelfUpdateEnabled() || len(cfg.SelfUpdate.PublicKeys) != 1 {
					t.Errorf("got %+v %+v", cfg.Admin, cfg.SelfUpdate)
				}
			}},
		{"Carry and HealthTimeout", "[SELFUPDATE]\nCarry=license.key, data/custom , certs/extra.pem\nHealthTimeout=5\n",
			func(t *testing.T, cfg *Config) {
				if got := strings.Join(cfg.SelfUpdate.Carry, "|"); got != "license.key|data/custom|certs/extra.pem" {
					t.Errorf("Carry = %q", cfg.SelfUpdate.Carry)
				}
				if cfg.SelfUpdate.HealthTimeout != 5*time.Second {
					t.Errorf("HealthTimeout = %v", cfg.SelfUpdate.HealthTimeout)
				}
			}},
		{"Feed URL and Notify", "[SELFUPDATE]\nPublicKey=" + key1 + "\nFeed=https://dl.example.com/appserver/feed.json\nNotify=ERP admin <admin@example.com>\n[MAIL]\nHost=smtp\nFrom=a@b.c\n",
			func(t *testing.T, cfg *Config) {
				if cfg.SelfUpdate.Feed != "https://dl.example.com/appserver/feed.json" || cfg.SelfUpdate.Notify != "admin@example.com" {
					t.Errorf("Feed %q, Notify %q", cfg.SelfUpdate.Feed, cfg.SelfUpdate.Notify)
				}
			}},
		{"Feed relative path", "[SELFUPDATE]\nPublicKey=" + key1 + "\nFeed=feeds/feed.json\n",
			func(t *testing.T, cfg *Config) {
				if !filepath.IsAbs(cfg.SelfUpdate.Feed) || !strings.HasSuffix(filepath.ToSlash(cfg.SelfUpdate.Feed), "/feeds/feed.json") {
					t.Errorf("Feed %q, want an absolute path under the configuration's folder", cfg.SelfUpdate.Feed)
				}
			}},
		{"HealthTimeout=600", "[SELFUPDATE]\nHealthTimeout=600\n",
			func(t *testing.T, cfg *Config) {
				if cfg.SelfUpdate.HealthTimeout != 600*time.Second {
					t.Errorf("HealthTimeout = %v", cfg.SelfUpdate.HealthTimeout)
				}
			}},
		{"full mail", "[MAIL]\nHost=smtp.example.com\nPort=465\nFrom=ERP server <erp@example.com>\nUser=erp\nPassword=`s3cret ;x`\nStartTLS=0\n",
			func(t *testing.T, cfg *Config) {
				want := MailConfig{Host: "smtp.example.com", Port: 465, From: "ERP server <erp@example.com>", User: "erp", Password: "s3cret ;x", StartTLS: false}
				if cfg.Mail != want {
					t.Errorf("Mail = %+v, want %+v", cfg.Mail, want)
				}
			}},
		{"mail without auth, IPv6 host", "[mail]\nhost=::1\nfrom=erp@example.com\nstarttls=yes\n",
			func(t *testing.T, cfg *Config) {
				want := MailConfig{Host: "::1", Port: 587, From: "erp@example.com", StartTLS: true}
				if cfg.Mail != want {
					t.Errorf("Mail = %+v, want %+v", cfg.Mail, want)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig("AppServer.ini", []byte(baseINI+tt.text), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, cfg)
		})
	}
}

func TestParseConfigSelfUpdateErrors(t *testing.T) {
	hash, cheap := testHashes()
	key1, _ := testPublicKey(1)
	admin := "[ADMIN]\nPasswordHash=" + hash + "\n"
	short := base64.StdEncoding.EncodeToString(make([]byte, 31))
	tests := []struct {
		name    string
		text    string
		section string
		key     string
		problem string // substring of Problem
	}{
		{"ADMIN unknown key", "[ADMIN]\nPaswordHash=x\n", "ADMIN", "PaswordHash", "unknown key (did you mean PasswordHash?)"},
		{"ADMIN unknown key 2", "[ADMIN]\nUsers=x\n", "ADMIN", "Users", "unknown key (did you mean User?); known keys are User, PasswordHash"},
		{"User with a space", "[ADMIN]\nUser=the admin\n", "ADMIN", "User", `"the admin" is not a valid user name`},
		{"User too long", "[ADMIN]\nUser=" + strings.Repeat("a", 65) + "\n", "ADMIN", "User", "is not a valid user name"},
		{"User twice", "[ADMIN]\nUser=a\nuser=b\n", "ADMIN", "User", "given 2 times"},
		{"PasswordHash plain text", "[ADMIN]\nPasswordHash=secret\n", "ADMIN", "PasswordHash", "is not a bcrypt hash"},
		{"PasswordHash truncated", "[ADMIN]\nPasswordHash=" + hash[:59] + "\n", "ADMIN", "PasswordHash", "is not a bcrypt hash"},
		{"PasswordHash bad alphabet", "[ADMIN]\nPasswordHash=" + hash[:59] + "!\n", "ADMIN", "PasswordHash", "is not a bcrypt hash"},
		{"PasswordHash unknown version", "[ADMIN]\nPasswordHash=$3a" + hash[3:] + "\n", "ADMIN", "PasswordHash", "is not a bcrypt hash"},
		{"PasswordHash cost 4", "[ADMIN]\nPasswordHash=" + cheap + "\n", "ADMIN", "PasswordHash", "bcrypt cost 4 is below 10"},
		{"PasswordHash bare", "[ADMIN]\nPasswordHash\n", "ADMIN", "PasswordHash", "has no value"},
		{"PublicKey required", admin, "SELFUPDATE", "PublicKey", "is required when [ADMIN] PasswordHash is set"},
		{"PublicKey required, empty", admin + "[SELFUPDATE]\nPublicKey=\n", "SELFUPDATE", "PublicKey", "is required when [ADMIN] PasswordHash is set"},
		{"PublicKey without prefix", admin + "[SELFUPDATE]\nPublicKey=" + key1[len("ed25519:"):] + "\n", "SELFUPDATE", "PublicKey", "does not start with ed25519:"},
		{"PublicKey other type", "[SELFUPDATE]\nPublicKey=rsa:AAAA\n", "SELFUPDATE", "PublicKey", `"rsa:AAAA" does not start with ed25519:`},
		{"PublicKey bad base64", "[SELFUPDATE]\nPublicKey=ed25519:!!!!\n", "SELFUPDATE", "PublicKey", "is not valid base64"},
		{"PublicKey unpadded", "[SELFUPDATE]\nPublicKey=" + strings.TrimRight(key1, "=") + "\n", "SELFUPDATE", "PublicKey", "is not valid base64"},
		{"PublicKey 31 bytes", admin + "[SELFUPDATE]\nPublicKey=ed25519:" + short + "\n", "SELFUPDATE", "PublicKey", "holds 31 bytes; an ed25519 public key is 32"},
		{"PublicKey listed twice", "[SELFUPDATE]\nPublicKey=" + key1 + "," + key1 + "\n", "SELFUPDATE", "PublicKey", "is listed twice"},
		{"PublicKey repeated line", admin + "[SELFUPDATE]\nPublicKey=" + key1 + "\nPublicKey=" + key1 + "\n", "SELFUPDATE", "PublicKey", "given 2 times"},
		{"Carry absolute", "[SELFUPDATE]\nCarry=/etc/passwd\n", "SELFUPDATE", "Carry", `"/etc/passwd" is absolute; give a path relative to the server's installation folder`},
		{"Carry ..", "[SELFUPDATE]\nCarry=ok, ../x\n", "SELFUPDATE", "Carry", `"../x" goes outside the server's installation folder`},
		{"Carry drive", "[SELFUPDATE]\nCarry=C:/x\n", "SELFUPDATE", "Carry", "contains a colon"},
		{"Carry backslash", "[SELFUPDATE]\nCarry=certs\\a.pem\n", "SELFUPDATE", "Carry", "contains a backslash"},
		{"Carry unclean", "[SELFUPDATE]\nCarry=a/./b\n", "SELFUPDATE", "Carry", `write "a/b"`},
		{"HealthTimeout 4", "[SELFUPDATE]\nHealthTimeout=4\n", "SELFUPDATE", "HealthTimeout", `"4" is not a number of seconds from 5 to 600`},
		{"HealthTimeout 601", "[SELFUPDATE]\nHealthTimeout=601\n", "SELFUPDATE", "HealthTimeout", `"601" is not a number of seconds`},
		{"HealthTimeout 30s", "[SELFUPDATE]\nHealthTimeout=30s\n", "SELFUPDATE", "HealthTimeout", `"30s" is not a number of seconds`},
		{"Feed ftp", "[SELFUPDATE]\nPublicKey=" + key1 + "\nFeed=ftp://x/feed.json\n", "SELFUPDATE", "Feed", `the scheme "ftp" is not supported`},
		{"Feed with a password", "[SELFUPDATE]\nPublicKey=" + key1 + "\nFeed=https://u:secret@x/feed.json\n", "SELFUPDATE", "Feed", "user name or password is refused"},
		{"Feed other host's file", "[SELFUPDATE]\nPublicKey=" + key1 + "\nFeed=file://other/feed.json\n", "SELFUPDATE", "Feed", `names the host "other"`},
		{"Feed without a key", "[SELFUPDATE]\nFeed=https://dl.example.com/feed.json\n", "SELFUPDATE", "Feed", "is set but [SELFUPDATE] PublicKey is not"},
		{"Notify not an address", "[SELFUPDATE]\nNotify=admin at example\n[MAIL]\nHost=smtp\nFrom=a@b.c\n", "SELFUPDATE", "Notify", `"admin at example" is not one e-mail address`},
		{"Notify two addresses", "[SELFUPDATE]\nNotify=a@b.c, d@e.f\n[MAIL]\nHost=smtp\nFrom=a@b.c\n", "SELFUPDATE", "Notify", "is not one e-mail address"},
		{"Notify without mail", "[SELFUPDATE]\nNotify=admin@example.com\n", "SELFUPDATE", "Notify", "is set but [MAIL] Host is not"},
		{"SELFUPDATE unknown key", "[SELFUPDATE]\nPublicKeys=x\n", "SELFUPDATE", "PublicKeys", "unknown key (did you mean PublicKey?)"},
		{"MAIL unknown key", "[MAIL]\nSMTPHost=x\n", "MAIL", "SMTPHost", "unknown key; known keys are Host, Port, From, User, Password, StartTLS"},
		{"Host with port", "[MAIL]\nHost=smtp.example.com:587\nFrom=a@b.c\n", "MAIL", "Host", "includes a port"},
		{"Host URL", "[MAIL]\nHost=smtp://x\nFrom=a@b.c\n", "MAIL", "Host", `"smtp://x" is not a host name`},
		{"Host with space", "[MAIL]\nHost=smtp example\nFrom=a@b.c\n", "MAIL", "Host", "is not a host name"},
		{"From missing", "[MAIL]\nHost=smtp.example.com\n", "MAIL", "From", "is required when Host is set"},
		{"From empty", "[MAIL]\nHost=smtp.example.com\nFrom=\n", "MAIL", "From", "is required when Host is set"},
		{"From not an address", "[MAIL]\nFrom=erp server\n", "MAIL", "From", `"erp server" is not an e-mail address`},
		{"Port 0", "[MAIL]\nPort=0\n", "MAIL", "Port", `"0" is not a valid port`},
		{"Port word", "[MAIL]\nPort=smtp\n", "MAIL", "Port", `"smtp" is not a valid port`},
		{"User without Password", "[MAIL]\nUser=erp\n", "MAIL", "Password", "is missing while User is set"},
		{"Password without User", "[MAIL]\nUser=\nPassword=x\n", "MAIL", "User", "is missing while Password is set"},
		{"Password twice", "[MAIL]\nUser=a\nPassword=x\nPassword=y\n", "MAIL", "Password", "given 2 times"},
		{"StartTLS maybe", "[MAIL]\nStartTLS=maybe\n", "MAIL", "StartTLS", `"maybe" is not a yes/no value`},
		{"StartTLS bare", "[MAIL]\nStartTLS\n", "MAIL", "StartTLS", "has no value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig("AppServer.ini", []byte(baseINI+tt.text), t.TempDir())
			if err == nil {
				t.Fatalf("ParseConfig succeeded with %+v, want an error", cfg)
			}
			errs := configErrors(t, err)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs), err)
			}
			ce := errs[0]
			if ce.File != "AppServer.ini" || ce.Section != tt.section || ce.Key != tt.key || !strings.Contains(ce.Problem, tt.problem) {
				t.Errorf("got Section=%q Key=%q Problem=%q\nwant Section=%q Key=%q Problem containing %q",
					ce.Section, ce.Key, ce.Problem, tt.section, tt.key, tt.problem)
			}
			if strings.Contains(err.Error(), hash) {
				t.Errorf("the message quotes the password hash: %v", err)
			}
		})
	}
}

// TestParseConfigSelfUpdateReportsEverything checks that mistakes in the new
// sections are reported together with the others.
func TestParseConfigSelfUpdateReportsEverything(t *testing.T) {
	text := "[TCP]\nPort=0\n[UPDATE]\nEnable=0\n[ADMIN]\nPasswordHash=x\n[SELFUPDATE]\nCarry=/x\nHealthTimeout=1\n[MAIL]\nHost=h\nStartTLS=2\n"
	_, err := ParseConfig("AppServer.ini", []byte(text), t.TempDir())
	var got []string
	for _, ce := range configErrors(t, err) {
		got = append(got, ce.Section+" "+ce.Key)
	}
	want := "TCP Port|ADMIN PasswordHash|SELFUPDATE Carry|SELFUPDATE HealthTimeout|MAIL From|MAIL StartTLS"
	if strings.Join(got, "|") != want {
		t.Errorf("got errors at %q, want %q; full error:\n%v", got, want, err)
	}
}
