package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/throttle"
)

// Cookies of the console. Both are HttpOnly, SameSite=Strict, Path=/ and,
// over TLS, Secure and named with the __Host- prefix (see cookieName).
const (
	sessionCookie = "console_session" // the session's random token
	loginCookie   = "console_login"   // a pre-session token that the login form's CSRF token is tied to
	csrfField     = "csrf"
	maxFormBytes  = 16 << 10
)

// Throttle slows down password guessing per remote address. Begin admits
// one attempt from host: it returns how long host must still wait (a
// refusal, without checking the password), or 0, and then the caller
// calls End with the attempt's result. The admin channel's throttle has
// these semantics; give it so that both count the same failures.
type Throttle interface {
	Begin(host string) time.Duration
	End(host string, ok bool) int
}

// auth keeps the sessions and checks logins and CSRF tokens.
type auth struct {
	o   *Options
	key []byte // HMAC key of the CSRF tokens, random per process

	mu       sync.Mutex
	sessions map[string]*session
}

type session struct {
	id      string
	user    string
	created time.Time
	used    time.Time
}

// forgetAll ends every session; it returns how many there were.
func (a *auth) forgetAll() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := len(a.sessions)
	clear(a.sessions)
	return n
}

func newAuth(o *Options) (*auth, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("console: making the CSRF key: %w", err)
	}
	return &auth{o: o, key: key, sessions: map[string]*session{}}, nil
}

// randomToken is 32 random bytes, base64url.
func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// token is the CSRF token tied to a cookie's value: an HMAC that only
// this process can make, and only a page that can read the cookie's
// value (ours) can learn.
func (a *auth) token(kind, value string) string {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// session returns the request's live session, or nil; it counts as a use.
func (a *auth) session(r *http.Request) *session {
	ck, err := r.Cookie(cookieName(r, sessionCookie))
	if err != nil || ck.Value == "" {
		return nil
	}
	now := a.o.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.sessions[ck.Value]
	if s == nil {
		return nil
	}
	if a.expired(s, now) {
		delete(a.sessions, s.id)
		return nil
	}
	s.used = now
	return s
}

func (a *auth) expired(s *session, now time.Time) bool {
	return now.Sub(s.used) >= a.o.IdleTimeout || now.Sub(s.created) >= a.o.MaxAge
}

// newSession starts a session of user; past MaxSessions, the least
// recently used goes.
func (a *auth) newSession(user string) *session {
	now := a.o.Now()
	s := &session{id: randomToken(), user: user, created: now, used: now}
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, o := range a.sessions {
		if a.expired(o, now) {
			delete(a.sessions, id)
		}
	}
	for len(a.sessions) >= a.o.MaxSessions {
		var oldest *session
		for _, o := range a.sessions {
			if oldest == nil || o.used.Before(oldest.used) {
				oldest = o
			}
		}
		delete(a.sessions, oldest.id)
	}
	a.sessions[s.id] = s
	return s
}

func (a *auth) endSession(r *http.Request) {
	if ck, err := r.Cookie(cookieName(r, sessionCookie)); err == nil {
		a.mu.Lock()
		delete(a.sessions, ck.Value)
		a.mu.Unlock()
	}
}

// cookieName is the name of a cookie of the console on r's connection:
// over TLS with the __Host- prefix, which makes a browser take the cookie
// only when set by this very host over HTTPS with Path=/ and no Domain,
// so that another host of the domain cannot plant one (a planted
// pre-session cookie would let it forge the login form's token).
func cookieName(r *http.Request, name string) string {
	if r.TLS != nil {
		return "__Host-" + name
	}
	return name
}

func (a *auth) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration) {
	ck := &http.Cookie{Name: cookieName(r, name), Value: value, Path: "/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode}
	switch {
	case maxAge > 0:
		ck.MaxAge = int(maxAge / time.Second)
	case maxAge < 0:
		ck.MaxAge = -1
	}
	http.SetCookie(w, ck)
}

// errCSRF is the refusal of a request that may be forged.
var errCSRF = errors.New("refused: the request did not come from this console's own form (reload the page and try again)")

// checkCSRF admits a state-changing request only from a page of this
// console: the Origin (or, without one, the Referer) must be this host,
// and the form must carry the token tied to the request's session or
// pre-session cookie.
func (a *auth) checkCSRF(r *http.Request) error {
	if err := sameOrigin(r); err != nil {
		return err
	}
	r.Body = http.MaxBytesReader(nil, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return fmt.Errorf("reading the form: %w", err)
	}
	got := r.PostForm.Get(csrfField)
	if got == "" {
		return fmt.Errorf("%w: no CSRF token", errCSRF)
	}
	for _, c := range []struct{ cookie, kind string }{{sessionCookie, "session"}, {loginCookie, "login"}} {
		ck, err := r.Cookie(cookieName(r, c.cookie))
		if err != nil || ck.Value == "" {
			continue
		}
		if hmac.Equal([]byte(got), []byte(a.token(c.kind, ck.Value))) {
			return nil
		}
	}
	return fmt.Errorf("%w: wrong CSRF token", errCSRF)
}

// sameOrigin checks that the request's Origin, or Referer, is this host.
func sameOrigin(r *http.Request) error {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return fmt.Errorf("%w: Sec-Fetch-Site is %q", errCSRF, site)
	}
	from := r.Header.Get("Origin")
	what := "Origin"
	if from == "" || from == "null" {
		from, what = r.Header.Get("Referer"), "Referer"
	}
	if from == "" {
		return fmt.Errorf("%w: neither Origin nor Referer", errCSRF)
	}
	u, err := url.Parse(from)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%w: %s %q is not a URL", errCSRF, what, from)
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if u.Host != r.Host || u.Scheme != scheme {
		return fmt.Errorf("%w: %s %s is not %s://%s", errCSRF, what, u.Scheme+"://"+u.Host, scheme, r.Host)
	}
	return nil
}

