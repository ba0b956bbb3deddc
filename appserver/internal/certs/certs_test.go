package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/pki"
)

// logRecorder is a slog.Handler that keeps every record, for tests to
// look at what the identity said.
type logRecorder struct {
	mu   sync.Mutex
	recs []logRec
}

type logRec struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	lr := logRec{level: rec.Level, msg: rec.Message, attrs: map[string]string{}}
	rec.Attrs(func(a slog.Attr) bool {
		lr.attrs[a.Key] = a.Value.String()
		return true
	})
	r.mu.Lock()
	r.recs = append(r.recs, lr)
	r.mu.Unlock()
	return nil
}

// take returns the records kept since the last take.
func (r *logRecorder) take() []logRec {
	r.mu.Lock()
	defer r.mu.Unlock()
	recs := r.recs
	r.recs = nil
	return recs
}

func newLog() (*slog.Logger, *logRecorder) {
	r := &logRecorder{}
	return slog.New(r), r
}

// pair makes a key and self-signed certificate, as PEM, and the key's
// fingerprint.
func pair(t *testing.T) (certPEM, keyPEM []byte, fp string) {
	t.Helper()
	certPEM, keyPEM, err := pki.SelfSigned([]string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM, pki.Fingerprint(c.Leaf)
}

// renewed makes a new certificate over the key in keyPEM.
func renewed(t *testing.T, certPEM, keyPEM []byte) []byte {
	t.Helper()
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := *c.Leaf
	tmpl.NotAfter = tmpl.NotAfter.AddDate(1, 0, 0)
	tmpl.DNSNames = append(tmpl.DNSNames, "renewed.example")
	der, err := x509.CreateCertificate(nil, &tmpl, &tmpl, c.Leaf.PublicKey, c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// write puts data in path and moves its modification time on, so that
// the change is seen even on a file system with coarse timestamps and a
// replacement of the same size (a key of the same type always is).
func write(t *testing.T, path string, data []byte) {
	t.Helper()
	var was time.Time
	if fi, err := os.Stat(path); err == nil {
		was = fi.ModTime()
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if !was.IsZero() {
		next := was.Add(time.Minute)
		if err := os.Chtimes(path, next, next); err != nil {
			t.Fatal(err)
		}
	}
}

// forceRecheck makes the next handshake look at the files again.
func forceRecheck(id *Identity) {
	id.mu.Lock()
	id.checked = time.Time{}
	id.mu.Unlock()
}

func leafFP(t *testing.T, c *tls.Certificate) string {
	t.Helper()
	if c == nil {
		t.Fatal("getCertificate returned no certificate")
	}
	leaf := c.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			t.Fatal(err)
		}
	}
	return pki.Fingerprint(leaf)
}

func fileFP(t *testing.T, certFile string) string {
	t.Helper()
	data, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s holds no PEM", certFile)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return pki.Fingerprint(c)
}

// handshakeFP makes a real TLS connection to a server with id's TLS
// configuration and returns the fingerprint of the key it presented.
func handshakeFP(t *testing.T, id *Identity) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srv <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		srv <- tls.Server(c, id.TLSConfig()).Handshake()
	}()
	var got string
	cfg := pki.ClientConfig("127.0.0.1", func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no certificate")
		}
		got = pki.Fingerprint(cs.PeerCertificates[0])
		return nil
	})
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), cfg)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	conn.Close()
	if err := <-srv; err != nil {
		t.Fatalf("server's handshake: %v", err)
	}
	return got
}

