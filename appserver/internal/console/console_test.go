package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	adminUser     = "admin"
	adminPassword = "correct horse"
)

// syncBuffer is a log sink that tests read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// clock is a clock the tests move.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is a console served on a real listener.
type fixture struct {
	srv    *httptest.Server
	src    *memSource
	con    *Console
	logins atomic.Int32 // calls of Options.Login
	log    *syncBuffer
	client *http.Client // follows no redirect, keeps no cookie
}

type setup struct {
	tls, login bool
	opts       func(*Options)
}

func start(t *testing.T, s setup) *fixture {
	t.Helper()
	f := &fixture{src: newMemSource(), log: &syncBuffer{}}
	o := Options{
		Source:       f.src,
		Log:          slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		RequireLogin: s.login,
		Name:         "erp-server",
		Login: func(ctx context.Context, user, password string) error {
			f.logins.Add(1)
			if user != adminUser || password != adminPassword {
				return errors.New("wrong user or password")
			}
			return nil
		},
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "appserver_sessions_open 3\n")
		}),
	}
	if s.opts != nil {
		s.opts(&o)
	}
	con, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	f.con = con
	if s.tls {
		f.srv = httptest.NewTLSServer(con)
	} else {
		f.srv = httptest.NewServer(con)
	}
	t.Cleanup(f.srv.Close)
	f.client = f.srv.Client()
	f.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return f
}

type req struct {
	method  string
	path    string
	form    url.Values
	cookies []*http.Cookie
	header  map[string]string
	noOrig  bool // send no Origin on a POST
}

