package appserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/syncproto"
)

// TestParseConfigAdmission: [UPDATE] MaxTransfers defaults from the
// machine; the bandwidth keys take bytes with K, M or G (1024-based) and 0
// for none; a bad value is an error naming the file, section and key.
func TestParseConfigAdmission(t *testing.T) {
	type want struct {
		transfers  int
		total, per int64
	}
	def := want{max(8, 4*runtime.GOMAXPROCS(0)), 0, 0}
	tests := []struct {
		name    string
		text    string
		want    want
		key     string // of the error; "" for none
		problem string
	}{
		{"absent", "", def, "", ""},
		{"empty", "MaxTransfers=\nMaxBytesPerSecond=\n", def, "", ""},
		{"all set", "maxtransfers=2\nMaxBytesPerSecond=10M\nMaxClientBytesPerSecond=512k\n", want{2, 10 << 20, 512 << 10}, "", ""},
		{"plain bytes", "MaxBytesPerSecond=1048576\nMaxClientBytesPerSecond=0\n", want{def.transfers, 1 << 20, 0}, "", ""},
		{"gigabytes", "MaxBytesPerSecond=1G\n", want{def.transfers, 1 << 30, 0}, "", ""},
		{"largest", "MaxBytesPerSecond=1024G\n", want{def.transfers, 1 << 40, 0}, "", ""},
		{"smallest", "MaxClientBytesPerSecond=64K\nMaxBytesPerSecond=65536\n", want{def.transfers, 64 << 10, 64 << 10}, "", ""},
		{"client below its least share", "MaxClientBytesPerSecond=16K\n", def, "MaxClientBytesPerSecond",
			`"16K" is below 64K: a client gives up on a transfer slower than 32K a second (smartclient's minimum rate), so a transfer must be given at least twice that; write 64K or more, or 0 for no limit`},
		{"server below one share", "MaxBytesPerSecond=65535\n", def, "MaxBytesPerSecond", `"65535" is below 64K: a client gives up on a transfer slower than 32K a second`},
		{"lowest syntax, below a share", "MaxClientBytesPerSecond=1024\n", def, "MaxClientBytesPerSecond", `"1024" is below 64K`},
		{"no transfers", "MaxTransfers=0\n", def, "MaxTransfers", `"0" is not a number of transfers from 1 to 100000`},
		{"too many transfers", "MaxTransfers=100001\n", def, "MaxTransfers", `"100001" is not a number of transfers from 1 to 100000`},
		{"transfers word", "MaxTransfers=eight\n", def, "MaxTransfers", `"eight" is not a number of transfers`},
		{"MB", "MaxBytesPerSecond=10MB\n", def, "MaxBytesPerSecond", `"10MB" is not a number of bytes a second: write 0 for no limit, or a whole number from 1024 (1K) to 1099511627776 (1024G), optionally followed by K, M or G (1024-based), as in 10M`},
		{"too small", "MaxClientBytesPerSecond=1000\n", def, "MaxClientBytesPerSecond", `"1000" is not a number of bytes a second`},
		{"too large", "MaxBytesPerSecond=1025G\n", def, "MaxBytesPerSecond", `"1025G" is not a number of bytes a second`},
		{"negative", "MaxClientBytesPerSecond=-1\n", def, "MaxClientBytesPerSecond", `"-1" is not a number of bytes a second`},
		{"unit alone", "MaxBytesPerSecond=K\n", def, "MaxBytesPerSecond", `"K" is not a number of bytes a second`},
		{"fraction", "MaxBytesPerSecond=1.5M\n", def, "MaxBytesPerSecond", `"1.5M" is not a number of bytes a second`},
		{"overflow", "MaxBytesPerSecond=99999999999999999999\n", def, "MaxBytesPerSecond", `is not a number of bytes a second`},
		{"unknown key", "MaxTransfer=2\n", def, "MaxTransfer", "unknown key (did you mean MaxTransfers?)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("AppServer.ini", []byte(baseINI+tc.text), t.TempDir())
			if tc.key == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := (want{cfg.MaxTransfers, cfg.MaxBytesPerSecond, cfg.MaxClientBytesPerSecond}); got != tc.want {
					t.Errorf("got %+v, want %+v", got, tc.want)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a ConfigError", err)
			}
			if ce.File != "AppServer.ini" || ce.Section != "UPDATE" || ce.Key != tc.key || !strings.Contains(ce.Problem, tc.problem) {
				t.Errorf("got %s (section %q, key %q), want [UPDATE] %s: ...%s...", ce, ce.Section, ce.Key, tc.key, tc.problem)
			}
		})
	}
}

