package smartclient_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver"
	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/smartclient/internal/cli"
	"github.com/erpupdate/smartsync/smartclient/internal/servertrust"
	"github.com/erpupdate/smartsync/syncproto"
)

// lockedBuffer is a bytes.Buffer safe for one writer and a reader that
// polls it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// writeBig puts a file of n random (incompressible) bytes in the linux
// update folder, for the server that starts next: unlike server.write it
// touches no state shared between tests, so that tests may run in
// parallel.
func writeBig(t *testing.T, s *server, name string, n int) {
	t.Helper()
	p := filepath.Join(s.folders["linux"], filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, randomData(n), 0o644); err != nil {
		t.Fatal(err)
	}
}

func randomData(n int) []byte {
	b := make([]byte, n)
	x := uint64(0x9e3779b97f4a7c15)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// TestBusyServerServesEveryone: MaxTransfers=2 and 10 clients that all
// need files, started together: never more than 2 transfers at once, some
// clients told "busy, retry in N s" (their progress line says so), and
// then every one served, each tree the release's.
func TestBusyServerServesEveryone(t *testing.T) {
	t.Parallel()
	s := newServer(t, defaultConf)
	// Each transfer lasts a few tenths of a second (256 KiB at 1 MiB/s),
	// so that the slots stay taken longer than a session waits for one.
	writeBig(t, s, "data/big.bin", 256<<10)
	s.tune = func(srv *appserver.Server) {
		srv.MaxTransfers = 2
		srv.TransferWait = 50 * time.Millisecond
		srv.MaxClientBytesPerSecond = 1 << 20
	}
	s.start(defaultConf)
	const clients = 10
	var wg sync.WaitGroup
	dirs := make([]string, clients)
	outs := make([]*lockedBuffer, clients)
	errs := make([]error, clients)
	results := make([]*smartclient.Result, clients)
	start := make(chan struct{})
	for i := range clients {
		dirs[i], outs[i] = filepath.Join(t.TempDir(), "install"), &lockedBuffer{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = smartclient.Sync(context.Background(), smartclient.Options{AllowUnsigned: true,
				Dir: dirs[i], Server: s.addr, OS: "linux", Yes: true, Timeout: 10 * time.Second, Out: outs[i],
				Host: fmt.Sprintf("ws%02d", i), User: "test"})
		}()
	}
	close(start)
	wg.Wait()
	want := tree(t, s.folders["linux"])
	told, turnedAway := 0, 0
	line := regexp.MustCompile(`^Server busy, retrying in \d+ s\.$`)
	for i := range clients {
		if errs[i] != nil || results[i].Outcome != syncproto.OutcomeUpdated {
			t.Errorf("client %d: %+v, %v; want updated\n%s", i, results[i], errs[i], outs[i])
			continue
		}
		sameTree(t, tree(t, dirs[i]), want, fmt.Sprintf("client %d", i))
		turnedAway += results[i].TurnedAway
		for _, l := range strings.Split(strings.TrimSpace(outs[i].String()), "\n") {
			if line.MatchString(l) {
				told++
			} else if l != "" && !strings.Contains(l, "is not signed") {
				t.Errorf("client %d said %q", i, l)
			}
		}
	}
	st := s.srv.AdmissionStats()
	t.Logf("admission: %+v; %d busy lines shown", st, told)
	if st.PeakTransfers > 2 || st.PeakTransfers < 1 {
		t.Errorf("at most %d transfers at once, want 1..2", st.PeakTransfers)
	}
	if st.Busy == 0 || int64(told) != st.Busy || turnedAway != told {
		t.Errorf("%d clients told busy, %d busy lines shown, %d in the results; want the same number, more than 0", st.Busy, told, turnedAway)
	}
	if st.Transfers != 0 || st.Waiting != 0 {
		t.Errorf("%d transfers and %d waiting after all ended", st.Transfers, st.Waiting)
	}
	s.log.waitFor(t, "server busy: every transfer slot taken")
}

// TestNoopCheckIsNotQueued: while every transfer slot is taken (and a
// client that needs one would wait a minute for it), a client whose
// install is current is answered "up to date" at once.
func TestNoopCheckIsNotQueued(t *testing.T) {
	s := newServer(t, defaultConf)
	writeBig(t, s, "data/big.bin", 1<<20)
	s.start(defaultConf)
	current := filepath.Join(t.TempDir(), "current")
	mustSync(t, s, current, yes)

	s.tune = func(srv *appserver.Server) {
		srv.MaxTransfers = 2
		srv.TransferWait = time.Minute
		srv.MaxClientBytesPerSecond = 64 << 10 // 16 s for the release
	}
	s.start(defaultConf)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			smartclient.Sync(ctx, smartclient.Options{AllowUnsigned: true, Dir: filepath.Join(t.TempDir(), "slow"),
				Server: s.addr, OS: "linux", Yes: true, Timeout: 10 * time.Second, Host: fmt.Sprintf("slow%d", i)})
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); s.srv.AdmissionStats().Transfers < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the slow clients did not take both slots: %+v", s.srv.AdmissionStats())
		}
	}
	res := mustSync(t, s, current, nil)
	if res.Outcome != syncproto.OutcomeUpToDate {
		t.Fatalf("outcome %v, want up to date", res.Outcome)
	}
	if st := s.srv.AdmissionStats(); st.Transfers != 2 || st.Busy != 0 || st.Waiting != 0 {
		t.Errorf("after the no-op check: %+v; want both slow transfers still under way, nobody waiting or told busy", st)
	}
}