// do sends r; a POST carries the console's own Origin unless r says
// otherwise.
func (f *fixture) do(t *testing.T, r req) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if r.form != nil {
		body = strings.NewReader(r.form.Encode())
	}
	if r.method == "" {
		r.method = http.MethodGet
	}
	hr, err := http.NewRequest(r.method, f.srv.URL+r.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if r.form != nil {
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if r.method == http.MethodPost && !r.noOrig {
		hr.Header.Set("Origin", f.srv.URL)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	for _, c := range r.cookies {
		hr.AddCookie(c)
	}
	resp, err := f.client.Do(hr)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// cookieOf is the cookie name (with or without the __Host- prefix) that
// resp sets.
func cookieOf(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name || c.Name == "__Host-"+name {
			return c
		}
	}
	return nil
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// loginForm gets the login page: its pre-session cookie and CSRF token.
func (f *fixture) loginForm(t *testing.T) (*http.Cookie, string) {
	t.Helper()
	resp, body := f.do(t, req{path: "/login"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /login: %s\n%s", resp.Status, body)
	}
	pre := cookieOf(resp, loginCookie)
	m := csrfRE.FindStringSubmatch(body)
	if pre == nil || m == nil {
		t.Fatalf("GET /login: no pre-session cookie or no CSRF token in the form\n%s", body)
	}
	return pre, m[1]
}

// login logs in and returns the session cookie.
func (f *fixture) login(t *testing.T) *http.Cookie {
	t.Helper()
	pre, token := f.loginForm(t)
	resp, body := f.do(t, req{method: http.MethodPost, path: "/login", cookies: []*http.Cookie{pre},
		form: url.Values{"csrf": {token}, "user": {adminUser}, "password": {adminPassword}, "next": {"/clients"}}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/clients" {
		t.Fatalf("login: %s to %q, want 303 to /clients\n%s", resp.Status, resp.Header.Get("Location"), body)
	}
	s := cookieOf(resp, sessionCookie)
	if s == nil || s.Value == "" {
		t.Fatal("login: no session cookie")
	}
	return s
}

func TestPagesRender(t *testing.T) {
	f := start(t, setup{})
	tests := []struct {
		path string
		want []string
	}{
		{"/", []string{readOnly, "ws-bob", "install", "2.1.0", "halted", "ws-dan", `<table class="fail">`, "not seen for 7 days"}},
		{"/clients", []string{"ws-ana", "ws-bob", "ws-dan", "ws-eve", readOnly, "Clients 1–5 of 5", `class="failed"`}},
		{"/clients?failed=1", []string{"ws-bob", readOnly, "Clients 1–2 of 2"}},
		{"/clients?q=EVE", []string{"ws-eve", "Clients 1–1 of 1"}},
		{"/clients/aaaa0002", []string{"ws-bob", "/opt/erp/aaaa0002", readOnly, "3.0 MiB", "2.5s", "1.9.0"}},
		{"/clients/aaaa0003", []string{"&lt;script&gt;alert(&#34;host&#34;)&lt;/script&gt;"}},
		{"/releases", []string{"windows", "linux", "2.0.0", "80.0 MiB", "signed, expires", "served"}},
		{"/server", []string{"appserver 7.4.2", "updated from 7.4.1 to 7.4.2", "sync failed", readOnly, "&lt;i&gt;x&lt;/i&gt;"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := f.do(t, req{path: tt.path})
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %s\n%s", tt.path, resp.Status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("%s does not show %q", tt.path, w)
				}
			}
			// Hostile strings are text, never markup.
			for _, bad := range []string{hostileHost, hostileUser, "<b>disk</b>", "<i>x</i>", "<script"} {
				if strings.Contains(body, bad) {
					t.Errorf("%s has the raw %q", tt.path, bad)
				}
			}
			if !strings.Contains(body, `<meta name="viewport"`) || !strings.Contains(body, `href="/static/console.css"`) {
				t.Errorf("%s: no viewport meta or style sheet", tt.path)
			}
		})
	}
	// On the overview the failures come first, before the builds.
	_, body := f.do(t, req{path: "/"})
	if i, j := strings.Index(body, `id="failures"`), strings.Index(body, `id="builds"`); i < 0 || j < i {
		t.Errorf("the failures are not first on the overview (at %d, builds at %d)", i, j)
	}
	if !strings.Contains(body, "&lt;b&gt;disk&lt;/b&gt; &amp; &#34;quota&#34; full") {
		t.Error("the hostile reason is not shown escaped on the overview")
	}
	resp, body := f.do(t, req{path: "/clients/nosuch"})
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "not found") {
		t.Errorf("unknown client: %s\n%s", resp.Status, body)
	}
	// Records that cannot be written: the overview says it may be
	// behind, above the failures.
	if _, body := f.do(t, req{path: "/"}); strings.Contains(body, `id="behind"`) {
		t.Error("a banner of records behind while they are not")
	}
	f.src.mu.Lock()
	f.src.behind = "The client records cannot be written now <locked>"
	f.src.mu.Unlock()
	_, body = f.do(t, req{path: "/"})
	if i, j := strings.Index(body, `id="behind"`), strings.Index(body, `id="failures"`); i < 0 || j < i || !strings.Contains(body, "cannot be written now &lt;locked&gt;") {
		t.Errorf("no banner of records behind above the failures (at %d, failures at %d)", i, j)
	}
}

func TestStaticAndHeaders(t *testing.T) {
	f := start(t, setup{login: true, tls: true})
	resp, body := f.do(t, req{path: "/static/console.css"})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "overflow-x: auto") {
		t.Fatalf("the style sheet: %s", resp.Status)
	}
	for _, path := range []string{"/static/console.css", "/login", "/", "/api/overview"} {
		resp, _ := f.do(t, req{path: path})
		for k, want := range map[string]string{
			"X-Frame-Options":        "DENY",
			"X-Content-Type-Options": "nosniff",
			"Referrer-Policy":        "same-origin",
		} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s: %s: %q, want %q", path, k, got, want)
			}
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "script-src 'none'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
	}
	// No page has a script or an inline style, which the policy would block.
	f2 := start(t, setup{})
	for _, path := range []string{"/", "/clients", "/clients/aaaa0001", "/releases", "/server"} {
		_, body := f2.do(t, req{path: path})
		if strings.Contains(body, "<script") || strings.Contains(body, "style=") || strings.Contains(body, "<style") {
			t.Errorf("%s has a script or an inline style", path)
		}
	}
}