// TestBusyRetryAfter: N = ceil((queued+1)/slots) × the average transfer,
// clamped to 1 s .. 5 min.
func TestBusyRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		queued, slots int
		avg, want     time.Duration
	}{
		{0, 8, 10 * time.Second, 10 * time.Second},              // next round
		{7, 8, 10 * time.Second, 10 * time.Second},              // 8 of us: still one round
		{8, 8, 10 * time.Second, 20 * time.Second},              // the ninth waits two
		{100, 8, 3 * time.Second, 39 * time.Second},             // ceil(101/8)=13 rounds
		{8, 2, 300 * time.Millisecond, 1500 * time.Millisecond}, // ceil(9/2)=5 rounds
		{0, 2, 10 * time.Millisecond, time.Second},              // floor
		{100000, 8, time.Minute, 5 * time.Minute},               // cap
		{-5, 0, 0, time.Second},                                 // nonsense in: the floor
		{1 << 40, 1, time.Hour, 5 * time.Minute},                // no overflow
	} {
		if got := busyRetryAfter(tc.queued, tc.slots, tc.avg); got != tc.want {
			t.Errorf("busyRetryAfter(%d, %d, %v) = %v, want %v", tc.queued, tc.slots, tc.avg, got, tc.want)
		}
	}
}

// TestDescribeAdmission: the summary's line shows the keys as set.
func TestDescribeAdmission(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{MaxTransfers: 3}, "[UPDATE] MaxTransfers=3 transfers at once; MaxBytesPerSecond no limit, MaxClientBytesPerSecond no limit"},
		{Config{MaxTransfers: 8, MaxBytesPerSecond: 10 << 20, MaxClientBytesPerSecond: 1500},
			"[UPDATE] MaxTransfers=8 transfers at once; MaxBytesPerSecond 10M (10485760 bytes/s), MaxClientBytesPerSecond 1500 bytes/s"},
		// 2M over 128 slots is 16K each: 32 slots of 64K.
		{Config{MaxTransfers: 128, MaxBytesPerSecond: 2 << 20},
			"[UPDATE] MaxTransfers=128, of which 32 at once (MaxBytesPerSecond gives each transfer at least 64K a second); MaxBytesPerSecond 2M (2097152 bytes/s), MaxClientBytesPerSecond no limit"},
	} {
		if got := describeAdmission(&tc.cfg); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

// TestServerBusyAtGetManifest: with its one transfer slot taken, the
// server welcomes a new client (the hello is never refused for it), tells
// it busy at the GetManifest that needs a transfer, answers a no-op check
// all the same, and frees the slot once the last requested file is sent,
// before any Report.
func TestServerBusyAtGetManifest(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"a.bin": "first file", "b.bin": "second file"}, oldTime)
	ts := startServer(t, linuxConfig(t, dir), func(s *Server) {
		s.MaxTransfers = 1
		s.TransferWait = 50 * time.Millisecond
	}, nil)
	digestOf := func(h syncproto.ManifestHeader, entries []syncproto.ManifestEntry) [32]byte {
		d := syncproto.NewDigester(h)
		for _, e := range entries {
			d.Add(e)
		}
		return d.Sum()
	}

	a := mustDial(t, ts.addr)
	if _, err := a.hello(srvBuild, "linux", "a"); err != nil {
		t.Fatal(err)
	}
	h, entries, err := a.manifest()
	if err != nil {
		t.Fatal(err)
	}
	if st := ts.srv.AdmissionStats(); st.Transfers != 1 {
		t.Fatalf("%+v after a's manifest, want 1 transfer", st)
	}

	b := mustDial(t, ts.addr)
	if _, err := b.hello(srvBuild, "linux", "b"); err != nil {
		t.Fatalf("b's hello: %v; want a welcome, busy or not", err)
	}
	if err := b.send(syncproto.GetManifest{}); err != nil {
		t.Fatal(err)
	}
	_, err = b.r.Read()
	var pe *syncproto.Error
	if !errors.As(err, &pe) || pe.Code != syncproto.CodeBusy || pe.Retry < 1 ||
		pe.Message != fmt.Sprintf("server is busy, retry in %d s", pe.Retry) {
		t.Fatalf("b's GetManifest: %v; want Error{CodeBusy, \"server is busy, retry in N s\", Retry: N}", err)
	}

	// A no-op check takes no slot.
	n := mustDial(t, ts.addr)
	if _, err := n.hello(srvBuild, "linux", "n"); err != nil {
		t.Fatal(err)
	}
	if err := n.send(syncproto.GetManifest{Have: digestOf(h, entries)}); err != nil {
		t.Fatal(err)
	}
	if m, err := n.r.Read(); err != nil || m.Type() != syncproto.MsgUpToDate {
		t.Fatalf("no-op check while the slot is taken: %v, %v; want UpToDate", m, err)
	}

	// a fetches one file: the slot is free once it is sent, Report or not.
	idx := indexOf(entries)["a.bin"]
	if err := a.send(syncproto.Request{Indices: []uint32{idx}}, syncproto.RequestEnd{}); err != nil {
		t.Fatal(err)
	}
	dec, err := syncproto.NewChunkDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	if got, err := a.receiveFile(dec, idx); err != nil || string(got.data) != "first file" {
		t.Fatalf("a's file: %q, %v", got.data, err)
	}
	for deadline := time.Now().Add(5 * time.Second); ts.srv.AdmissionStats().Transfers != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the slot is still taken after a's last file: %+v", ts.srv.AdmissionStats())
		}
	}
	c := mustDial(t, ts.addr)
	if _, err := c.hello(srvBuild, "linux", "c"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.manifest(); err != nil {
		t.Fatalf("c's manifest once the slot is free: %v", err)
	}
	if st := ts.srv.AdmissionStats(); st.Busy != 1 || st.PeakTransfers != 1 || st.MaxTransfers != 1 {
		t.Errorf("%+v; want 1 told busy, at most 1 transfer at once", st)
	}
	// The refusal is logged (once per busyLogEvery, whatever the flood).
	if !strings.Contains(ts.logs.String(), "server busy: every transfer slot taken") {
		t.Errorf("the refusal is not logged:\n%s", ts.logs)
	}
}