func TestOpenMakesIdentityOnce(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state") // not there yet
	log, rec := newLog()
	id, err := Open(log, "", "", state)
	if err != nil {
		t.Fatal(err)
	}
	if !id.Made() {
		t.Fatal("Made() = false for an identity made at this start")
	}
	certFile, keyFile := id.Files()
	if want := filepath.Join(state, Dir, CertName); certFile != want {
		t.Errorf("certificate file %q, want %q", certFile, want)
	}
	if want := filepath.Join(state, Dir, KeyName); keyFile != want {
		t.Errorf("key file %q, want %q", keyFile, want)
	}
	fp := id.Fingerprint()
	if _, err := pki.ParseFingerprint(fp); err != nil || !strings.HasPrefix(fp, pki.FingerprintPrefix) {
		t.Fatalf("Fingerprint() = %q: %v", fp, err)
	}
	if got := fileFP(t, certFile); got != fp {
		t.Fatalf("Fingerprint() = %q, but the certificate written is for %q", fp, got)
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("key file mode %o, want 600", perm)
		}
		fi, err = os.Stat(filepath.Dir(keyFile))
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o700 {
			t.Errorf("TLS folder mode %o, want 700", perm)
		}
	}
	pairOK, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("the files made do not load as a pair: %v", err)
	}
	for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
		if err := pairOK.Leaf.VerifyHostname(h); err != nil {
			t.Errorf("made certificate is not for %s: %v", h, err)
		}
	}
	if got := handshakeFP(t, id); got != fp {
		t.Fatalf("a handshake presents %q, want %q", got, fp)
	}
	certPEM, _ := os.ReadFile(certFile)
	keyPEM, _ := os.ReadFile(keyFile)

	// The next start reuses it.
	id2, err := Open(log, "", "", state)
	if err != nil {
		t.Fatal(err)
	}
	if id2.Made() {
		t.Error("Made() = true at a start that found the identity there")
	}
	if got := id2.Fingerprint(); got != fp {
		t.Errorf("second Open: fingerprint %q, want the first one %q", got, fp)
	}
	if c, _ := os.ReadFile(certFile); string(c) != string(certPEM) {
		t.Error("second Open rewrote the certificate")
	}
	if k, _ := os.ReadFile(keyFile); string(k) != string(keyPEM) {
		t.Error("second Open rewrote the key")
	}
	for _, r := range rec.take() {
		if r.level >= slog.LevelWarn {
			t.Errorf("logged %v %q %v", r.level, r.msg, r.attrs)
		}
	}
}

func TestOpenOnlyOneOfTheMadeFiles(t *testing.T) {
	tests := []struct {
		name   string
		remove string // the file removed after the first start
		keep   string
	}{
		{"certificate without key", KeyName, CertName},
		{"key without certificate", CertName, KeyName},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			state := t.TempDir()
			log, _ := newLog()
			if _, err := Open(log, "", "", state); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(state, Dir)
			if err := os.Remove(filepath.Join(dir, tc.remove)); err != nil {
				t.Fatal(err)
			}
			kept, err := os.ReadFile(filepath.Join(dir, tc.keep))
			if err != nil {
				t.Fatal(err)
			}
			id, err := Open(log, "", "", state)
			if err == nil {
				t.Fatalf("Open succeeded (fingerprint %q, made %v) with only %s there", id.Fingerprint(), id.Made(), tc.keep)
			}
			for _, want := range []string{CertName, KeyName, dir} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, tc.remove)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s was made again (stat: %v)", tc.remove, err)
			}
			if now, _ := os.ReadFile(filepath.Join(dir, tc.keep)); string(now) != string(kept) {
				t.Errorf("%s was changed", tc.keep)
			}
		})
	}
}

func TestOpenConfigured(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	certPEM, keyPEM, fp := pair(t)
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	write(t, certFile, certPEM)
	write(t, keyFile, keyPEM)

	log, _ := newLog()
	id, err := Open(log, certFile, keyFile, state)
	if err != nil {
		t.Fatal(err)
	}
	if id.Made() {
		t.Error("Made() = true for configured files")
	}
	if c, k := id.Files(); c != certFile || k != keyFile {
		t.Errorf("Files() = %q, %q; want %q, %q", c, k, certFile, keyFile)
	}
	if got := id.Fingerprint(); got != fp {
		t.Errorf("Fingerprint() = %q, want %q", got, fp)
	}
	if got := handshakeFP(t, id); got != fp {
		t.Errorf("a handshake presents %q, want %q", got, fp)
	}
	if _, err := os.Stat(filepath.Join(state, Dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a key was made in the state folder although files are configured (stat: %v)", err)
	}
}

func TestOpenConfiguredErrors(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM, _ := pair(t)
	_, otherKey, _ := pair(t)
	files := map[string][]byte{
		"good.crt":  certPEM,
		"good.key":  keyPEM,
		"other.key": otherKey,
		"junk.crt":  []byte("not a certificate\n"),
		"empty.key": nil,
	}
	for name, data := range files {
		write(t, filepath.Join(dir, name), data)
	}
	p := func(name string) string {
		if name == "" {
			return ""
		}
		return filepath.Join(dir, name)
	}
	tests := []struct {
		name, cert, key string
		wantIn          string // a part of the error
	}{
		{"missing certificate", "missing.crt", "good.key", "missing.crt"},
		{"missing key", "good.crt", "missing.key", "missing.key"},
		{"key not configured", "good.crt", "", "reading the TLS identity"},
		{"certificate not configured", "", "good.key", "reading the TLS identity"},
		{"key of another certificate", "good.crt", "other.key", "good.crt"},
		{"junk certificate", "junk.crt", "good.key", "junk.crt"},
		{"empty key", "good.crt", "empty.key", "empty.key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log, _ := newLog()
			state := t.TempDir()
			id, err := Open(log, p(tc.cert), p(tc.key), state)
			if err == nil {
				t.Fatalf("Open succeeded with fingerprint %q", id.Fingerprint())
			}
			if !strings.Contains(err.Error(), tc.wantIn) {
				t.Errorf("error %q does not contain %q", err, tc.wantIn)
			}
			if _, err := os.Stat(filepath.Join(state, Dir)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a key was made in the state folder (stat: %v)", err)
			}
		})
	}
}