func TestLoginRequired(t *testing.T) {
	f := start(t, setup{login: true, tls: true})
	for _, path := range []string{"/", "/clients?q=bob", "/clients/aaaa0002", "/releases", "/server"} {
		resp, body := f.do(t, req{path: path})
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusSeeOther || loc != "/login?next="+url.QueryEscape(path) {
			t.Errorf("%s without a session: %s to %q, want 303 to the login", path, resp.Status, loc)
		}
		if strings.Contains(body, "ws-bob") {
			t.Errorf("%s shows data without a session", path)
		}
	}
	for _, path := range []string{"/api/overview", "/api/clients", "/api/clients/aaaa0002", "/api/releases", "/api/server", "/metrics"} {
		resp, body := f.do(t, req{path: path})
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s without credentials: %s, WWW-Authenticate %q", path, resp.Status, resp.Header.Get("WWW-Authenticate"))
		}
		if strings.Contains(body, "ws-bob") || strings.Contains(body, "sessions_open") {
			t.Errorf("%s shows data without credentials", path)
		}
	}
	// A made-up session cookie is no session.
	resp, _ := f.do(t, req{path: "/", cookies: []*http.Cookie{{Name: "__Host-" + sessionCookie, Value: randomToken()}}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a forged session cookie: %s", resp.Status)
	}

	s := f.login(t)
	for _, path := range []string{"/", "/clients", "/api/clients", "/metrics"} {
		resp, body := f.do(t, req{path: path, cookies: []*http.Cookie{s}})
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s with a session: %s", path, resp.Status)
		}
		if path != "/metrics" && !strings.Contains(body, "ws-bob") {
			t.Errorf("%s with a session does not show the data", path)
		}
	}
	// Without RequireLogin (loopback) everything is open and /login leads home.
	open := start(t, setup{})
	for _, path := range []string{"/", "/api/overview", "/metrics"} {
		if resp, _ := open.do(t, req{path: path}); resp.StatusCode != http.StatusOK {
			t.Errorf("open console: %s: %s", path, resp.Status)
		}
	}
	if resp, _ := open.do(t, req{path: "/login"}); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Errorf("open console: /login: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
}

func TestLoginCookies(t *testing.T) {
	for _, tls := range []bool{true, false} {
		t.Run(map[bool]string{true: "tls", false: "plain"}[tls], func(t *testing.T) {
			f := start(t, setup{login: true, tls: tls})
			pre, _ := f.loginForm(t)
			s := f.login(t)
			for _, c := range []*http.Cookie{pre, s} {
				if strings.HasPrefix(c.Name, "__Host-") != tls {
					t.Errorf("cookie %s: want the __Host- prefix over TLS only", c.Name)
				}
				if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure != tls || c.Domain != "" {
					t.Errorf("cookie %s: HttpOnly %v SameSite %v Path %q Secure %v Domain %q; want HttpOnly, Strict, /, Secure=%v, no domain",
						c.Name, c.HttpOnly, c.SameSite, c.Path, c.Secure, c.Domain, tls)
				}
			}
			if len(s.Value) != 43 { // 32 bytes, base64url
				t.Errorf("session token %q is not 32 random bytes", s.Value)
			}
			if s.MaxAge != int(DefaultMaxAge/time.Second) {
				t.Errorf("session cookie Max-Age %d", s.MaxAge)
			}
			if !strings.Contains(f.log.String(), "console login") {
				t.Error("the login is not logged")
			}
			// Log out: the session ends on the server, whatever the browser keeps.
			_, body := f.do(t, req{path: "/", cookies: []*http.Cookie{s}})
			m := csrfRE.FindStringSubmatch(body)
			if m == nil {
				t.Fatal("no logout form with a CSRF token")
			}
			resp, _ := f.do(t, req{method: http.MethodPost, path: "/logout", cookies: []*http.Cookie{s}, form: url.Values{"csrf": {m[1]}}})
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
				t.Fatalf("logout: %s to %q", resp.Status, resp.Header.Get("Location"))
			}
			if c := cookieOf(resp, sessionCookie); c == nil || c.MaxAge >= 0 {
				t.Error("logout does not clear the session cookie")
			}
			if resp, _ := f.do(t, req{path: "/", cookies: []*http.Cookie{s}}); resp.StatusCode != http.StatusSeeOther {
				t.Errorf("the session still works after the logout: %s", resp.Status)
			}
		})
	}
}