// FuzzParseBytesPerSecond: any value is either refused or read as 0 or a
// bandwidth in range, which formatBytesPerSecond writes back in a form
// the parser reads as the same number.
func FuzzParseBytesPerSecond(f *testing.F) {
	for _, s := range []string{"0", "1024", "1K", "10M", "1G", "1024G", "1025G", "10MB", "-1", "", "k", "1.5M", "99999999999999999999K"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseBytesPerSecond(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("%q: %d with error %v", s, n, err)
			}
			return
		}
		if n != 0 && (n < minBytesPerSecond || n > maxBytesPerSecond) {
			t.Fatalf("%q: %d out of range", s, n)
		}
		if n == 0 {
			return
		}
		back, _, _ := strings.Cut(formatBytesPerSecond(n), " ")
		if m, err := parseBytesPerSecond(back); err != nil || m != n {
			t.Fatalf("%q: %d written as %q, read back as %d, %v", s, n, back, m, err)
		}
	})
}

// TestEffectiveTransfers: MaxBytesPerSecond never gives a slot less than
// 64 KiB/s (twice the client's minimum rate): past that there are fewer
// slots, and at least one.
func TestEffectiveTransfers(t *testing.T) {
	for _, tc := range []struct {
		max  int
		bps  int64
		want int
	}{
		{8, 0, 8},
		{128, 2 << 20, 32},
		{8, 2 << 20, 8},
		{8, 100 << 10, 1},
		{8, 64 << 10, 1},
		{8, 1 << 10, 1}, // set by hand below the config's range: one slot all the same
		{0, 0, defaultMaxTransfers()},
	} {
		if got := effectiveTransfers(tc.max, tc.bps); got != tc.want {
			t.Errorf("effectiveTransfers(%d, %d) = %d, want %d", tc.max, tc.bps, got, tc.want)
		}
	}
}

