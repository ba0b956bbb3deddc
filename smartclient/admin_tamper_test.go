package smartclient_test

import (
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/pki"
	"github.com/erpupdate/smartsync/internal/pki/pkitest"
	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/syncproto"
	"golang.org/x/crypto/bcrypt"
)

// tamperProxy sits between an administrator's client and the server and
// rewrites the Admin request with change, passing its seal on unchanged,
// as a machine on a network where plain TCP is allowed could.
type tamperProxy struct {
	addr    string
	fp      string // the proxy's own key, which the administrator pinned
	change  func(*syncproto.Admin)
	mu      sync.Mutex
	changed int // requests rewritten
}

func newTamperProxy(t *testing.T, server string, change func(*syncproto.Admin)) *tamperProxy {
	t.Helper()
	// A box in the middle that the administrator's workstation trusts
	// (a TLS-inspecting proxy, say): it ends the client's TLS with a key
	// of its own and speaks TLS to the server.
	ln := pkitest.Listen(t)
	p := &tamperProxy{addr: ln.Addr().String(), fp: ln.Fingerprint, change: change}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			cc, err := ln.Accept()
			if err != nil {
				return
			}
			sc, err := tls.Dial("tcp", server, pki.ClientConfig("127.0.0.1", func(tls.ConnectionState) error { return nil }))
			if err != nil {
				cc.Close()
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(cc, sc); cc.Close() }()
			go func() {
				defer wg.Done()
				defer sc.Close()
				r, w := syncproto.NewReader(cc), syncproto.NewWriter(sc)
				for {
					m, err := r.Read()
					if err != nil {
						return
					}
					if a, ok := m.(syncproto.Admin); ok {
						p.change(&a)
						p.mu.Lock()
						p.changed++
						p.mu.Unlock()
						m = a
					}
					if w.Write(m) != nil || w.Flush() != nil {
						return
					}
				}
			}()
		}
	}()
	return p
}

// TestAdminTamperedOnTheWire runs the administrator's command through a
// proxy that changes one field of the request, where both sides allow
// plain TCP: the server refuses the request as not matching its seal
// (CodeDenied) and does nothing. Untouched, the same request gets past
// the seal to the server's own rules.
func TestAdminTamperedOnTheWire(t *testing.T) {
	t.Setenv(smartclient.ShortCountdownEnv, "1")
	const password = "correct horse battery"
	hash, err := bcrypt.GenerateFromPassword([]byte(password), 10)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(nil)
	conf := defaultConf
	conf.admin = "[ADMIN]\nUser=admin\nPasswordHash=" + string(hash) + "\n[SELFUPDATE]\nPublicKey=ed25519:" + base64.StdEncoding.EncodeToString(pub) + "\n"
	at := time.Now().Add(2 * time.Hour)
	for _, tc := range []struct {
		name   string
		change func(*syncproto.Admin)
	}{
		{"nothing", func(*syncproto.Admin) {}},
		{"source", func(a *syncproto.Admin) { a.Source = "https://attacker.example/appserver.tar.gz" }},
		{"notify", func(a *syncproto.Admin) { a.Notify = "mallory@example.com" }},
		{"countdown", func(a *syncproto.Admin) { a.Countdown = 1 }},
		{"at", func(a *syncproto.Admin) { a.At = 0 }},
		{"allow downgrade", func(a *syncproto.Admin) { a.Flags |= syncproto.AdminAllowDowngrade }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A server of its own: the failures of one case would
			// hold back the next one's login.
			srv := newServer(t, conf)
			p := newTamperProxy(t, srv.addr, tc.change)
			_, err := smartclient.Admin(t.Context(), smartclient.AdminOptions{
				Server: p.addr, Fingerprint: p.fp, User: "admin", Password: password, Op: syncproto.OpUpdate,
				Source: "/srv/releases/appserver-7.01.tar.gz", Countdown: 90 * time.Second, At: at, Notify: "admin@example.com",
				Timeout: 10 * time.Second,
			})
			var pe *syncproto.Error
			if !errors.As(err, &pe) {
				t.Fatalf("Admin = %v, want the server's refusal", err)
			}
			if tc.name == "nothing" {
				// Past the seal and the password: refused by the
				// server's own rules (it has no installation to update).
				if pe.Code != syncproto.CodeRefused {
					t.Fatalf("the untouched request: %v, want CodeRefused", err)
				}
				return
			}
			if pe.Code != syncproto.CodeDenied || !strings.Contains(pe.Message, "changed on the way") || p.changed != 1 {
				t.Fatalf("the request changed on the wire: %v (%d changed), want CodeDenied naming the change", err, p.changed)
			}
			if strings.Contains(srv.log.String(), "self-update requested") {
				t.Errorf("the server took a tampered request:\n%s", srv.log.String())
			}
		})
	}
}