func TestLoginThrottled(t *testing.T) {
	f := start(t, setup{login: true, tls: true})
	pre, token := f.loginForm(t)
	try := func(password string) (*http.Response, string) {
		return f.do(t, req{method: http.MethodPost, path: "/login", cookies: []*http.Cookie{pre},
			form: url.Values{"csrf": {token}, "user": {adminUser}, "password": {password}}})
	}
	for i := range 2 {
		resp, body := try("guess")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "wrong user or password") {
			t.Fatalf("bad password %d: %s\n%s", i, resp.Status, body)
		}
		if cookieOf(resp, sessionCookie) != nil {
			t.Fatal("a bad password got a session")
		}
	}
	// From the second failure the address waits: even the right password
	// is refused unchecked, so a guess cannot be told by the answer.
	calls := f.logins.Load()
	resp, body := try(adminPassword)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "too many failed logins") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third attempt at once: %s (Retry-After %q), want 429\n%s", resp.Status, resp.Header.Get("Retry-After"), body)
	}
	if cookieOf(resp, sessionCookie) != nil || f.logins.Load() != calls {
		t.Fatal("a throttled attempt was checked")
	}
	// HTTP Basic counts against the same address.
	hr, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/api/overview", nil)
	hr.SetBasicAuth(adminUser, adminPassword)
	r2, err := f.client.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusTooManyRequests {
		t.Errorf("HTTP Basic while throttled: %s, want 429", r2.Status)
	}
	// Failures are logged at WARN with the address and the user, never the password.
	logs := f.log.String()
	if !strings.Contains(logs, "level=WARN msg=\"console login refused\"") || !strings.Contains(logs, "remote=127.0.0.1:") || !strings.Contains(logs, "user=admin") {
		t.Errorf("failed logins not logged at WARN with remote and user:\n%s", logs)
	}
	if strings.Contains(logs, "guess") || strings.Contains(logs, adminPassword) {
		t.Errorf("a password is in the log:\n%s", logs)
	}
}

// TestCSRF attacks the POSTs: each forged request must be refused, and
// the genuine one (the last) admitted, so that the test fails without the
// defence.
func TestCSRF(t *testing.T) {
	f := start(t, setup{login: true, tls: true})
	pre, token := f.loginForm(t)
	otherPre, otherToken := f.loginForm(t)
	creds := func(tok string) url.Values {
		return url.Values{"csrf": {tok}, "user": {adminUser}, "password": {adminPassword}}
	}
	attacks := []struct {
		name string
		r    req
	}{
		{"no token", req{method: http.MethodPost, path: "/login", cookies: []*http.Cookie{pre}, form: url.Values{"user": {adminUser}, "password": {adminPassword}}}},
		{"no cookie", req{method: http.MethodPost, path: "/login", form: creds(token)}},
		{"another cookie's token", req{method: http.MethodPost, path: "/login", cookies: []*http.Cookie{pre}, form: creds(otherToken)}},
		{"made-up token", req{method: http.MethodPost, path: "/login", cookies: []*http.Cookie{otherPre}, form: creds(randomToken())}},
		{"another Origin", req{method: http.MethodPost, path: "/login", cookies: []*http.Cookie{pre}, form: creds(token), noOrig: true,
			header: map[string]string{"Origin": "https://evil.example"}}},
		{"another scheme", req{method: http.MethodPost, path: "/login", cookies: []*http.Cookie{pre}, form: creds(token), noOrig: true,
			header: map[string]string{"Origin": strings.Replace(f.srv.URL, "https:", "http:", 1)}}},
		{"another Referer", req{method: http.MethodPost, path: "/login", cookies: []*http.Cookie{pre}, form: creds(token), noOrig: true,
			header: map[string]string{"Referer": "https://evil.example/page"}}},
		{"neither Origin nor Referer", req{method: http.MethodPost, path: "/login", cookies: []*http.Cookie{pre}, form: creds(token), noOrig: true}},
		{"cross-site fetch", req{method: http.MethodPost, path: "/login", cookies: []*http.Cookie{pre}, form: creds(token),
			header: map[string]string{"Sec-Fetch-Site": "cross-site"}}},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			resp, body := f.do(t, a.r)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "refused") {
				t.Errorf("%s: %s, want 403\n%s", a.name, resp.Status, body)
			}
			if cookieOf(resp, sessionCookie) != nil {
				t.Errorf("%s: got a session", a.name)
			}
		})
	}
	if n := f.logins.Load(); n != 0 {
		t.Errorf("forged logins reached the password check %d times", n)
	}

	// A forged logout of a live session: refused, the session lives on.
	s := f.login(t)
	for _, r := range []req{
		{method: http.MethodPost, path: "/logout", cookies: []*http.Cookie{s}, form: url.Values{}},
		{method: http.MethodPost, path: "/logout", cookies: []*http.Cookie{s}, form: url.Values{"csrf": {token}}},
		{method: http.MethodPost, path: "/logout", cookies: []*http.Cookie{s}, form: url.Values{"csrf": {f.con.auth.token("session", s.Value)}}, noOrig: true,
			header: map[string]string{"Origin": "https://evil.example"}},
	} {
		if resp, _ := f.do(t, r); resp.StatusCode != http.StatusForbidden {
			t.Errorf("forged logout: %s, want 403", resp.Status)
		}
	}
	if resp, _ := f.do(t, req{path: "/", cookies: []*http.Cookie{s}}); resp.StatusCode != http.StatusOK {
		t.Errorf("the session was ended by a forged logout: %s", resp.Status)
	}
	// The genuine forms, with a Referer rather than an Origin, pass.
	resp, _ := f.do(t, req{method: http.MethodPost, path: "/login", cookies: []*http.Cookie{pre}, form: creds(token), noOrig: true,
		header: map[string]string{"Referer": f.srv.URL + "/login"}})
	if resp.StatusCode != http.StatusSeeOther || cookieOf(resp, sessionCookie) == nil {
		t.Errorf("the genuine login: %s", resp.Status)
	}
	if !strings.Contains(f.log.String(), "request refused") {
		t.Error("refused requests are not logged")
	}
}

