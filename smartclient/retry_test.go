package smartclient_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/pki"
	"github.com/erpupdate/smartsync/internal/pki/pkitest"
	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/smartclient/internal/cli"
	"github.com/erpupdate/smartsync/syncproto"
)

// refusingProxy stands before a real server as a server that turns
// sessions away for a while does: it answers the Hello of its first
// `refuse` connections (every one when refuse < 0) with its error and
// closes them, and forwards the others to the server.
type refusingProxy struct {
	addr  string
	conns atomic.Int32 // connections accepted
}

func newRefusingProxy(t *testing.T, target string, refuse int, e syncproto.Error) *refusingProxy {
	t.Helper()
	// The proxy has a key of its own, which the client trusts on first
	// use, and speaks TLS to the server.
	ln := pkitest.Listen(t)
	p := &refusingProxy{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(p.conns.Add(1))
			go func() {
				defer c.Close()
				if refuse < 0 || n <= refuse {
					// The Hello is read first, so that closing sends
					// a FIN after the error rather than a reset.
					if _, err := syncproto.NewReader(c).Read(); err != nil {
						return
					}
					w := syncproto.NewWriter(c)
					if w.Write(&e) == nil {
						w.Flush()
					}
					return
				}
				up, err := tls.Dial("tcp", target, pki.ClientConfig("127.0.0.1", func(tls.ConnectionState) error { return nil }))
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
	return p
}

var updating = syncproto.Error{Code: syncproto.CodeUpdating, Message: "server is updating, retry in 1 s", Retry: 1}

func TestRetryWait(t *testing.T) {
	for _, tc := range []struct {
		retry, min, max time.Duration
	}{
		// N plus full jitter: N to 2N, the jitter at most 5 minutes.
		{time.Second, time.Second, 2 * time.Second},
		{100 * time.Second, 100 * time.Second, 200 * time.Second},
		{time.Hour, time.Hour, time.Hour + 5*time.Minute},
	} {
		for range 200 {
			if got := smartclient.RetryWait(tc.retry); got < tc.min || got > tc.max {
				t.Fatalf("RetryWait(%v) = %v, want %v..%v", tc.retry, got, tc.min, tc.max)
			}
		}
	}
}

// TestRetryWhenTheServerTurnsAway: a server that is updating (or busy, or
// stopping) and names a time is tried again after it, within RetryFor.
func TestRetryWhenTheServerTurnsAway(t *testing.T) {
	s := newServer(t, defaultConf)
	later := syncproto.Error{Code: syncproto.CodeUpdating, Message: "server is updating, retry in 30 s", Retry: 30}
	tests := []struct {
		name      string
		refusal   syncproto.Error
		refuse    int // connections refused; 0 means 1, -1 every one
		retryFor  time.Duration
		wantConns int32
		wantSaid  string // what the output starts with; "" when the sync fails
	}{
		{"updating", updating, 0, 0, 2, "Server updating, retrying in "},
		{"busy", syncproto.Error{Code: syncproto.CodeBusy, Message: "busy, retry in 1 s", Retry: 1}, 0, 0, 2, "Server busy, retrying in "},
		{"no retry when RetryFor is negative", updating, 0, -1, 1, ""},
		// A wait that outlasts RetryFor is cut to it: one last attempt
		// as it ends, which may be served, or refused once more.
		{"last attempt as RetryFor ends", later, 0, time.Second, 2, "Server updating, retrying in 1 s.\n"},
		{"last attempt refused", later, -1, time.Second, 2, "Server updating, retrying in 1 s.\n"},
		{"no retry without a time", syncproto.Error{Code: syncproto.CodeBusy, Message: "busy"}, 0, 0, 1, ""},
		{"no retry of other codes", syncproto.Error{Code: syncproto.CodeInternal, Message: "broken", Retry: 1}, 0, 0, 1, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newRefusingProxy(t, s.addr, cmp.Or(tc.refuse, 1), tc.refusal)
			dir := t.TempDir()
			var out bytes.Buffer
			res, err := smartclient.Sync(context.Background(), smartclient.Options{AllowUnsigned: true,
				Dir: dir, Server: p.addr, OS: "linux", Yes: true, Timeout: 10 * time.Second, Out: &out, RetryFor: tc.retryFor,
			})
			if got := p.conns.Load(); got != tc.wantConns {
				t.Errorf("%d connections, want %d", got, tc.wantConns)
			}
			if tc.refuse < 0 {
				var pe *syncproto.Error
				if !errors.As(err, &pe) || *pe != tc.refusal {
					t.Fatalf("got %+v, %v; want the server's refusal", res, err)
				}
				if said := out.String(); said != tc.wantSaid {
					t.Errorf("said %q, want %q", said, tc.wantSaid)
				}
				return
			}
			if tc.wantSaid == "" {
				var pe *syncproto.Error
				if !errors.As(err, &pe) || *pe != tc.refusal {
					t.Fatalf("got %+v, %v; want the server's refusal", res, err)
				}
				if out.Len() != 0 {
					t.Errorf("said %q, want nothing", out.String())
				}
				return
			}
			if err != nil || res.Outcome != syncproto.OutcomeUpdated {
				t.Fatalf("got %+v, %v; want an update after the retry", res, err)
			}
			if said := out.String(); strings.Count(said, "retrying in") != 1 || !strings.HasPrefix(said, tc.wantSaid) {
				t.Errorf("said %q, want one line %q...", said, tc.wantSaid)
			}
		})
	}
}

// signalWriter collects what is written and closes seen once it holds
// want.
type signalWriter struct {
	mu   sync.Mutex
	b    bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if strings.Contains(w.b.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *signalWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestInterruptWhileWaitingToRetry: an interrupt while the client waits
// for an updating server ends the wait at once, as any interrupt does.
func TestInterruptWhileWaitingToRetry(t *testing.T) {
	s := newServer(t, defaultConf)
	p := newRefusingProxy(t, s.addr, -1, syncproto.Error{Code: syncproto.CodeUpdating, Message: "server is updating, retry in 600 s", Retry: 600})
	dir := t.TempDir()
	out := &signalWriter{want: "retrying in", seen: make(chan struct{})}
	var errOut bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- cli.Main(ctx, []string{"sync", "--allow-unsigned", "--server", p.addr, "--dir", dir, "--os", "linux", "--yes"}, strings.NewReader(""), out, &errOut)
	}()
	select {
	case <-out.seen:
	case code := <-done:
		t.Fatalf("exit %d before waiting: %q %q", code, out.String(), errOut.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("no retry announced within 10 s: %q", out.String())
	}
	// 600 s, plus up to as much again.
	if said := out.String(); !regexp.MustCompile(`^Server updating, retrying in ([6-9]\d\d|1[01]\d\d|1200) s\.\n$`).MatchString(said) {
		t.Errorf("said %q", said)
	}
	cancel()
	select {
	case code := <-done:
		if code != cli.ExitInterrupted || !strings.Contains(errOut.String(), "Interrupted") {
			t.Errorf("exit %d, %q; want %d and the interrupt", code, errOut.String(), cli.ExitInterrupted)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still waiting 10 s after the interrupt")
	}
}
