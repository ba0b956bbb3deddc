package appserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/throttle"
)

// The console's HTTP server: [HTTP] Listen, plain HTTP on loopback and
// HTTPS with the server's certificate beyond it. It is the
// administrator's window, not the service: a console that cannot listen
// (its port taken) is logged as an error and the updates are served all
// the same.

const (
	// consoleMaxConns bounds the console's connections at once: a browser
	// opens a few, a scraper one; a flood is refused by the kernel's
	// backlog rather than by the server's memory.
	consoleMaxConns = 64
	// consoleMaxPerAddr bounds one address's share of them beyond
	// loopback: a browser opens 6 to a host, so that a scraper gone wild
	// or a flood from one machine leaves the console to the
	// administrator's browser. A connection past it is closed at once.
	// On loopback every local program (a browser, a tunnel, a proxy)
	// comes from one address: the total cap alone holds there.
	consoleMaxPerAddr = 16
	// consoleShutdown is how long requests under way may finish when
	// the server stops.
	consoleShutdown = 3 * time.Second
)

// consoleServer runs the console's listener.
type consoleServer struct {
	log  *slog.Logger
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// startConsole listens on addr (trying again for retry while it is in
// use) and serves h there until stop. tlsConf,
// when not nil, makes it HTTPS. It returns nil, having logged why, when
// addr cannot be listened on.
func startConsole(ctx context.Context, log *slog.Logger, addr string, retry time.Duration, tlsConf *tls.Config, h http.Handler) *consoleServer {
	ln, err := listen(ctx, log, addr, retry)
	if err != nil {
		log.Error("the web console is not served; the updates are", "listen", addr, "err", err,
			"fix", "free the address or set [HTTP] Listen to another, then restart")
		return nil
	}
	lim := &limitListener{Listener: ln, sem: make(chan struct{}, consoleMaxConns), log: log}
	ln = lim
	scheme := "http"
	if tlsConf != nil {
		// Beyond loopback (see consoleMaxPerAddr).
		lim.perAddr = consoleMaxPerAddr
		c := tlsConf.Clone()
		c.NextProtos = []string{"h2", "http/1.1"}
		ln = tls.NewListener(ln, c)
		scheme = "https"
	}
	cs := &consoleServer{
		log: log,
		ln:  ln,
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      2 * time.Minute,
			IdleTimeout:       30 * time.Second, // an idle browser gives its connections back
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
			BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		},
		done: make(chan struct{}),
	}
	log.Info("web console", "url", scheme+"://"+ln.Addr().String()+"/", "login", tlsConf != nil)
	go func() {
		defer close(cs.done)
		if err := cs.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("the web console stopped", "err", err)
		}
	}()
	return cs
}

// Addr is where the console listens.
func (cs *consoleServer) Addr() net.Addr { return cs.ln.Addr() }

// stop lets requests under way finish for a moment, then closes.
func (cs *consoleServer) stop() {
	if cs == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), consoleShutdown)
	defer cancel()
	if err := cs.srv.Shutdown(ctx); err != nil {
		cs.srv.Close()
	}
	<-cs.done
}

// limitListener holds at most cap(sem) connections open at once, and
// perAddr from one address; past the first, Accept waits for one to close;
// past the second, the new connection is closed at once. An Accept error
// the server's own loop would try again (see acceptAgain), or one not known
// to pass, maxOddAcceptErrors times in a row, is tried again here too:
// net/http's Serve stops the console at an error that is not Temporary.
type limitListener struct {
	net.Listener
	sem     chan struct{}
	perAddr int
	log     *slog.Logger

	mu     sync.Mutex
	byAddr map[string]int // by throttle.Key: an IPv6 /64 is one address
	// refused counts the connections closed over perAddr since the
	// last log line, at most one a busyLogEvery.
	refused int
	logged  time.Time
}

func (l *limitListener) Accept() (net.Conn, error) {
	var retries acceptRetries
	for {
		l.sem <- struct{}{}
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.sem
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			wait, logIt, ok := retries.after(err)
			if !ok {
				return nil, err
			}
			if logIt {
				l.log.Warn("web console: accepting connections failed; trying again", "err", err, "retry_in", wait)
			}
			time.Sleep(wait)
			continue
		}
		retries.accepted()
		ip := throttle.Key(c.RemoteAddr().String())
		if !l.take(ip, c.RemoteAddr()) {
			c.Close()
			<-l.sem
			continue
		}
		return &limitConn{Conn: c, release: sync.OnceFunc(func() {
			l.mu.Lock()
			if l.byAddr[ip]--; l.byAddr[ip] <= 0 {
				delete(l.byAddr, ip)
			}
			l.mu.Unlock()
			<-l.sem
		})}, nil
	}
}

// take counts a connection from ip (a throttle.Key), or reports that ip
// holds perAddr.
func (l *limitListener) take(ip string, addr net.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byAddr == nil {
		l.byAddr = map[string]int{}
	}
	if l.perAddr > 0 && l.byAddr[ip] >= l.perAddr {
		l.refused++
		if now := time.Now(); now.Sub(l.logged) >= busyLogEvery {
			l.log.Warn("web console: too many connections from one address; closing the new ones",
				"client", addr.String(), "max_per_address", l.perAddr, "closed", l.refused)
			l.refused, l.logged = 0, now
		}
		return false
	}
	l.byAddr[ip]++
	return true
}

type limitConn struct {
	net.Conn
	release func()
}

func (c *limitConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// consoleURL is how the log and --check name the console.
func consoleURL(cfg *Config) string {
	if cfg.HTTP.Listen == "" {
		return "off ([HTTP] Listen=off)"
	}
	if cfg.HTTP.Loopback() {
		return fmt.Sprintf("http://%s/ (this machine only, no login)", cfg.HTTP.Listen)
	}
	return fmt.Sprintf("https://%s/ (the [ADMIN] login)", cfg.HTTP.Listen)
}

// clientsDBFile is the SQLite file of the client records under a state
// folder.
func clientsDBFile(state string) string { return filepath.Join(state, "clients.db") }

// describeDigest is how --check reports [STATUS] Notify.
func describeDigest(c StatusConfig) string {
	if c.Notify == "" {
		return "not mailed ([STATUS] Notify is not set)"
	}
	return fmt.Sprintf("mailed to %s daily at %s when clients failed or went stale", c.Notify, clock(c.DigestAt))
}

// ClientsDB is the SQLite file of the client records under a state
// folder, for `appserver clients`.
func ClientsDB(state string) string { return clientsDBFile(state) }