func TestSessionExpiry(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)}
	f := start(t, setup{login: true, tls: true, opts: func(o *Options) { o.Now = clk.Now }})
	get := func(s *http.Cookie) int {
		resp, _ := f.do(t, req{path: "/clients", cookies: []*http.Cookie{s}})
		return resp.StatusCode
	}
	// Idle: used within 30 min it lives; unused for 30 min it ends.
	s := f.login(t)
	clk.Add(29 * time.Minute)
	if got := get(s); got != http.StatusOK {
		t.Fatalf("after 29 min idle: %d", got)
	}
	clk.Add(30 * time.Minute)
	if got := get(s); got != http.StatusSeeOther {
		t.Fatalf("after 30 min idle: %d, want a redirect to the login", got)
	}
	// Absolute: used every 20 min, it still ends after 12 h.
	s = f.login(t)
	for range 12*3 - 1 {
		clk.Add(20 * time.Minute)
		if got := get(s); got != http.StatusOK {
			t.Fatalf("a session in use ended early: %d", got)
		}
	}
	clk.Add(20 * time.Minute)
	if got := get(s); got != http.StatusSeeOther {
		t.Fatalf("a session 12 h old: %d, want a redirect to the login", got)
	}
}

func TestMaxSessions(t *testing.T) {
	f := start(t, setup{login: true, tls: true, opts: func(o *Options) { o.MaxSessions = 2 }})
	s1 := f.login(t)
	s2 := f.login(t)
	f.do(t, req{path: "/", cookies: []*http.Cookie{s1}}) // s2 is now the least recently used
	s3 := f.login(t)
	for _, c := range []struct {
		s    *http.Cookie
		want int
	}{{s1, http.StatusOK}, {s2, http.StatusSeeOther}, {s3, http.StatusOK}} {
		if resp, _ := f.do(t, req{path: "/", cookies: []*http.Cookie{c.s}}); resp.StatusCode != c.want {
			t.Errorf("session %s...: %d, want %d", c.s.Value[:6], resp.StatusCode, c.want)
		}
	}
	if n := len(f.con.auth.sessions); n != 2 {
		t.Errorf("%d sessions kept, want 2", n)
	}
}

func TestLoginNext(t *testing.T) {
	f := start(t, setup{login: true})
	pre, token := f.loginForm(t)
	for next, want := range map[string]string{"/server": "/server", "/clients?failed=1": "/clients?failed=1",
		"//evil.example/": "/", `/\evil.example`: "/", "https://evil.example/": "/",
		// Browsers drop a tab, CR or LF in a URL: "//evil.example" to them.
		"/\t/evil.example/": "/", "/\n/evil.example/": "/", "/\r/evil.example": "/", "/%09/evil.example/": "/%09/evil.example/"} {
		resp, _ := f.do(t, req{method: http.MethodPost, path: "/login", cookies: []*http.Cookie{pre},
			form: url.Values{"csrf": {token}, "user": {adminUser}, "password": {adminPassword}, "next": {next}}})
		if got := resp.Header.Get("Location"); got != want {
			t.Errorf("next=%q: redirected to %q, want %q", next, got, want)
		}
	}
}

