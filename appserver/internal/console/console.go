// Package console is the administrator's web console: server-rendered
// pages (html/template, one plain CSS file, no JavaScript) and a JSON API
// under /api/ over the client records, the releases and the server's own
// state, with /metrics when a metrics handler is given.
//
// The console is an http.Handler; the appserver serves it on its [HTTP]
// listener. It reads everything through a Source and checks logins
// through Options.Login, so it imports nothing of the appserver. With
// Options.RequireLogin (a listener beyond loopback, which is then TLS)
// every page and API needs a session cookie got by logging in with the
// [ADMIN] credentials, or HTTP Basic with them for scripts (and for
// /metrics); logins are throttled per address as the admin channel's are.
//
// Routes:
//
//	GET  /                 overview
//	GET  /clients          the clients table (?q=&failed=1&build=&os=&stale=&sort=&desc=1&page=)
//	GET  /clients/{id}     one client's history
//	GET  /releases         published releases
//	GET  /server           the server's self-update state and recent log lines
//	GET  /login, POST /login, POST /logout
//	GET  /api/overview, /api/clients, /api/clients/{id}, /api/releases, /api/server
//	GET  /metrics          Options.Metrics, when set
//	GET  /static/...       the style sheet
package console

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"runtime/debug"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/throttle"
)

//go:embed templates/*.html static/*
var files embed.FS

// Defaults of Options.
const (
	DefaultIdleTimeout = 30 * time.Minute
	DefaultMaxAge      = 12 * time.Hour
	DefaultMaxSessions = 1000
	// DefaultPageSize is the rows of a page of the clients table.
	DefaultPageSize = 50
	// MaxPageSize bounds ?limit= of /api/clients.
	MaxPageSize = 1000
	// LogLines is how many log lines /server shows.
	LogLines = 100
)

// Options configure a Console.
type Options struct {
	// Source gives the data shown. Required.
	Source Source
	// Log receives failed logins (at WARN, with the remote address and
	// the user) and Source errors. Nil discards.
	Log *slog.Logger
	// RequireLogin makes every page and API need a login; set it when
	// the listener is reachable beyond loopback (and is then TLS).
	RequireLogin bool
	// Login checks the [ADMIN] user and password; required with
	// RequireLogin. Its error is logged, never shown.
	Login func(ctx context.Context, user, password string) error
	// Throttle slows down guessing, per remote address; give the admin
	// channel's so that both count the same failures. Nil: a throttle of
	// the console's own, with the admin channel's rule (throttle.Logins).
	Throttle Throttle
	// Metrics, when set, is served at /metrics (with RequireLogin, behind
	// HTTP Basic with the [ADMIN] credentials).
	Metrics http.Handler
	// Name is shown in the title of every page (e.g. the server's host
	// name); "" shows none.
	Name string
	// IdleTimeout ends a session unused for so long (default
	// DefaultIdleTimeout); MaxAge ends any session that old (default
	// DefaultMaxAge); MaxSessions bounds the sessions kept, the least
	// recently used going first (default DefaultMaxSessions).
	IdleTimeout time.Duration
	MaxAge      time.Duration
	MaxSessions int
	// Location is the time zone of the times shown (nil: time.Local).
	Location *time.Location
	// Now is the clock (nil: time.Now); tests move it.
	Now func() time.Time
}

// Console is the web console, an http.Handler.
type Console struct {
	o     Options
	log   *slog.Logger
	mux   *http.ServeMux
	pages map[string]*template.Template
	auth  *auth
	basic *basicCache // HTTP Basic credentials checked lately
}

// ForgetLogins ends every session and forgets the HTTP Basic
// credentials held, after the [ADMIN] password changed: everyone logs
// in again. It returns how many sessions ended.
func (c *Console) ForgetLogins() int {
	c.basic.forget()
	return c.auth.forgetAll()
}