// remoteHost is the address a request came from, without its port.
// remoteHost is what a login from r counts against in the throttle: its
// address, an IPv6 one by its /64.
func remoteHost(r *http.Request) string { return throttle.Key(r.RemoteAddr) }

// waitSeconds is a wait in whole seconds, rounded up.
func waitSeconds(d time.Duration) int { return int((d + time.Second - 1) / time.Second) }

// checkLogin checks user and password from r's address, throttled. It
// returns the status of a refusal (429 while the address must wait, 401
// for wrong credentials), a text to show and the wait, or status 0.
func (c *Console) checkLogin(r *http.Request, user, password, via string) (int, string, time.Duration) {
	host := remoteHost(r)
	if wait := c.o.Throttle.Begin(host); wait > 0 {
		c.log.Warn("console login refused: too many failures from the address", "remote", r.RemoteAddr, "user", user, "via", via, "wait", wait.Round(time.Second))
		return http.StatusTooManyRequests, fmt.Sprintf("too many failed logins from this address; try again in %d s", waitSeconds(wait)), wait
	}
	err := c.o.Login(r.Context(), user, password)
	c.o.Throttle.End(host, err == nil)
	if err != nil {
		c.log.Warn("console login refused", "remote", r.RemoteAddr, "user", user, "via", via, "err", err)
		return http.StatusUnauthorized, "wrong user or password", 0
	}
	if via != "basic" {
		c.log.Info("console login", "remote", r.RemoteAddr, "user", user)
	}
	return 0, "", 0
}

// requirePage sends a visitor with no session to the login page.
func (c *Console) requirePage(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.o.RequireLogin && c.auth.session(r) == nil {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// requireAPI admits a session cookie or HTTP Basic with the [ADMIN]
// credentials; otherwise 401, in JSON.
func (c *Console) requireAPI(h http.Handler) http.Handler {
	return c.requireCredentials(h, func(w http.ResponseWriter, status int, msg string) {
		c.jsonError(w, status, errors.New(msg))
	})
}

// requireBasic is requireAPI for /metrics, with plain-text refusals.
func (c *Console) requireBasic(h http.Handler) http.Handler {
	return c.requireCredentials(h, func(w http.ResponseWriter, status int, msg string) {
		http.Error(w, msg, status)
	})
}

func (c *Console) requireCredentials(h http.Handler, refuse func(http.ResponseWriter, int, string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.o.RequireLogin || c.auth.session(r) != nil {
			h.ServeHTTP(w, r)
			return
		}
		user, password, ok := r.BasicAuth()
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="smartsync console", charset="UTF-8"`)
			refuse(w, http.StatusUnauthorized, "login required: log in on the console, or use HTTP Basic with the [ADMIN] user and password")
			return
		}
		// A script or a scraper sends its credentials with every
		// request: once checked they hold for a while, so that
		// requests at once are not refused as guesses and each one
		// costs no password hash.
		if c.basic.ok(user, password) {
			h.ServeHTTP(w, r)
			return
		}
		if status, msg, wait := c.checkLogin(r, user, password, "basic"); status != 0 {
			if status == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", strconv.Itoa(waitSeconds(wait)))
			} else {
				w.Header().Set("WWW-Authenticate", `Basic realm="smartsync console", charset="UTF-8"`)
			}
			refuse(w, status, msg)
			return
		}
		c.basic.add(user, password)
		h.ServeHTTP(w, r)
	})
}

// basicCache holds the HTTP Basic credentials checked lately, as keyed
// hashes, for basicTTL: at most basicMax of them.
type basicCache struct {
	mu   sync.Mutex
	key  [32]byte // random, per console: the hashes mean nothing elsewhere
	seen map[[32]byte]time.Time
}

const (
	basicTTL = 2 * time.Minute
	basicMax = 32
)

func newBasicCache() *basicCache {
	b := &basicCache{seen: map[[32]byte]time.Time{}}
	rand.Read(b.key[:])
	return b
}

func (b *basicCache) sum(user, password string) [32]byte {
	m := hmac.New(sha256.New, b.key[:])
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var out [32]byte
	m.Sum(out[:0])
	return out
}

func (b *basicCache) ok(user, password string) bool {
	k := b.sum(user, password)
	b.mu.Lock()
	defer b.mu.Unlock()
	t, found := b.seen[k]
	if found && time.Since(t) < basicTTL {
		return true
	}
	delete(b.seen, k)
	return false
}

func (b *basicCache) add(user, password string) {
	k := b.sum(user, password)
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.seen) >= basicMax {
		clear(b.seen)
	}
	b.seen[k] = time.Now()
}

// forget drops every credential held (the [ADMIN] password changed).
func (b *basicCache) forget() {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.seen)
}