func TestAPI(t *testing.T) {
	f := start(t, setup{})
	getJSON := func(path string, want int, v any) {
		t.Helper()
		resp, body := f.do(t, req{path: path})
		if resp.StatusCode != want {
			t.Fatalf("%s: %s, want %d\n%s", path, resp.Status, want, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", path, ct)
		}
		if err := json.Unmarshal([]byte(body), v); err != nil {
			t.Fatalf("%s: %v\n%s", path, err, body)
		}
	}
	var ov map[string]any
	getJSON("/api/overview", 200, &ov)
	for _, k := range []string{"clients", "builds", "failures", "rollouts", "stale", "stale_days"} {
		if _, ok := ov[k]; !ok {
			t.Errorf("/api/overview has no %q: %v", k, ov)
		}
	}
	var o Overview
	getJSON("/api/overview", 200, &o)
	if o.Clients != 5 || len(o.Failures) != 2 || o.Failures[0].Reason != readOnly || o.Failures[0].Step != "install" {
		t.Errorf("/api/overview: %+v", o)
	}

	var list struct {
		Total, Offset, Limit int
		Clients              []map[string]any
	}
	getJSON("/api/clients?failed=1&sort=host&desc=1", 200, &list)
	if list.Total != 2 || len(list.Clients) != 2 || list.Clients[0]["host"] != "ws-bob" || list.Clients[1]["host"] != hostileHost {
		t.Errorf("/api/clients?failed=1&sort=host&desc=1: %+v", list)
	}
	for _, k := range []string{"id", "host", "user", "os", "build", "release", "ring", "last_seen", "outcome", "failed", "step", "reason"} {
		if _, ok := list.Clients[0][k]; !ok {
			t.Errorf("a client row has no %q: %v", k, list.Clients[0])
		}
	}
	getJSON("/api/clients?limit=2&offset=1&sort=last_seen", 200, &list)
	if list.Total != 5 || list.Offset != 1 || list.Limit != 2 || len(list.Clients) != 2 || list.Clients[0]["id"] != "aaaa0003" || list.Clients[1]["id"] != "aaaa0002" {
		t.Errorf("/api/clients paged: %+v", list)
	}
	getJSON("/api/clients?q=nobody", 200, &list)
	if list.Total != 0 || list.Clients == nil {
		t.Errorf("no match: %+v (want an empty list, not null)", list)
	}

	var cd ClientDetail
	getJSON("/api/clients/aaaa0002", 200, &cd)
	if cd.Host != "ws-bob" || len(cd.History) != 2 || cd.History[0].Reason != readOnly || cd.History[0].Duration != 2500*time.Millisecond {
		t.Errorf("/api/clients/aaaa0002: %+v", cd)
	}
	var rs struct{ Releases []Release }
	getJSON("/api/releases", 200, &rs)
	if len(rs.Releases) != 3 || !rs.Releases[0].Signed || rs.Releases[0].Clients != 1 {
		t.Errorf("/api/releases: %+v", rs)
	}
	var srv struct {
		SelfUpdate SelfUpdate `json:"self_update"`
		Log        []LogLine
	}
	getJSON("/api/server", 200, &srv)
	if srv.SelfUpdate.Build != "appserver 7.4.2" || len(srv.Log) != 2 || srv.Log[0].Level != "WARN" {
		t.Errorf("/api/server: %+v", srv)
	}

	// Errors are JSON, naming what was wrong.
	for path, want := range map[string]struct {
		status int
		msg    string
	}{
		"/api/clients/nosuch":         {404, "not found"},
		"/api/clients?sort=password":  {400, `sort="password"`},
		"/api/clients?stale=soon":     {400, `stale="soon"`},
		"/api/clients?limit=100000":   {400, `limit="100000"`},
		"/api/clients?failed=perhaps": {400, `failed="perhaps"`},
		"/api/nothing":                {404, "no API at /api/nothing"},
	} {
		var e struct{ Error string }
		getJSON(path, want.status, &e)
		if !strings.Contains(e.Error, want.msg) {
			t.Errorf("%s: error %q, want it to name %q", path, e.Error, want.msg)
		}
	}
}

// TestAPIEmpty checks that an empty estate's lists are [], not null.
func TestAPIEmpty(t *testing.T) {
	f := start(t, setup{})
	f.src.clients, f.src.rollouts, f.src.releases, f.src.log = nil, nil, nil, nil
	for _, path := range []string{"/api/overview", "/api/clients", "/api/releases", "/api/server"} {
		resp, body := f.do(t, req{path: path})
		if resp.StatusCode != 200 || strings.Contains(body, "null") {
			t.Errorf("%s on an empty estate: %s\n%s", path, resp.Status, body)
		}
	}
	for _, path := range []string{"/", "/clients", "/releases", "/server"} {
		if resp, body := f.do(t, req{path: path}); resp.StatusCode != 200 || !strings.Contains(body, "<h1>") {
			t.Errorf("%s on an empty estate: %s", path, resp.Status)
		}
	}
}

func TestAPIBasicAuth(t *testing.T) {
	f := start(t, setup{login: true, tls: true})
	get := func(path, user, password string) (*http.Response, string) {
		hr, _ := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
		hr.SetBasicAuth(user, password)
		resp, err := f.client.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, body := get("/api/clients?failed=1", adminUser, adminPassword); resp.StatusCode != 200 || !strings.Contains(body, readOnly) {
		t.Errorf("HTTP Basic with the right password: %s", resp.Status)
	}
	if resp, body := get("/metrics", adminUser, adminPassword); resp.StatusCode != 200 || !strings.Contains(body, "appserver_sessions_open 3") {
		t.Errorf("/metrics with the right password: %s\n%s", resp.Status, body)
	}
	if resp, body := get("/metrics", adminUser, "wrong"); resp.StatusCode != 401 || strings.Contains(body, "sessions_open") {
		t.Errorf("/metrics with a wrong password: %s", resp.Status)
	}
	// Pages take no HTTP Basic: a browser logs in.
	if resp, _ := get("/", adminUser, adminPassword); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a page with HTTP Basic: %s, want the login", resp.Status)
	}
	// A scraper and a script at once, with the right password: none is
	// refused as a guess, and the password is not checked again.
	checked := f.logins.Load()
	var wg sync.WaitGroup
	codes := make(chan int, 8)
	for range 8 {
		wg.Go(func() {
			resp, _ := get("/api/overview", adminUser, adminPassword)
			codes <- resp.StatusCode
		})
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("a request at once with the right password: %d", c)
		}
	}
	if n := f.logins.Load() - checked; n != 0 {
		t.Errorf("the password was checked %d more times for credentials checked a moment ago", n)
	}
	// A wrong password is never taken from the cache.
	if resp, _ := get("/api/overview", adminUser, adminPassword+"x"); resp.StatusCode == 200 {
		t.Errorf("a wrong password after a right one: %s", resp.Status)
	}
}