// TestBandwidthLimits: a per-client limit, and a server-wide one shared
// by two clients, make a transfer take at least its bytes over the limit
// (less one burst). A lower bound only: how much longer it takes depends
// on the machine.
func TestBandwidthLimits(t *testing.T) {
	t.Parallel()
	const size = 1 << 20
	for _, tc := range []struct {
		name      string
		tune      func(*appserver.Server)
		clients   int
		limit     int64 // bytes a second, for all the clients together
		burst     int64
		wantBytes int64
	}{
		{"per client", func(srv *appserver.Server) { srv.MaxClientBytesPerSecond = 512 << 10 }, 1, 512 << 10, 52 << 10, size},
		{"whole server", func(srv *appserver.Server) { srv.MaxBytesPerSecond = 1 << 20 }, 2, 1 << 20, 64 << 10, 2 * size},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, defaultConf)
			writeBig(t, s, "data/big.bin", size)
			s.tune = tc.tune
			s.start(defaultConf)
			began := time.Now()
			var wg sync.WaitGroup
			for i := range tc.clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					mustSync(t, s, filepath.Join(t.TempDir(), "install"), func(o *smartclient.Options) {
						o.Yes, o.Host = true, fmt.Sprintf("ws%d", i)
					})
				}()
			}
			wg.Wait()
			took := time.Since(began)
			least := time.Duration(float64(tc.wantBytes-tc.burst) / float64(tc.limit) * float64(time.Second))
			t.Logf("%d bytes in %v at %d bytes/s: at least %v", tc.wantBytes, took, tc.limit, least)
			if took < least {
				t.Errorf("took %v, want at least %v", took, least)
			}
		})
	}
}

// TestThrottledWritesAreNotTimeouts: the time a write is held back by a
// bandwidth limit does not count against the server's write deadline,
// which is for a client that stops reading: a transfer that takes far
// longer than WriteTimeout at the limit completes.
func TestThrottledWritesAreNotTimeouts(t *testing.T) {
	t.Parallel()
	s := newServer(t, defaultConf)
	writeBig(t, s, "data/big.bin", 256<<10)
	s.tune = func(srv *appserver.Server) {
		srv.WriteTimeout = 300 * time.Millisecond // one 256 KiB chunk takes 2 s at the limit
		srv.MaxClientBytesPerSecond = 128 << 10
	}
	s.start(defaultConf)
	dir := filepath.Join(t.TempDir(), "install")
	if res := mustSync(t, s, dir, yes); res.Outcome != syncproto.OutcomeUpdated {
		t.Fatalf("outcome %v, want updated", res.Outcome)
	}
	sameTree(t, tree(t, dir), tree(t, s.folders["linux"]), "install")
}