// TestServerSlotsFromBandwidth: a server whose MaxBytesPerSecond would
// give each of its MaxTransfers less than 64 KiB/s runs fewer transfers
// at once, and says so when it starts.
func TestServerSlotsFromBandwidth(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"a.bin": "a file"}, oldTime)
	ts := startServer(t, linuxConfig(t, dir), func(s *Server) {
		s.MaxTransfers = 128
		s.MaxBytesPerSecond = 2 << 20
	}, nil)
	c := mustDial(t, ts.addr)
	if _, err := c.hello(srvBuild, "linux", "a"); err != nil {
		t.Fatal(err)
	}
	if st := ts.srv.AdmissionStats(); st.MaxTransfers != 32 {
		t.Errorf("%d slots with MaxTransfers=128 and MaxBytesPerSecond=2M; want 32 (64K each)", st.MaxTransfers)
	}
	logs := ts.logs.String()
	if !strings.Contains(logs, "fewer transfers at once than MaxTransfers") || !strings.Contains(logs, "transfers_at_once=32") {
		t.Errorf("the start does not say how many transfers run at once:\n%s", logs)
	}
}

// slowHello says hello as host and id, and asks for the manifest and for
// name, as the client of a transfer.
func slowHello(t *testing.T, c *testClient, host, id string) {
	t.Helper()
	if err := c.send(syncproto.Hello{ClientBuild: srvBuild, OS: "linux", ClientID: id, Host: host, User: "u"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.r.Expect(syncproto.MsgWelcome); err != nil {
		t.Fatal(err)
	}
}

// TestSlowTransferLosesItsSlot: a client that takes the file it asked for
// more slowly than the progress floor (here 256 KiB/s over 0.5 s of
// writing, in production 8 KiB/s over 60 s) is closed well before any
// write deadline, logged at WARN with who it was and its rate, and its
// slot goes to the next client, which is served at full speed.
func TestSlowTransferLosesItsSlot(t *testing.T) {
	files := map[string]string{"big.bin": string(randomBytes(8<<20, 3))}
	dir := t.TempDir()
	writeTree(t, dir, files, oldTime)
	ts := startServer(t, linuxConfig(t, dir), func(s *Server) {
		s.MaxTransfers = 1
		s.TransferWait = 50 * time.Millisecond
		s.IdleTimeout = time.Minute
		s.WriteTimeout = time.Minute
		s.TransferMinRate = 256 << 10
		s.TransferRateWindow = 500 * time.Millisecond
	}, listenSmall(t))
	c := dialSmall(t, ts.addr)
	slowHello(t, c, "ws-slow", "slow-id")
	_, entries, err := c.manifest()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.send(syncproto.Request{Indices: []uint32{indexOf(entries)["big.bin"]}}, syncproto.RequestEnd{}); err != nil {
		t.Fatal(err)
	}
	// About 160 KiB/s: 8 KiB every 50 ms. The 8 MiB would take 50 s.
	start := time.Now()
	buf := make([]byte, 8<<10)
	var got int
	for {
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.conn.Read(buf)
		got += n
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the server neither sent nor closed for 5 s (%d bytes read)", got)
			}
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the slow client is still served after %v (%d bytes read); want it closed within a few windows", time.Since(start), got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(start)
	t.Logf("the slow client was closed after %v, %d bytes read", took.Round(time.Millisecond), got)
	waitLogged(t, ts, "closing a session that holds a transfer slot without progress")
	logs := ts.logs.String()
	for _, want := range []string{"level=WARN msg=\"closing a session that holds a transfer slot without progress\"", "host=ws-slow", "id=slow-id", "bytes_per_second=", "min_bytes_per_second=262144"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log does not say %q:\n%s", want, logs)
		}
	}
	// The slot is the next client's, which the floor lets through.
	for deadline := time.Now().Add(5 * time.Second); ts.srv.AdmissionStats().Transfers != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the slot is still taken: %+v", ts.srv.AdmissionStats())
		}
	}
	if err := fullSession(ts.addr, "next", files); err != nil {
		t.Fatalf("the next client: %v", err)
	}
	if st := ts.srv.AdmissionStats(); st.Busy != 0 {
		t.Errorf("%+v; want nobody told busy", st)
	}
}