func TestSourceError(t *testing.T) {
	f := start(t, setup{})
	f.src.setErr(errDatabaseLocked)
	for _, path := range []string{"/", "/clients", "/clients/aaaa0001", "/releases", "/server"} {
		resp, body := f.do(t, req{path: path})
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, `class="error"`) || !strings.Contains(body, "database is locked") {
			t.Errorf("%s with the records locked: %s\n%s", path, resp.Status, body)
		}
		if !strings.Contains(body, `<nav>`) {
			t.Errorf("%s: the page around the error is missing", path)
		}
	}
	for _, path := range []string{"/api/overview", "/api/clients", "/api/clients/aaaa0001", "/api/releases", "/api/server"} {
		resp, body := f.do(t, req{path: path})
		var e struct{ Error string }
		if resp.StatusCode != http.StatusServiceUnavailable || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, "database is locked") {
			t.Errorf("%s with the records locked: %s\n%s", path, resp.Status, body)
		}
	}
	if !strings.Contains(f.log.String(), "database is locked") {
		t.Error("the Source error is not logged")
	}
	// A bad query parameter is shown on the page.
	f.src.setErr(nil)
	resp, body := f.do(t, req{path: "/clients?stale=forever"})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "query parameter stale=&#34;forever&#34;") {
		t.Errorf("/clients?stale=forever: %s\n%s", resp.Status, body)
	}
	// A panic in the Source is an error page, not a dropped connection.
	f.src.mu.Lock()
	f.src.panic = true
	f.src.mu.Unlock()
	resp, body = f.do(t, req{path: "/"})
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(body, "internal error") {
		t.Errorf("a panicking Source: %s\n%s", resp.Status, body)
	}
}

