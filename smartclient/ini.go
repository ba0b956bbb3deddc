package smartclient

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/erpupdate/smartsync/internal/pki"
	"github.com/erpupdate/smartsync/internal/releasemeta"
	"github.com/erpupdate/smartsync/internal/winini"
	"gopkg.in/ini.v1"
)

// ClientININame is the name of the client's configuration file in its
// install folder.
const ClientININame = "smartclient.ini"

// defaultDriver is the connection section used when [drivers] names none:
// TOTVS clients connect over plain TCP unless told otherwise, and our own
// minimal smartclient.ini is just a [TCP] section.
const defaultDriver = "tcp"

// ClientINI is what the client reads from smartclient.ini in its install folder.
type ClientINI struct {
	File   string // path it was read from, "" when there was no file
	Server string // host name or address
	Port   int    // 0 when not set

	// From [SSL]: the server's key ([SSL] Fingerprint, SHA256:BASE64 as
	// "appserver cert" prints it), a CA file that signs the server's
	// certificate ([SSL] CA, absolute or relative to the install folder),
	// and whether to connect over plain TCP ([SSL] AllowPlaintext=1).
	Fingerprint    string
	CA             string
	AllowPlaintext bool
	// Transfer bounds the file transfer of a sync ([UPDATE] MinRate,
	// RateWindow, Deadline) and the retries of a server that cannot be
	// reached ([UPDATE] ConnectRetry).
	Transfer Transfer
	// PublisherKeys are [UPDATE] PublisherKey's keys ("ed25519:BASE64",
	// comma- or space-separated): the publisher keys a first install
	// trusts. Later installs trust what they recorded (see Options).
	PublisherKeys []string
	// AllowUnsigned is [UPDATE] AllowUnsigned=1: a server without a
	// signed release is obeyed, with a warning.
	AllowUnsigned bool
}

// ClientINIError reports a smartclient.ini that cannot be used. It names the
// file and, when the problem is one value, the section and the key, so that an
// administrator can go straight to the line. Callers can tell a configuration
// error (exit code 2) from other failures with errors.As.
type ClientINIError struct {
	File    string // as given to ParseClientINI
	Section string // lower case, "" when the error is not about one key
	Key     string // lower case, "" when the error is not about one key
	Err     error  // what is wrong
}

func (e *ClientINIError) Error() string {
	switch {
	case e.Section != "" && e.Key != "":
		return fmt.Sprintf("%s: [%s] %s: %v", e.File, e.Section, e.Key, e.Err)
	case e.Section != "":
		return fmt.Sprintf("%s: [%s]: %v", e.File, e.Section, e.Err)
	default:
		return fmt.Sprintf("%s: %v", e.File, e.Err)
	}
}

func (e *ClientINIError) Unwrap() error { return e.Err }

// LoadClientINI reads dir/smartclient.ini. A missing file is not an error
// (returns a zero ClientINI with File ""): a workstation may be configured by
// flags alone, or be about to receive its smartclient.ini from the server.
func LoadClientINI(dir string) (ClientINI, error) {
	file := filepath.Join(dir, ClientININame)
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return ClientINI{}, nil
	}
	if err != nil {
		// An *fs.PathError already names the file and the operation.
		return ClientINI{}, err
	}
	return ParseClientINI(file, data)
}

