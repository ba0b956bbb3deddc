package console_test

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/console"
)

// adminLogins stands for the admin channel's throttle, whose end also
// returns the count of failures.
type adminLogins struct{}

func (adminLogins) begin(host string) time.Duration { return 0 }
func (adminLogins) end(host string, ok bool) int    { return 0 }

// throttle adapts it to console.Throttle.
type throttle struct{ l adminLogins }

func (t throttle) Begin(host string) time.Duration { return t.l.begin(host) }
func (t throttle) End(host string, ok bool) int    { return t.l.end(host, ok) }

// The appserver serves the console on its [HTTP] listener; beyond
// loopback it sets RequireLogin and serves over TLS.
func Example() {
	var records console.Source // the appserver's adapter over its records store
	var metrics http.Handler   // the Prometheus registry's handler
	c, err := console.New(console.Options{
		Source:       records,
		Log:          slog.Default(),
		RequireLogin: true,
		Login: func(ctx context.Context, user, password string) error {
			return nil // appserver.CheckPassword(conf, user, password)
		},
		Throttle: throttle{adminLogins{}},
		Metrics:  metrics,
		Name:     "erp-server",
	})
	if err != nil {
		return
	}
	srv := &http.Server{Addr: "127.0.0.1:8088", Handler: c, ReadHeaderTimeout: 10 * time.Second}
	_ = srv // srv.ServeTLS(listener, "", "") with the server's certificate
}