// New returns the console o describes.
func New(o Options) (*Console, error) {
	if o.Source == nil {
		return nil, errors.New("console: no Source")
	}
	if o.RequireLogin && o.Login == nil {
		return nil, errors.New("console: RequireLogin without a Login check")
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = DefaultMaxSessions
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Throttle == nil {
		o.Throttle = &throttle.Logins{}
	}
	c := &Console{o: o, log: o.Log, mux: http.NewServeMux(), basic: newBasicCache()}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if c.pages, err = parsePages(c.funcs()); err != nil {
		return nil, err
	}
	if c.auth, err = newAuth(&c.o); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

func (c *Console) routes() {
	page := func(pattern string, h http.HandlerFunc) { c.mux.Handle(pattern, c.requirePage(h)) }
	api := func(pattern string, h http.HandlerFunc) { c.mux.Handle(pattern, c.requireAPI(h)) }

	page("GET /{$}", c.overviewPage)
	page("GET /clients", c.clientsPage)
	page("GET /clients/{id}", c.clientPage)
	page("GET /releases", c.releasesPage)
	page("GET /server", c.serverPage)
	c.mux.HandleFunc("GET /login", c.loginPage)
	c.mux.HandleFunc("POST /login", c.loginPost)
	c.mux.HandleFunc("POST /logout", c.logoutPost)

	api("GET /api/overview", c.overviewAPI)
	api("GET /api/clients", c.clientsAPI)
	api("GET /api/clients/{id}", c.clientAPI)
	api("GET /api/releases", c.releasesAPI)
	api("GET /api/server", c.serverAPI)
	api("GET /api/", func(w http.ResponseWriter, r *http.Request) {
		c.jsonError(w, http.StatusNotFound, fmt.Errorf("no API at %s", r.URL.Path))
	})
	if c.o.Metrics != nil {
		c.mux.Handle("GET /metrics", c.requireBasic(c.o.Metrics))
	}
	static, _ := fs.Sub(files, "static")
	c.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
}

// ServeHTTP serves the console: security headers, the CSRF check of every
// request that is not a GET or HEAD, then the route.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if r.TLS != nil {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			c.log.Error("console: panic serving a request", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			http.Error(w, "internal error: see the server's log", http.StatusInternalServerError)
		}
	}()
	if !c.o.RequireLogin && !loopbackHost(r.Host) {
		// An open console answers only to names that cannot be another
		// site's: a page of evil.example whose name an attacker makes
		// resolve to 127.0.0.1 (DNS rebinding) would read it otherwise.
		c.log.Warn("console: request refused: not a loopback host name", "remote", r.RemoteAddr, "host", r.Host, "path", r.URL.Path)
		http.Error(w, fmt.Sprintf("refused: the console without login answers only to localhost or an IP address, not %q", r.Host), http.StatusMisdirectedRequest)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if err := c.auth.checkCSRF(r); err != nil {
			c.log.Warn("console: request refused", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "err", err)
			c.render(w, r, http.StatusForbidden, "error", pageData{Title: "Refused", Err: err.Error()})
			return
		}
	}
	c.mux.ServeHTTP(w, r)
}

// pageData is what every page's template gets.
type pageData struct {
	Title string
	Name  string
	Nav   string // the current section
	Err   string // a Source error, shown in a banner
	CSRF  string // the token of the logout form, "" without a session
	User  string // the user logged in
	Body  any    // the page's own data
	Now   time.Time
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, d pageData) {
	t := c.pages[name]
	d.Name = c.o.Name
	d.Now = c.o.Now()
	if s := c.auth.session(r); s != nil {
		d.CSRF = c.auth.token("session", s.id)
		d.User = s.user
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", d); err != nil {
		c.log.Error("console: rendering a page", "page", name, "err", err)
		http.Error(w, "internal error rendering the page: see the server's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// sourceError logs err and returns the status and the text to show.
func (c *Console) sourceError(r *http.Request, what string, err error) (int, string) {
	if errors.Is(err, ErrNotFound) {
		return http.StatusNotFound, fmt.Sprintf("%s: %v", what, err)
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return http.StatusServiceUnavailable, "request canceled" // nobody reads it
	}
	c.log.Warn("console: reading the records failed", "what", what, "path", r.URL.Path, "err", err)
	return http.StatusServiceUnavailable, fmt.Sprintf("reading %s failed: %v", what, err)
}

func (c *Console) writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		c.log.Error("console: encoding JSON", "err", err)
		status, b = http.StatusInternalServerError, []byte(`{"error": "internal error encoding the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// apiError is the body of every JSON error.
type apiError struct {
	Error string `json:"error"`
}

func (c *Console) jsonError(w http.ResponseWriter, status int, err error) {
	c.writeJSON(w, status, apiError{Error: err.Error()})
}

// loopbackHost reports whether the Host header host names this machine
// in a way no other site can: an IP address, localhost or a name under
// .localhost.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// localPath reports whether next is a path on this server: it starts
// with one "/", and holds no backslash nor control character, which
// browsers drop or read as "/" ("/\t/evil.example" is "//evil.example"
// to them: another host), and parses as a path alone.
func localPath(next string) bool {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") {
		return false
	}
	for i := 0; i < len(next); i++ {
		if c := next[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
	}
	u, err := url.Parse(next)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil && strings.HasPrefix(u.Path, "/") && !strings.HasPrefix(u.Path, "//")
}