// ParseClientINI parses the contents of a smartclient.ini; file names it in
// errors and in the result. It reads server and port from the section that
// [drivers] active= names ([tcp] when there is none), so a TOTVS file with
// [config], [drivers] and [ssl] sections works unchanged; every other section
// and key is ignored, since the file belongs to the application as much as to
// us. A UTF-8 byte order mark and CRLF line endings are accepted.
func ParseClientINI(file string, data []byte) (ClientINI, error) {
	f, err := winini.Load(data)
	if err != nil {
		return ClientINI{}, &ClientINIError{File: file, Err: err}
	}

	driver := defaultDriver
	if s, err := f.GetSection("drivers"); err == nil && s.HasKey("active") {
		if v := strings.ToLower(strings.TrimSpace(winini.Value(s.Key("active")))); v != "" {
			driver = v
		}
	}

	cfg := ClientINI{File: file}
	if err := parseSSL(f, &cfg); err != nil {
		return ClientINI{}, err
	}
	if cfg.Transfer, err = parseTransfer(file, f); err != nil {
		return ClientINI{}, err
	}
	if err := parseUpdateSection(f, &cfg); err != nil {
		return ClientINI{}, err
	}
	sec, err := f.GetSection(driver)
	if err != nil {
		if driver != defaultDriver {
			// The administrator chose a connection explicitly; ignoring
			// that choice would send the client somewhere else silently.
			return ClientINI{}, &ClientINIError{File: file, Section: "drivers", Key: "active",
				Err: fmt.Errorf("%q names no [%s] section", driver, driver)}
		}
		return cfg, nil
	}

	if sec.HasKey("server") {
		server := strings.TrimSpace(winini.Value(sec.Key("server")))
		if strings.ContainsFunc(server, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return ClientINI{}, &ClientINIError{File: file, Section: driver, Key: "server",
				Err: fmt.Errorf("%q is not a host name or address", server)}
		}
		cfg.Server = server
	}
	if sec.HasKey("port") {
		v := strings.TrimSpace(winini.Value(sec.Key("port")))
		if v != "" {
			port, err := winini.Port(v)
			if err != nil {
				return ClientINI{}, &ClientINIError{File: file, Section: driver, Key: "port",
					Err: fmt.Errorf("%q is not a port number (1-65535)", v)}
			}
			cfg.Port = port
		}
	}
	return cfg, nil
}

// parseSSL reads the [SSL] keys of ours; TOTVS's own keys there are left
// alone.
func parseSSL(f *ini.File, cfg *ClientINI) error {
	sec, err := f.GetSection("ssl")
	if err != nil {
		return nil
	}
	if sec.HasKey("fingerprint") {
		v := strings.TrimSpace(winini.Value(sec.Key("fingerprint")))
		if v != "" {
			if _, err := pki.ParseFingerprint(v); err != nil {
				return &ClientINIError{File: cfg.File, Section: "ssl", Key: "fingerprint", Err: err}
			}
			cfg.Fingerprint = v
		}
	}
	if sec.HasKey("ca") {
		v := strings.TrimSpace(winini.Value(sec.Key("ca")))
		if v != "" && !filepath.IsAbs(v) {
			v = filepath.Join(filepath.Dir(cfg.File), v)
		}
		cfg.CA = v
	}
	if sec.HasKey("allowplaintext") {
		v := strings.TrimSpace(winini.Value(sec.Key("allowplaintext")))
		b, err := winini.Bool(v)
		if err != nil {
			return &ClientINIError{File: cfg.File, Section: "ssl", Key: "allowplaintext", Err: fmt.Errorf("%q is not 0 or 1", v)}
		}
		cfg.AllowPlaintext = b
	}
	return nil
}

// parseUpdateSection reads [UPDATE], the client's trust in the publisher
// (see internal/releasemeta): PublisherKey and AllowUnsigned.
func parseUpdateSection(f *ini.File, cfg *ClientINI) error {
	sec, err := f.GetSection("update")
	if err != nil {
		return nil
	}
	if sec.HasKey("publisherkey") {
		for _, k := range winini.List(strings.ReplaceAll(winini.Value(sec.Key("publisherkey")), " ", ",")) {
			if _, err := releasemeta.ParsePublicKey(k); err != nil {
				return &ClientINIError{File: cfg.File, Section: "update", Key: "publisherkey",
					Err: fmt.Errorf("%q is not a publisher key (ed25519: and the base64 of 32 bytes, as 'appserver release keygen' prints)", k)}
			}
			cfg.PublisherKeys = append(cfg.PublisherKeys, k)
		}
	}
	if sec.HasKey("allowunsigned") {
		v := strings.TrimSpace(winini.Value(sec.Key("allowunsigned")))
		b, err := winini.Bool(v)
		if err != nil {
			return &ClientINIError{File: cfg.File, Section: "update", Key: "allowunsigned",
				Err: fmt.Errorf("%q is not 0 or 1", v)}
		}
		cfg.AllowUnsigned = b
	}
	return nil
}