// TestStopEndsThrottledTransfers: a server that stops ends, after its
// grace period, a transfer held back by a bandwidth limit, however much
// of it is left.
func TestStopEndsThrottledTransfers(t *testing.T) {
	s := newServer(t, defaultConf)
	writeBig(t, s, "data/big.bin", 4<<20)
	s.tune = func(srv *appserver.Server) {
		srv.Grace = 200 * time.Millisecond
		srv.MaxBytesPerSecond = 16 << 10 // 4 minutes for the release
	}
	s.start(defaultConf)
	done := make(chan error, 1)
	go func() {
		_, err := smartclient.Sync(context.Background(), smartclient.Options{AllowUnsigned: true, Dir: filepath.Join(t.TempDir(), "install"),
			Server: s.addr, OS: "linux", Yes: true, Timeout: time.Minute, MinRate: -1})
		done <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); s.srv.AdmissionStats().Transfers < 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the transfer did not start")
		}
	}
	time.Sleep(200 * time.Millisecond)
	stopped := make(chan struct{})
	go func() { s.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("the server did not stop within 20 s of its grace period")
	}
	if err := <-done; err == nil {
		t.Error("the sync succeeded; want it cut short by the stop")
	}
}

// TestConnectRetry: a server that cannot be reached is tried again, with
// backoff, within ConnectRetryFor: one that comes up in time serves the
// sync; one that does not fails it with the address and how long it was
// tried.
func TestConnectRetry(t *testing.T) {
	t.Run("server comes up", func(t *testing.T) {
		s := newServer(t, defaultConf)
		addr := s.addr
		s.stop() // nothing listens there now
		dir := filepath.Join(t.TempDir(), "install")
		out := &lockedBuffer{}
		type result struct {
			res *smartclient.Result
			err error
		}
		done := make(chan result, 1)
		go func() {
			res, err := smartclient.Sync(context.Background(), smartclient.Options{AllowUnsigned: true, Dir: dir, Server: addr,
				OS: "linux", Yes: true, Timeout: 10 * time.Second, Out: out, ConnectRetryFor: time.Minute})
			done <- result{res, err}
		}()
		said := "Cannot connect to the update server " + addr + "; retrying in "
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), said); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no retry announced: %q", out.String())
			}
		}
		s.listenAt = addr
		s.start(defaultConf)
		r := <-done
		if r.err != nil || r.res.Outcome != syncproto.OutcomeUpdated {
			t.Fatalf("got %+v, %v; want an update once the server is up\n%s", r.res, r.err, out)
		}
		sameTree(t, tree(t, dir), tree(t, s.folders["linux"]), "install")
	})
	t.Run("server stays down", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		began := time.Now()
		_, err = smartclient.Sync(context.Background(), smartclient.Options{AllowUnsigned: true, Dir: t.TempDir(), Server: addr,
			OS: "linux", Yes: true, Timeout: 10 * time.Second, ConnectRetryFor: 3 * time.Second})
		took := time.Since(began)
		if err == nil || !strings.Contains(err.Error(), "cannot reach the update server "+addr) ||
			!regexp.MustCompile(`\(tried [2-9]\d* times over [0-3]s\)$`).MatchString(err.Error()) {
			t.Fatalf("got %v; want the address and how long it was tried", err)
		}
		if took > 10*time.Second {
			t.Errorf("gave up after %v, bound 3 s", took)
		}
	})
}

// countingListener accepts connections on 127.0.0.1 and hands each to
// serve, counting them.
func countingListener(t *testing.T, serve func(net.Conn)) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String(), &n
}

// TestIntegrityFailuresAreNotRetried: a server whose key is not the one
// pinned, or that does not speak TLS, fails the sync at its first
// connection however long connections may be retried.
func TestIntegrityFailuresAreNotRetried(t *testing.T) {
	t.Parallel()
	s := newServer(t, defaultConf)
	forward := func(c net.Conn) {
		up, err := net.Dial("tcp", s.addr)
		if err != nil {
			return
		}
		defer up.Close()
		go io.Copy(up, c)
		io.Copy(c, up)
	}
	for _, tc := range []struct {
		name  string
		serve func(net.Conn)
		fp    string
		want  string
	}{
		{"key not the pinned one", forward, "SHA256:" + strings.Repeat("A", 43), "smartclient.ini names"},
		{"not TLS", func(c net.Conn) { c.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n")); io.Copy(io.Discard, c) }, "", "TLS handshake"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, conns := countingListener(t, tc.serve)
			out := &lockedBuffer{}
			_, err := smartclient.Sync(context.Background(), smartclient.Options{AllowUnsigned: true, Dir: t.TempDir(), Server: addr,
				OS: "linux", Yes: true, Timeout: 10 * time.Second, ConnectRetryFor: time.Minute, Fingerprint: tc.fp, Out: out})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
			if n := conns.Load(); n != 1 || out.String() != "" {
				t.Errorf("%d connections, said %q; want 1 and nothing", n, out)
			}
		})
	}
}