func TestClientsLinks(t *testing.T) {
	f := start(t, setup{opts: func(o *Options) {}})
	// Sorting by a column, then again to reverse it; filters are kept.
	_, body := f.do(t, req{path: "/clients?os=windows"})
	if !strings.Contains(body, `href="/clients?os=windows&amp;sort=build" data-col="build"`) {
		t.Errorf("the Build header does not sort by build, keeping the filter:\n%s", body)
	}
	if !strings.Contains(body, `href="/clients?desc=1&amp;os=windows" data-col="host"`) {
		t.Errorf("the Host header (sorted) does not reverse the order")
	}
	_, body = f.do(t, req{path: "/clients?sort=build&desc=1"})
	if !strings.Contains(body, `aria-sort="descending"><a href="/clients?sort=build" data-col="build"`) {
		t.Errorf("the Build header (sorted descending) does not sort ascending:\n%s", body)
	}
	if !strings.Contains(body, `<input type="hidden" name="sort" value="build">`) {
		t.Error("the filter form drops the sort")
	}
	// Paging.
	var rows []ClientDetail
	for i := range 120 {
		c := f.src.clients[0]
		c.ID = "bulk" + strings.Repeat("0", 4) + string(rune('a'+i%26)) + string(rune('a'+i/26))
		rows = append(rows, c)
	}
	f.src.clients = append(f.src.clients, rows...)
	_, body = f.do(t, req{path: "/clients?page=2"})
	if !strings.Contains(body, "Clients 51–100 of 125") || !strings.Contains(body, `href="/clients" rel="prev"`) || !strings.Contains(body, `href="/clients?page=3" rel="next"`) {
		t.Errorf("page 2 of 3:\n%s", body)
	}
}

// TestDNSRebinding: the open console refuses a Host that another site
// could make resolve to 127.0.0.1; the console with login (cookies bound
// to the host) answers to any name.
func TestDNSRebinding(t *testing.T) {
	open := start(t, setup{})
	for host, want := range map[string]int{
		"evil.example:8088": http.StatusMisdirectedRequest,
		"evil.example":      http.StatusMisdirectedRequest,
		"127.0.0.1:8088":    http.StatusOK,
		"[::1]:8088":        http.StatusOK,
		"localhost:8088":    http.StatusOK,
		"erp.localhost":     http.StatusOK,
	} {
		hr, _ := http.NewRequest(http.MethodGet, open.srv.URL+"/api/overview", nil)
		hr.Host = host
		resp, err := open.client.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || (want != 200 && strings.Contains(string(b), "ws-bob")) {
			t.Errorf("Host %s: %s, want %d", host, resp.Status, want)
		}
	}
	f := start(t, setup{login: true, tls: true})
	hr, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/login", nil)
	hr.Host = "erp-server.example:8088"
	resp, err := f.client.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the console with login, by name: %s", resp.Status)
	}
}

func TestNew(t *testing.T) {
	if _, err := New(Options{}); err == nil || !strings.Contains(err.Error(), "Source") {
		t.Errorf("no Source: %v", err)
	}
	if _, err := New(Options{Source: newMemSource(), RequireLogin: true}); err == nil || !strings.Contains(err.Error(), "Login") {
		t.Errorf("RequireLogin without Login: %v", err)
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"", "q=bob&failed=1", "sort=last_seen&desc=1&stale=7d", "stale=-1", "os=linux&build=2.1.0", "sort=x", "failed=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		fl, err := parseFilter(q)
		if err != nil {
			var qe *queryError
			if !errors.As(err, &qe) || qe.Param == "" {
				t.Fatalf("%q: error %v names no parameter", raw, err)
			}
			return
		}
		// The links the pages make parse back to the same filter.
		back, err := parseFilter(filterQuery(fl))
		if err != nil || back != fl {
			t.Fatalf("%q: %+v -> %q -> %+v, %v", raw, fl, filterQuery(fl).Encode(), back, err)
		}
	})
}

// TestForgetLogins: after the [ADMIN] password changes every session
// and every HTTP Basic credential held ends: the next request logs in.
func TestForgetLogins(t *testing.T) {
	f := start(t, setup{login: true, tls: true})
	sess := f.login(t)
	basic := func() int {
		hr, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/api/overview", nil)
		hr.SetBasicAuth(adminUser, adminPassword)
		resp, err := f.client.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := basic(); code != 200 {
		t.Fatalf("HTTP Basic: %d", code)
	}
	if resp, _ := f.do(t, req{path: "/", cookies: []*http.Cookie{sess}}); resp.StatusCode != 200 {
		t.Fatalf("with the session: %s", resp.Status)
	}
	checked := f.logins.Load()
	if n := f.con.ForgetLogins(); n != 1 {
		t.Errorf("ForgetLogins ended %d sessions, want 1", n)
	}
	if resp, _ := f.do(t, req{path: "/", cookies: []*http.Cookie{sess}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the session after ForgetLogins: %s, want the login", resp.Status)
	}
	basic()
	if f.logins.Load() == checked {
		t.Error("HTTP Basic was taken from the cache after ForgetLogins")
	}
}