func TestReload(t *testing.T) {
	type files struct{ cert, key []byte }
	tests := []struct {
		name string
		// change changes the files; nil leaves them as they are.
		change func(t *testing.T, old files) (now files, remove string)
		// newKey: the identity in use changes to the new files' key;
		// same: the files are read again and the key is the same;
		// otherwise the old identity stays.
		newKey, renewedSame bool
		wantLevel           slog.Level
		wantLog             bool
	}{
		{
			name:   "unchanged files",
			change: func(t *testing.T, old files) (files, string) { return old, "" },
		},
		{
			name: "new key",
			change: func(t *testing.T, old files) (files, string) {
				c, k, _ := pair(t)
				return files{c, k}, ""
			},
			newKey: true, wantLog: true, wantLevel: slog.LevelWarn,
		},
		{
			name: "renewed over the same key",
			change: func(t *testing.T, old files) (files, string) {
				return files{renewed(t, old.cert, old.key), old.key}, ""
			},
			renewedSame: true, wantLog: true, wantLevel: slog.LevelInfo,
		},
		{
			name: "junk certificate",
			change: func(t *testing.T, old files) (files, string) {
				return files{[]byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"), old.key}, ""
			},
			wantLog: true, wantLevel: slog.LevelError,
		},
		{
			name: "new certificate, old key",
			change: func(t *testing.T, old files) (files, string) {
				c, _, _ := pair(t)
				return files{c, old.key}, ""
			},
			wantLog: true, wantLevel: slog.LevelError,
		},
		{
			name: "new key, old certificate",
			change: func(t *testing.T, old files) (files, string) {
				_, k, _ := pair(t)
				return files{old.cert, k}, ""
			},
			wantLog: true, wantLevel: slog.LevelError,
		},
		{
			name: "truncated key",
			change: func(t *testing.T, old files) (files, string) {
				return files{old.cert, old.key[:len(old.key)/2]}, ""
			},
			wantLog: true, wantLevel: slog.LevelError,
		},
		{
			name: "key removed",
			change: func(t *testing.T, old files) (files, string) {
				return old, "key"
			},
			wantLog: true, wantLevel: slog.LevelError,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key")
			certPEM, keyPEM, oldFP := pair(t)
			write(t, certFile, certPEM)
			write(t, keyFile, keyPEM)
			log, rec := newLog()
			id, err := Open(log, certFile, keyFile, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			before, err := id.getCertificate(nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := leafFP(t, before); got != oldFP {
				t.Fatalf("before: %q, want %q", got, oldFP)
			}

			now, remove := tc.change(t, files{certPEM, keyPEM})
			changed := string(now.cert) != string(certPEM) || string(now.key) != string(keyPEM)
			if string(now.cert) != string(certPEM) {
				write(t, certFile, now.cert)
			}
			if string(now.key) != string(keyPEM) {
				write(t, keyFile, now.key)
			}
			if remove == "key" {
				if err := os.Remove(keyFile); err != nil {
					t.Fatal(err)
				}
			}
			newFP := oldFP
			if tc.newKey {
				newFP = fileFP(t, certFile)
				if newFP == oldFP {
					t.Fatal("the new pair has the old key")
				}
			}

			// Not looked at again before the re-check is due.
			if changed {
				got, err := id.getCertificate(nil)
				if err != nil {
					t.Fatal(err)
				}
				if got != before {
					t.Error("the files were read again before the re-check was due")
				}
				if recs := rec.take(); len(recs) != 0 {
					t.Errorf("logged %v before the re-check was due", recs)
				}
			}

			forceRecheck(id)
			got, err := id.getCertificate(nil)
			if err != nil {
				t.Fatalf("getCertificate: %v (it must keep serving)", err)
			}
			if fp := leafFP(t, got); fp != newFP {
				t.Errorf("getCertificate presents %q, want %q (old %q)", fp, newFP, oldFP)
			}
			if fp := id.Fingerprint(); fp != newFP {
				t.Errorf("Fingerprint() = %q, want %q", fp, newFP)
			}
			switch {
			case tc.newKey:
				if got == before {
					t.Error("the old certificate is still served")
				}
			case tc.renewedSame:
				if got == before || string(got.Certificate[0]) == string(before.Certificate[0]) {
					t.Error("the renewed certificate is not served")
				}
			default:
				if got != before {
					t.Error("the identity in use changed")
				}
			}

			recs := rec.take()
			if !tc.wantLog {
				if len(recs) != 0 {
					t.Errorf("logged %v for unchanged files", recs)
				}
				return
			}
			if len(recs) != 1 {
				t.Fatalf("logged %d records %v, want one", len(recs), recs)
			}
			r := recs[0]
			if r.level != tc.wantLevel {
				t.Errorf("logged %v %q, want level %v", r.level, r.msg, tc.wantLevel)
			}
			switch r.level {
			case slog.LevelWarn:
				if r.attrs["fingerprint"] != newFP || r.attrs["was"] != oldFP {
					t.Errorf("warning %q %v does not name the new key %q and the old %q", r.msg, r.attrs, newFP, oldFP)
				}
			case slog.LevelInfo:
				if r.attrs["fingerprint"] != oldFP {
					t.Errorf("info %q %v does not name the key %q", r.msg, r.attrs, oldFP)
				}
			case slog.LevelError:
				if r.attrs["err"] == "" {
					t.Errorf("error %q %v does not say why", r.msg, r.attrs)
				}
			}

			// Once the re-check has been done, the next handshake within
			// the interval does not read the files again.
			if again, _ := id.getCertificate(nil); again != got {
				t.Error("a second handshake got another certificate")
			}
			if recs := rec.take(); len(recs) != 0 {
				t.Errorf("a second handshake within the interval logged %v", recs)
			}
		})
	}
}

func TestReloadRecoversAfterBrokenReplacement(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key")
	certPEM, keyPEM, oldFP := pair(t)
	write(t, certFile, certPEM)
	write(t, keyFile, keyPEM)
	log, rec := newLog()
	id, err := Open(log, certFile, keyFile, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got := handshakeFP(t, id); got != oldFP {
		t.Fatalf("first handshake presents %q, want %q", got, oldFP)
	}

	// A renewal half done: the new certificate, the old key.
	newCert, newKey, newFP := pair(t)
	write(t, certFile, newCert)
	forceRecheck(id)
	if got := handshakeFP(t, id); got != oldFP {
		t.Fatalf("half-replaced files: handshake presents %q, want the old %q", got, oldFP)
	}
	if recs := rec.take(); len(recs) != 1 || recs[0].level != slog.LevelError {
		t.Fatalf("half-replaced files: logged %v, want one error", recs)
	}

	// The renewal completed.
	write(t, keyFile, newKey)
	forceRecheck(id)
	if got := handshakeFP(t, id); got != newFP {
		t.Fatalf("replaced files: handshake presents %q, want the new %q", got, newFP)
	}
	recs := rec.take()
	if len(recs) != 1 || recs[0].level != slog.LevelWarn || recs[0].attrs["fingerprint"] != newFP || recs[0].attrs["was"] != oldFP {
		t.Fatalf("replaced files: logged %v, want one warning naming %q and %q", recs, newFP, oldFP)
	}
	if got := id.Fingerprint(); got != newFP {
		t.Fatalf("Fingerprint() = %q, want %q", got, newFP)
	}
}

func (r logRec) String() string { return fmt.Sprintf("%v %q %v", r.level, r.msg, r.attrs) }