// TestTransportFailure: only failures of the connection are retried;
// anything that says the server is not the trusted one, or spoke wrongly,
// is final even when it comes with a broken connection.
func TestTransportFailure(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, true},
		{"dial of any kind", fmt.Errorf("cannot reach: %w", &net.OpError{Op: "dial", Err: errors.New("no such host")}), true},
		{"reset", fmt.Errorf("TLS handshake: %w", &net.OpError{Op: "read", Err: os.NewSyscallError("wsarecv", smartclient.ResetErrno)}), true},
		{"closed during the handshake", fmt.Errorf("TLS handshake: %w", io.EOF), true},
		{"timeout", fmt.Errorf("TLS handshake: %w", os.ErrDeadlineExceeded), true},
		{"unreachable", os.NewSyscallError("connect", smartclient.HostUnreachableErrno), true},
		{"nil", nil, false},
		{"server's error", &syncproto.Error{Code: syncproto.CodeInternal, Message: "x"}, false},
		{"bad certificate", fmt.Errorf("TLS handshake: %w", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), false},
		{"unknown authority", x509.UnknownAuthorityError{}, false},
		{"alert", fmt.Errorf("TLS handshake: %w", tls.AlertError(42)), false},
		{"not TLS", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, false},
		{"pin mismatch", fmt.Errorf("TLS handshake: %w", servertrust.ErrKeyChanged), false},
		{"malformed with EOF", fmt.Errorf("reading: %w: %w", syncproto.ErrMalformed, io.ErrUnexpectedEOF), false},
		{"bad build", smartclient.ErrServerBuild, false},
		{"anything else", errors.New("tls: server selected unsupported protocol version"), false},
	} {
		if got := smartclient.TransportFailure(tc.err); got != tc.want {
			t.Errorf("%s: transportFailure(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestCLIConnectRetry: the smartclient command retries a server it cannot
// reach by default (2 minutes; an interrupt ends the wait), for as long as
// --connect-retry or smartclient.ini [UPDATE] ConnectRetry say, and then
// names the server and how long it tried.
func TestCLIConnectRetry(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	cliSync := func(ctx context.Context, dir string, out io.Writer, extra ...string) (int, string) {
		var errOut bytes.Buffer
		args := append([]string{"sync", "--allow-unsigned", "--server", addr, "--dir", dir, "--os", "linux", "--yes"}, extra...)
		return cli.Main(ctx, args, strings.NewReader(""), out, &errOut), errOut.String()
	}
	said := "Cannot connect to the update server " + addr + "; retrying in "

	t.Run("default", func(t *testing.T) {
		out := &signalWriter{want: said, seen: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan int, 1)
		go func() { code, _ := cliSync(ctx, t.TempDir(), out); done <- code }()
		select {
		case <-out.seen:
		case code := <-done:
			t.Fatalf("exit %d without retrying: %q", code, out.String())
		case <-time.After(10 * time.Second):
			t.Fatalf("no retry within 10 s: %q", out.String())
		}
		cancel()
		if code := <-done; code != cli.ExitInterrupted {
			t.Errorf("exit %d after the interrupt, want %d", code, cli.ExitInterrupted)
		}
	})
	for _, tc := range []struct {
		name  string
		ini   string
		flags []string
	}{
		{"flag", "", []string{"--connect-retry", "2s"}},
		{"smartclient.ini", "[UPDATE]\nConnectRetry=2\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.ini != "" {
				if err := os.WriteFile(filepath.Join(dir, "smartclient.ini"), []byte(tc.ini), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var out bytes.Buffer
			code, errOut := cliSync(context.Background(), dir, &out, tc.flags...)
			if code != cli.ExitFailed || !strings.Contains(errOut, "cannot reach the update server "+addr) ||
				!regexp.MustCompile(`\(tried \d+ times over [0-2]s\)`).MatchString(errOut) || !strings.Contains(out.String(), said) {
				t.Errorf("exit %d, stdout %q, stderr %q; want a retry, then the failure naming the server and how long it was tried", code, out.String(), errOut)
			}
		})
	}
	t.Run("off", func(t *testing.T) {
		var out bytes.Buffer
		code, errOut := cliSync(context.Background(), t.TempDir(), &out, "--connect-retry", "off")
		if code != cli.ExitFailed || strings.Contains(errOut, "tried") || out.Len() != 0 {
			t.Errorf("exit %d, stdout %q, stderr %q; want a failure at once", code, out.String(), errOut)
		}
	})
	t.Run("bad flag", func(t *testing.T) {
		code, errOut := cliSync(context.Background(), t.TempDir(), io.Discard, "--connect-retry", "often")
		if code != cli.ExitUsage || !strings.Contains(errOut, `--connect-retry "often"`) {
			t.Errorf("exit %d, stderr %q; want a usage error naming the flag", code, errOut)
		}
	})
}

// writeSmall puts n files of size random bytes in the linux update
// folder, under dir: a client counts its progress file by file, so that
// small files let a short RateWindow measure the rate.
func writeSmall(t *testing.T, s *server, dir string, n, size int) {
	t.Helper()
	for i := range n {
		writeBig(t, s, fmt.Sprintf("%s/f%03d.bin", dir, i), size+i) // distinct contents
	}
}

// TestBandwidthShareKeepsClientsAboveTheirMinimum: MaxBytesPerSecond=128K
// over MaxTransfers=8 would give each of 8 clients 16 KiB/s, less than
// the clients accept; the server runs 2 transfers at once instead (64 KiB/s
// each), so that 4 clients whose minimum rate is 40 KiB/s (over 1 s
// windows here, 32 KiB/s over 60 s by default) are all served, none cut
// for slowness. (Before, the 4 ran at once at 32 KiB/s each, and gave up.)
func TestBandwidthShareKeepsClientsAboveTheirMinimum(t *testing.T) {
	t.Parallel()
	s := newServer(t, defaultConf)
	writeSmall(t, s, "data", 16, 4<<10)
	s.tune = func(srv *appserver.Server) {
		srv.MaxTransfers = 8
		srv.TransferWait = 10 * time.Second // a client waits for a slot rather than hear busy
		srv.MaxBytesPerSecond = 128 << 10
	}
	s.start(defaultConf)
	const clients = 4
	var wg sync.WaitGroup
	errs := make([]error, clients)
	for i := range clients {
		wg.Go(func() {
			_, errs[i] = smartclient.Sync(context.Background(), smartclient.Options{AllowUnsigned: true,
				Dir: filepath.Join(t.TempDir(), "install"), Server: s.addr, OS: "linux", Yes: true, Timeout: 10 * time.Second,
				Host: fmt.Sprintf("ws%d", i), MinRate: 40 << 10, RateWindow: time.Second})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("client %d: %v", i, err)
		}
	}
	st := s.srv.AdmissionStats()
	t.Logf("admission: %+v", st)
	if st.MaxTransfers != 2 || st.PeakTransfers > 2 {
		t.Errorf("%d slots, %d transfers at once; want 2 slots of 64 KiB/s", st.MaxTransfers, st.PeakTransfers)
	}
}

// TestFullUpdateAskedOnceAcrossBusyRetries: a first install asks the user
// once; a busy server's refusal, waited out, does not ask again.
func TestFullUpdateAskedOnceAcrossBusyRetries(t *testing.T) {
	s := newServer(t, defaultConf)
	writeBig(t, s, "data/big.bin", 64<<10)
	s.tune = func(srv *appserver.Server) {
		srv.MaxTransfers = 1
		srv.TransferWait = 50 * time.Millisecond
		srv.MaxClientBytesPerSecond = 128 << 10 // about a second for the release
	}
	s.start(defaultConf)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		smartclient.Sync(ctx, smartclient.Options{AllowUnsigned: true, Dir: filepath.Join(t.TempDir(), "install"),
			Server: s.addr, OS: "linux", Yes: true, Timeout: 10 * time.Second, Host: "holder"})
	})
	defer func() { cancel(); wg.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); s.srv.AdmissionStats().Transfers < 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first client did not take the slot")
		}
	}
	var asked []string
	var out lockedBuffer
	res, err := smartclient.Sync(context.Background(), smartclient.Options{AllowUnsigned: true, Dir: filepath.Join(t.TempDir(), "install"),
		Server: s.addr, OS: "linux", Timeout: 10 * time.Second, Host: "asked", Out: &out,
		Confirm: func(q string) (bool, error) { asked = append(asked, q); return true, nil }})
	if err != nil || res.Outcome != syncproto.OutcomeUpdated {
		t.Fatalf("got %+v, %v; want updated\n%s", res, err, out.String())
	}
	if res.TurnedAway < 1 {
		t.Fatalf("turned away %d times; the test wants the server busy at least once\n%s", res.TurnedAway, out.String())
	}
	if len(asked) != 1 {
		t.Errorf("asked %d times across %d busy retries: %q; want once", len(asked), res.TurnedAway, asked)
	}
}