// TestSilentClientLosesItsSlot: a client that holds a slot and does not
// send its requests (here for 300 ms, in production 60 s in all) is told
// why and closed, and its slot goes to the next client; its IdleTimeout
// (a minute here) does not apply while it holds one.
func TestSilentClientLosesItsSlot(t *testing.T) {
	files := map[string]string{"a.bin": "a file"}
	dir := t.TempDir()
	writeTree(t, dir, files, oldTime)
	ts := startServer(t, linuxConfig(t, dir), func(s *Server) {
		s.MaxTransfers = 1
		s.TransferWait = 50 * time.Millisecond
		s.IdleTimeout = time.Minute
		s.RequestWait = 300 * time.Millisecond
	}, nil)
	c := mustDial(t, ts.addr)
	slowHello(t, c, "ws-silent", "silent-id")
	start := time.Now()
	if _, _, err := c.manifest(); err != nil {
		t.Fatal(err)
	}
	// One request, then nothing: the wait is counted in all, not anew
	// for every message.
	time.Sleep(200 * time.Millisecond)
	if err := c.send(syncproto.Request{Indices: []uint32{0}}); err != nil {
		t.Fatal(err)
	}
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.r.Read()
	var pe *syncproto.Error
	if !errors.As(err, &pe) || pe.Code != syncproto.CodeBusy ||
		!strings.Contains(pe.Message, "the server closed the transfer to give its slot to another client: the client took more than 300ms in all to send its file requests") {
		t.Fatalf("after %v: %v; want Error{CodeBusy, \"the server closed the transfer ...\"}", time.Since(start), err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("told after %v; want about 300 ms", took)
	}
	waitLogged(t, ts, "closing a session that holds a transfer slot without progress")
	if logs := ts.logs.String(); !strings.Contains(logs, "host=ws-silent") || !strings.Contains(logs, "id=silent-id") {
		t.Errorf("the log does not name the client:\n%s", logs)
	}
	if err := fullSession(ts.addr, "next", files); err != nil {
		t.Fatalf("the next client: %v", err)
	}
}

// waitLogged waits up to 5 s for the server's log to hold want.
func waitLogged(t *testing.T, ts *testServer, want string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(ts.logs.String(), want); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the log does not say %q:\n%s", want, ts.logs)
		}
	}
}

// TestSendfileConnMeters: over a TCP connection with no bandwidth limit,
// a session's connection keeps a ReadFrom (sendfile(2) for a file), which
// sends every byte of a file, in pieces the meter counts. (In a session
// it applies only where the connection under it is a *net.TCPConn; see
// newTransferConn.)
func TestSendfileConnMeters(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn, tc := newTransferConn(context.Background(), raw, newTransfers(slog.New(slog.DiscardHandler), 1, time.Second, 0, 0))
	if _, ok := conn.(io.ReaderFrom); !ok {
		t.Fatalf("%T over a TCP connection has no ReadFrom", conn)
	}
	m := tc.start(&transfers{})
	data := randomBytes(200<<10+7, 5) // more than 3 pieces
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := syncproto.NewWriter(conn)
	if err := w.WriteFileData(f, len(data)); err != nil {
		t.Fatal(err)
	}
	sent, _ := m.read(time.Now())
	tc.end()
	raw.Close()
	b := <-got
	if len(b) < len(data) || string(b[len(b)-len(data):]) != string(data) {
		t.Fatalf("received %d bytes, want the frame's header and the %d of the file", len(b), len(data))
	}
	if sent != int64(len(b)) {
		t.Errorf("metered %d bytes, sent %d", sent, len(b))
	}
}