// TestLastAttemptAsRetryForEnds: a busy server whose "retry in N s" (with
// jitter) would outlast RetryFor is tried once more as RetryFor ends,
// rather than given up at once; the refusal of that last attempt is the
// error.
func TestLastAttemptAsRetryForEnds(t *testing.T) {
	s := newServer(t, defaultConf)
	writeBig(t, s, "data/big.bin", 512<<10)
	s.tune = func(srv *appserver.Server) {
		srv.MaxTransfers = 1
		srv.TransferWait = 50 * time.Millisecond
		srv.MaxClientBytesPerSecond = 64 << 10 // 8 s for the release
	}
	s.start(defaultConf)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		smartclient.Sync(ctx, smartclient.Options{AllowUnsigned: true, Dir: filepath.Join(t.TempDir(), "install"),
			Server: s.addr, OS: "linux", Yes: true, Timeout: 10 * time.Second, Host: "holder"})
	})
	defer func() { cancel(); wg.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); s.srv.AdmissionStats().Transfers < 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first client did not take the slot")
		}
	}
	var out lockedBuffer
	began := time.Now()
	_, err := smartclient.Sync(context.Background(), smartclient.Options{AllowUnsigned: true, Dir: filepath.Join(t.TempDir(), "install"),
		Server: s.addr, OS: "linux", Yes: true, Timeout: 10 * time.Second, Host: "late", Out: &out, RetryFor: time.Second})
	took := time.Since(began)
	var pe *syncproto.Error
	if !errors.As(err, &pe) || pe.Code != syncproto.CodeBusy {
		t.Fatalf("got %v after %v; want the busy refusal of the last attempt", err, took)
	}
	if said := regexp.MustCompile(`(?m)^.*retrying.*$`).FindAllString(out.String(), -1); len(said) != 1 || said[0] != "Server busy, retrying in 1 s." {
		t.Errorf("said %q; want one retry, as RetryFor ends", said)
	}
	if st := s.srv.AdmissionStats(); st.Busy != 2 {
		t.Errorf("%d refusals; want 2 (the first attempt and the last)", st.Busy)
	}
	if took < 900*time.Millisecond || took > 5*time.Second {
		t.Errorf("gave up after %v; want about RetryFor (1 s)", took)
	}
}

// TestPlainRawTransferUnderTheMeter: a raw file over plain TCP goes from
// the server's file to the socket by sendfile(2), in the pieces the
// progress floor meters; every byte arrives, files of sizes that are not
// a multiple of a piece included.
func TestPlainRawTransferUnderTheMeter(t *testing.T) {
	t.Parallel()
	s := newServer(t, defaultConf)
	writeBig(t, s, "data/big.bin", 1<<20+12345)
	writeBig(t, s, "data/mid.bin", 300<<10+7)
	conf := defaultConf
	conf.plain = true
	s.start(conf)
	dir := filepath.Join(t.TempDir(), "install")
	if _, err := syncTo(t, dir, s.addr, smartclient.Options{AllowPlaintext: true, Compress: smartclient.CompressNo}); err != nil {
		t.Fatal(err)
	}
	sameTree(t, tree(t, dir), tree(t, s.folders["linux"]), "install")
}
