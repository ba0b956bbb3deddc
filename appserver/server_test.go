package appserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/index"
	"github.com/erpupdate/smartsync/appserver/internal/service"
	"github.com/erpupdate/smartsync/internal/cdc"
	"github.com/erpupdate/smartsync/internal/pki"
	"github.com/erpupdate/smartsync/internal/testtree"
	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"
)

const (
	srvBuild    = "7.00.240501A"
	srvMinBuild = "7.00.231101A"
)

// loadServerConfig writes an AppServer.ini with the given [UPDATE] lines
// into a new temporary folder and loads it. It returns the configuration
// and the file's path.
func loadServerConfig(t testing.TB, update ...string) (*Config, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "AppServer.ini")
	writeFile(t, path, "[TCP]\nPort=1234\n\n[UPDATE]\n"+strings.Join(update, "\n")+"\n")
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	return cfg, path
}

// linuxConfig serves dir to linux clients, with updates enabled.
func linuxConfig(t testing.TB, dir string) *Config {
	t.Helper()
	cfg, _ := loadServerConfig(t, "Enable=1", "PathLinux="+dir, "Build="+srvBuild,
		"MinClientBuild="+srvMinBuild, "Preserve=SmartClient.ini")
	return cfg
}

// testServer is a Server serving on 127.0.0.1 from a goroutine.
type testServer struct {
	srv    *Server
	addr   string
	logs   *testtree.Buffer
	cancel context.CancelFunc
	served chan struct{} // closed when Serve returns
	err    error         // what Serve returned, valid once served is closed
}

// startServer starts a server for cfg with deadlines short enough for
// tests; tune may change them before it starts. ln, when not nil, is the
// listener to serve on.
func startServer(t testing.TB, cfg *Config, tune func(*Server), ln net.Listener) *testServer {
	t.Helper()
	return startServerIn(t, cfg, t.TempDir(), tune, ln)
}

// startServerIn is startServer with the state folder state.
func startServerIn(t testing.TB, cfg *Config, state string, tune func(*Server), ln net.Listener) *testServer {
	t.Helper()
	logs := &testtree.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, slog.New(slog.NewTextHandler(logs, nil)), cfg, state)
	if err != nil {
		cancel()
		t.Fatalf("New: %v", err)
	}
	srv.HandshakeTimeout = time.Second
	if testtree.UnderWine() {
		// Under Wine, with every package's tests at once, a TLS
		// handshake has taken over a second; tests that time the
		// handshake or the wait after a report set their own. (The
		// "TLS handshake: EOF" once put down to this was Wine's
		// AcceptEx: see mustDial.)
		srv.HandshakeTimeout = 5 * time.Second
	}
	// The test process runs many servers: one making patches must not
	// set the collector of all (a 44 MiB limit on a test binary's heap
	// slowed the others' TLS handshakes past their second under Wine).
	srv.patches.sharedProcess = true
	srv.IdleTimeout = time.Second
	srv.WriteTimeout = time.Second
	srv.Grace = time.Second
	if tune != nil {
		tune(srv)
	}
	if ln == nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			cancel()
			srv.Close()
			t.Fatal(err)
		}
	}
	ts := &testServer{srv: srv, addr: ln.Addr().String(), logs: logs, cancel: cancel, served: make(chan struct{})}
	go func() {
		ts.err = srv.Serve(ctx, ln)
		close(ts.served)
	}()
	t.Cleanup(func() {
		if err := ts.stop(5 * time.Second); err != nil {
			t.Errorf("stopping the server: %v", err)
		}
		srv.Close()
	})
	return ts
}

// stop cancels the server and waits up to limit for Serve to return.
func (ts *testServer) stop(limit time.Duration) error {
	ts.cancel()
	select {
	case <-ts.served:
		return ts.err
	case <-time.After(limit):
		return fmt.Errorf("Serve did not return within %v of cancel", limit)
	}
}

// testClient speaks the protocol by hand.
type testClient struct {
	conn net.Conn // TLS over raw
	raw  net.Conn
	r    *syncproto.Reader
	w    *syncproto.Writer
}

// dialClient connects to addr. Every read and write must be done within
// 5 s, so that a server that hangs fails the test rather than hanging it.
func dialClient(addr string) (*testClient, error) {
	raw, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	return handshake(raw)
}

// handshake makes raw a test client: TLS over it, every read and write
// within 5 s. The hand-made client trusts any key: what it tests is the
// server behind the handshake (the client's trust has tests of its own).
func handshake(raw net.Conn) (*testClient, error) {
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	conn := tls.Client(raw, pki.ClientConfig("127.0.0.1", func(tls.ConnectionState) error { return nil }))
	if err := conn.Handshake(); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return &testClient{conn: conn, raw: raw, r: syncproto.NewReader(conn), w: syncproto.NewWriter(conn)}, nil
}

func mustDial(t testing.TB, addr string) *testClient {
	t.Helper()
	c, err := dialClient(addr)
	for try := 1; err != nil && testtree.UnderWine() && try <= 3 && smartclient.ConnectionLost(err); try++ {
		// Wine's AcceptEx now and then fails with "Overlapped I/O
		// incomplete" on a connection it has taken: the server logs it
		// and accepts again (see maxOddAcceptErrors), and this
		// connection meets EOF or a reset in its handshake. SmartClient
		// tries such a connection again (ConnectRetry); so do the tests
		// that want a session, under Wine only.
		t.Logf("under Wine, try %d of the connection: %v", try+1, err)
		c, err = dialClient(addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.conn.Close() })
	return c
}

func (c *testClient) send(msgs ...syncproto.Message) error {
	for _, m := range msgs {
		if err := c.w.Write(m); err != nil {
			return err
		}
	}
	return c.w.Flush()
}

// sendRaw sends frames that need not be valid, counted in c.w.N.
func (c *testClient) sendRaw(frames []byte) error {
	if err := c.w.WriteEncoded(frames); err != nil {
		return err
	}
	return c.w.Flush()
}

func (c *testClient) hello(build, osName, id string) (syncproto.Welcome, error) {
	if err := c.send(syncproto.Hello{ClientBuild: build, OS: osName, ClientID: id}); err != nil {
		return syncproto.Welcome{}, err
	}
	m, err := c.r.Expect(syncproto.MsgWelcome)
	if err != nil {
		return syncproto.Welcome{}, fmt.Errorf("waiting for Welcome: %w", err)
	}
	return m.(syncproto.Welcome), nil
}

func (c *testClient) manifest() (syncproto.ManifestHeader, []syncproto.ManifestEntry, error) {
	return c.manifestWith(syncproto.GetManifest{})
}

func (c *testClient) manifestWith(get syncproto.GetManifest) (syncproto.ManifestHeader, []syncproto.ManifestEntry, error) {
	if err := c.send(get); err != nil {
		return syncproto.ManifestHeader{}, nil, err
	}
	m, err := c.r.Expect(syncproto.MsgManifestHeader)
	if err != nil {
		return syncproto.ManifestHeader{}, nil, fmt.Errorf("waiting for ManifestHeader: %w", err)
	}
	h := m.(syncproto.ManifestHeader)
	entries := make([]syncproto.ManifestEntry, 0, h.Count)
	for i := range h.Count {
		m, err := c.r.Expect(syncproto.MsgManifestEntry)
		if err != nil {
			return h, entries, fmt.Errorf("waiting for ManifestEntry %d of %d: %w", i, h.Count, err)
		}
		entries = append(entries, m.(syncproto.ManifestEntry))
	}
	return h, entries, nil
}

// received is one file as a client received it.
type received struct {
	data      []byte
	hash      [32]byte // as FileEnd carried it
	encodings map[uint8]int
}

// receiveFile reads FileStart for index, the file's chunks and FileEnd.
func (c *testClient) receiveFile(dec *zstd.Decoder, index uint32) (received, error) {
	got := received{encodings: map[uint8]int{}}
	m, err := c.r.Expect(syncproto.MsgFileStart)
	if err != nil {
		return got, fmt.Errorf("waiting for FileStart of %d: %w", index, err)
	}
	start := m.(syncproto.FileStart)
	if start.Index != index {
		return got, fmt.Errorf("got file %d, want %d", start.Index, index)
	}
	var chunk []byte
	for {
		m, err := c.r.Read()
		if err != nil {
			return got, fmt.Errorf("reading file %d after %d bytes: %w", index, len(got.data), err)
		}
		switch m := m.(type) {
		case syncproto.FileData:
			got.encodings[m.Encoding]++
			if chunk, err = syncproto.DecodeChunk(dec, m, chunk); err != nil {
				return got, err
			}
			got.data = append(got.data, chunk...)
		case syncproto.FileEnd:
			got.hash = m.Hash
			if uint64(len(got.data)) != start.Size {
				return got, fmt.Errorf("file %d: got %d bytes, FileStart said %d", index, len(got.data), start.Size)
			}
			return got, nil
		default:
			return got, fmt.Errorf("got %v inside file %d", m.Type(), index)
		}
	}
}

func (c *testClient) report(r syncproto.Report) error {
	if err := c.send(r); err != nil {
		return err
	}
	if _, err := c.r.Expect(syncproto.MsgReportAck); err != nil {
		return fmt.Errorf("waiting for ReportAck: %w", err)
	}
	return nil
}

// readUntilClosed reads until the server closes the connection and
// returns the codes of the Error frames it sent first. Any other message,
// or a read that times out, is an error.
func (c *testClient) readUntilClosed() ([]syncproto.Code, error) {
	var codes []syncproto.Code
	for {
		m, err := c.r.Read()
		var pe *syncproto.Error
		switch {
		case err == nil:
			return codes, fmt.Errorf("got %v, want an Error or a closed connection", m.Type())
		case errors.As(err, &pe):
			codes = append(codes, pe.Code)
		case errors.Is(err, io.EOF), errors.Is(err, errConnReset):
			return codes, nil
		default:
			return codes, fmt.Errorf("waiting for the server to close the connection: %w", err)
		}
	}
}

// fullSession is a well-behaved client fetching every file of the linux
// folder, which holds files, and reporting success.
func fullSession(addr, id string, files map[string]string) error {
	c, err := dialClient(addr)
	if err != nil {
		return err
	}
	defer c.conn.Close()
	w, err := c.hello(srvBuild, "linux", id)
	if err != nil {
		return err
	}
	if !w.Compatible || !w.UpdatesEnabled {
		return fmt.Errorf("got %+v, want a compatible client with updates enabled", w)
	}
	_, entries, err := c.manifest()
	if err != nil {
		return err
	}
	if len(entries) != len(files) {
		return fmt.Errorf("manifest of %d files, want %d", len(entries), len(files))
	}
	req := syncproto.Request{}
	for i := range entries {
		req.Indices = append(req.Indices, uint32(i))
	}
	if err := c.send(req, syncproto.RequestEnd{}); err != nil {
		return err
	}
	dec, err := syncproto.NewChunkDecoder()
	if err != nil {
		return err
	}
	defer dec.Close()
	for i, e := range entries {
		got, err := c.receiveFile(dec, uint32(i))
		if err != nil {
			return err
		}
		if string(got.data) != files[e.Path] || got.hash != e.Hash || blake3.Sum256(got.data) != e.Hash {
			return fmt.Errorf("%s: received content or hash differs from the folder's", e.Path)
		}
	}
	return c.report(syncproto.Report{Outcome: syncproto.OutcomeUpdated, Build: srvBuild, Files: uint32(len(entries))})
}

func randomBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// TestServerGate checks the compatibility decision of the Welcome, and
// that it decides what the session may do next.
func TestServerGate(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"smartclient": "binary"}, oldTime)
	enabled := startServer(t, linuxConfig(t, dir), nil, nil)
	disabledCfg, _ := loadServerConfig(t, "Enable=0", "PathLinux="+dir, "Build="+srvBuild, "MinClientBuild="+srvMinBuild)
	disabled := startServer(t, disabledCfg, nil, nil)

	tests := []struct {
		name           string
		disabled       bool
		build, os      string
		wantCompatible bool
		wantEnabled    bool
		wantMessage    string         // a part of Welcome.Message; "" wants none
		wantCode       syncproto.Code // Error instead of Welcome
	}{
		{name: "no build installed", build: "", os: "linux", wantEnabled: true, wantMessage: "no SmartClient build"},
		{name: "older than MinClientBuild", build: "7.00.230101A", os: "linux", wantEnabled: true, wantMessage: "older than"},
		{name: "one suffix older than MinClientBuild", build: "7.00.231101", os: "linux", wantEnabled: true, wantMessage: srvMinBuild},
		{name: "older major version", build: "6.99.991231Z", os: "linux", wantEnabled: true, wantMessage: "older than"},
		{name: "equal to MinClientBuild", build: srvMinBuild, os: "linux", wantCompatible: true, wantEnabled: true},
		{name: "equal to MinClientBuild spelled differently", build: " 7.0.231101A ", os: "linux", wantCompatible: true, wantEnabled: true},
		{name: "same as the server", build: srvBuild, os: "linux", wantCompatible: true, wantEnabled: true},
		{name: "newer than the server", build: "7.01.250101", os: "linux", wantCompatible: true, wantEnabled: true},
		{name: "unparsable", build: "seven", os: "linux", wantEnabled: true, wantMessage: `"seven"`},
		{name: "impossible date", build: "7.00.240231A", os: "linux", wantEnabled: true, wantMessage: "7.00.240231A"},
		{name: "updates disabled", disabled: true, build: srvBuild, os: "linux", wantMessage: "Enable=0"},
		{name: "updates disabled, incompatible", disabled: true, build: "", os: "linux", wantMessage: "Enable=0"},
		{name: "updates disabled, OS without folder", disabled: true, build: srvBuild, os: "windows", wantMessage: "Enable=0"},
		{name: "OS without folder", build: srvBuild, os: "windows", wantCode: syncproto.CodeUnknownOS, wantMessage: "PathWindows"},
		{name: "macOS without folder", build: srvBuild, os: "darwin", wantCode: syncproto.CodeUnknownOS, wantMessage: "PathMacOSX"},
		{name: "no OS", build: srvBuild, os: "", wantCode: syncproto.CodeUnknownOS},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := enabled
			if tc.disabled {
				ts = disabled
			}
			c := mustDial(t, ts.addr)
			w, err := c.hello(tc.build, tc.os, "gate-test")
			if tc.wantCode != 0 {
				var pe *syncproto.Error
				if !errors.As(err, &pe) || pe.Code != tc.wantCode {
					t.Fatalf("got %+v, %v; want Error with code %v", w, err, tc.wantCode)
				}
				if !strings.Contains(pe.Message, tc.wantMessage) {
					t.Errorf("error message %q does not contain %q", pe.Message, tc.wantMessage)
				}
				if _, err := c.readUntilClosed(); err != nil {
					t.Error(err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if w.ServerBuild != srvBuild {
				t.Errorf("ServerBuild = %q, want %q", w.ServerBuild, srvBuild)
			}
			if w.Compatible != tc.wantCompatible || w.UpdatesEnabled != tc.wantEnabled {
				t.Errorf("Compatible, UpdatesEnabled = %v, %v; want %v, %v (message %q)",
					w.Compatible, w.UpdatesEnabled, tc.wantCompatible, tc.wantEnabled, w.Message)
			}
			switch {
			case tc.wantMessage == "" && w.Message != "":
				t.Errorf("Message = %q, want none", w.Message)
			case tc.wantMessage != "" && !strings.Contains(w.Message, tc.wantMessage):
				t.Errorf("Message = %q, want it to contain %q", w.Message, tc.wantMessage)
			}

			// Enabled, even an incompatible client gets the manifest (for a
			// full copy); disabled, nobody does.
			if tc.wantEnabled {
				h, entries, err := c.manifest()
				if err != nil {
					t.Fatal(err)
				}
				if h.Count != 1 || len(entries) != 1 {
					t.Errorf("manifest of %d files, want 1", h.Count)
				}
				if err := c.send(syncproto.RequestEnd{}); err != nil {
					t.Fatal(err)
				}
				if err := c.report(syncproto.Report{Outcome: syncproto.OutcomeChecked, Build: tc.build}); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err := c.send(syncproto.GetManifest{}); err != nil {
				t.Fatal(err)
			}
			codes, err := c.readUntilClosed()
			if err != nil || len(codes) != 1 || codes[0] != syncproto.CodeProtocol {
				t.Errorf("GetManifest with updates disabled: got codes %v, %v; want Error %v and a closed connection",
					codes, err, syncproto.CodeProtocol)
			}
		})
	}
}

// TestServerSession is a whole session spoken by hand: every message of
// the flow, files in request order, chunks decoded and verified, and the
// session's log line.
func TestServerSession(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"smartclient.ini": "[TCP]\nServer=erp.example.local\nPort=1234\n",
		"bin/smartclient": strings.Repeat("compressible client binary ", 26000), // 3 chunks
		"lib/data.bin":    string(randomBytes(300<<10, 1)),                      // 2 chunks that do not compress
		"empty":           "",
	}
	writeTree(t, dir, files, oldTime)
	if err := os.Chmod(filepath.Join(dir, "bin", "smartclient"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The server closes a session that neither stays nor leaves within
	// its handshake time after the report: 1 s here, under Wine too.
	ts := startServer(t, linuxConfig(t, dir), func(s *Server) { s.HandshakeTimeout = time.Second }, nil)
	c := mustDial(t, ts.addr)

	w, err := c.hello(srvBuild, "linux", "client-42")
	if err != nil {
		t.Fatal(err)
	}
	if !w.Compatible || !w.UpdatesEnabled || w.ServerBuild != srvBuild || w.Message != "" {
		t.Fatalf("Welcome = %+v, want compatible, enabled, build %s, no message", w, srvBuild)
	}

	h, entries, err := c.manifest()
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, content := range files {
		total += uint64(len(content))
	}
	if h.Build != srvBuild || h.Count != uint32(len(files)) || h.TotalBytes != total {
		t.Errorf("ManifestHeader = %+v, want build %s, %d files, %d bytes", h, srvBuild, len(files), total)
	}
	index := map[string]uint32{}
	for i, e := range entries {
		index[e.Path] = uint32(i)
		if i > 0 && entries[i-1].Path >= e.Path {
			t.Errorf("manifest not sorted: %q before %q", entries[i-1].Path, e.Path)
		}
		content, ok := files[e.Path]
		if !ok {
			t.Errorf("manifest lists %q, which is not in the folder", e.Path)
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(e.Path)))
		if err != nil {
			t.Fatal(err)
		}
		if e.Size != uint64(len(content)) || e.MtimeNs != fi.ModTime().UnixNano() || e.Mode != uint32(fi.Mode().Perm()) ||
			e.Hash != blake3.Sum256([]byte(content)) {
			t.Errorf("entry %+v does not describe %s (size %d, mtime %d, mode %o)", e, e.Path, fi.Size(), fi.ModTime().UnixNano(), fi.Mode().Perm())
		}
		if wantPreserve := e.Path == "smartclient.ini"; (e.Flags&syncproto.FlagPreserve != 0) != wantPreserve {
			t.Errorf("%s: flags %#x, want preserve %v", e.Path, e.Flags, wantPreserve)
		}
	}

	// Two Request frames; files must come in request order.
	order := []string{"lib/data.bin", "empty", "bin/smartclient"}
	if err := c.send(
		syncproto.Request{Indices: []uint32{index[order[0]], index[order[1]]}},
		syncproto.Request{Indices: []uint32{index[order[2]]}},
		syncproto.RequestEnd{},
	); err != nil {
		t.Fatal(err)
	}
	dec, err := syncproto.NewChunkDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	for _, name := range order {
		got, err := c.receiveFile(dec, index[name])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.data, []byte(files[name])) {
			t.Errorf("%s: received %d bytes that differ from the file's %d", name, len(got.data), len(files[name]))
		}
		if want := blake3.Sum256([]byte(files[name])); got.hash != want {
			t.Errorf("%s: FileEnd hash %x, want %x", name, got.hash, want)
		}
		switch name {
		case "bin/smartclient":
			if got.encodings[syncproto.EncodingZstd] == 0 {
				t.Errorf("%s: no chunk compressed (%v)", name, got.encodings)
			}
		case "lib/data.bin":
			if got.encodings[syncproto.EncodingRaw] != 2 || got.encodings[syncproto.EncodingZstd] != 0 {
				t.Errorf("%s: chunk encodings %v, want 2 raw chunks", name, got.encodings)
			}
		case "empty":
			if len(got.encodings) != 0 {
				t.Errorf("%s: got chunks %v for an empty file", name, got.encodings)
			}
		}
	}

	if err := c.report(syncproto.Report{Outcome: syncproto.OutcomeUpdated, Build: srvBuild, Files: 3, Bytes: uint64(c.r.N)}); err != nil {
		t.Fatal(err)
	}
	if m, err := c.r.Read(); !errors.Is(err, io.EOF) {
		t.Errorf("after ReportAck: got %v, %v; want the server to close the connection", m, err)
	}
	c.conn.Close()

	// Serve returns only when every session has ended and logged.
	if err := ts.stop(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	var line string
	for l := range strings.SplitSeq(ts.logs.String(), "\n") {
		if strings.Contains(l, "msg=session") && strings.Contains(l, "id=client-42") {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("no session line for client-42 in the log:\n%s", ts.logs)
	}
	for _, want := range []string{"level=INFO", "build=" + srvBuild, "os=linux", "outcome=updated", "files=3", "client=127.0.0.1:"} {
		if !strings.Contains(line, want) {
			t.Errorf("session line lacks %q: %s", want, line)
		}
	}
}

// TestServerRefusesChangedFile shows that a file that changed after the
// manifest was sent is refused with CodeFileChanged, never served with a
// FileEnd whose hash the manifest did not promise.
func TestServerRefusesChangedFile(t *testing.T) {
	const name = "lib/liberp.so"
	orig := randomBytes(300<<10, 2)
	tests := []struct {
		name string
		// change changes path, whose manifest entry says mtime.
		change func(t *testing.T, path string, mtime time.Time)
	}{
		{
			name: "new content and mtime",
			change: func(t *testing.T, path string, mtime time.Time) {
				writeFile(t, path, string(randomBytes(len(orig), 3)))
				if err := os.Chtimes(path, mtime.Add(time.Minute), mtime.Add(time.Minute)); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "appended to",
			change: func(t *testing.T, path string, mtime time.Time) {
				f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if _, err := f.WriteString("more"); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "same size and mtime, new content",
			change: func(t *testing.T, path string, mtime time.Time) {
				writeFile(t, path, string(randomBytes(len(orig), 4)))
				if err := os.Chtimes(path, mtime, mtime); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "replaced by rename with the same size and mtime",
			change: func(t *testing.T, path string, mtime time.Time) {
				tmp := path + ".new"
				writeFile(t, tmp, string(randomBytes(len(orig), 5)))
				if err := os.Chtimes(tmp, mtime, mtime); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(tmp, path); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "deleted",
			change: func(t *testing.T, path string, mtime time.Time) {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, map[string]string{name: string(orig), "other": "other"}, oldTime)
			ts := startServer(t, linuxConfig(t, dir), nil, nil)
			c := mustDial(t, ts.addr)
			if _, err := c.hello(srvBuild, "linux", "changed-test"); err != nil {
				t.Fatal(err)
			}
			_, entries, err := c.manifest()
			if err != nil {
				t.Fatal(err)
			}
			i := -1
			for j, e := range entries {
				if e.Path == name {
					i = j
				}
			}
			if i < 0 {
				t.Fatalf("%s not in the manifest %+v", name, entries)
			}
			tc.change(t, filepath.Join(dir, filepath.FromSlash(name)), time.Unix(0, entries[i].MtimeNs))

			if err := c.send(syncproto.Request{Indices: []uint32{uint32(i)}}, syncproto.RequestEnd{}); err != nil {
				t.Fatal(err)
			}
			// The server may have streamed the file before it could tell;
			// what matters is that it ends with Error, not FileEnd.
			var pe *syncproto.Error
			for {
				m, err := c.r.Read()
				if errors.As(err, &pe) {
					break
				}
				if err != nil {
					t.Fatalf("got %v, want Error %v", err, syncproto.CodeFileChanged)
				}
				if m.Type() == syncproto.MsgFileEnd {
					t.Fatalf("the server served %s, which changed after the manifest, with FileEnd %x (manifest hash %x)",
						name, m.(syncproto.FileEnd).Hash, entries[i].Hash)
				}
				if m.Type() != syncproto.MsgFileStart && m.Type() != syncproto.MsgFileData {
					t.Fatalf("got %v while waiting for the file", m.Type())
				}
			}
			if pe.Code != syncproto.CodeFileChanged {
				t.Errorf("got Error %v, want %v", pe, syncproto.CodeFileChanged)
			}
			if !strings.Contains(pe.Message, name) {
				t.Errorf("error message %q does not name %s", pe.Message, name)
			}
			if _, err := c.readUntilClosed(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestServerBadRequest shows that only indices of the manifest are served.
func TestServerBadRequest(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"a": "a", "b": "b", "c": "c"}
	writeTree(t, dir, files, oldTime)
	ts := startServer(t, linuxConfig(t, dir), nil, nil)
	n := uint32(len(files))
	tests := []struct {
		name     string
		requests []syncproto.Request
		want     string // in the server's log, when set
	}{
		{name: "index equal to count", requests: []syncproto.Request{{Indices: []uint32{n}}}},
		{name: "largest index", requests: []syncproto.Request{{Indices: []uint32{1<<32 - 1}}}},
		{name: "bad index after good ones", requests: []syncproto.Request{{Indices: []uint32{0, 1}}, {Indices: []uint32{2, n + 7}}}},
		{name: "more files than the manifest holds", requests: []syncproto.Request{{Indices: []uint32{0, 0}}, {Indices: []uint32{0, 0}}}},
		{name: "the same file twice", requests: []syncproto.Request{{Indices: []uint32{1, 2}}, {Indices: []uint32{1}}}, want: "b (file index 1) is requested twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustDial(t, ts.addr)
			if _, err := c.hello(srvBuild, "linux", "bad-request"); err != nil {
				t.Fatal(err)
			}
			if _, _, err := c.manifest(); err != nil {
				t.Fatal(err)
			}
			var msgs []syncproto.Message
			for _, r := range tc.requests {
				msgs = append(msgs, r)
			}
			if err := c.send(append(msgs, syncproto.RequestEnd{})...); err != nil {
				t.Fatal(err)
			}
			codes, err := c.readUntilClosed()
			if err != nil {
				t.Fatal(err)
			}
			if len(codes) != 1 || codes[0] != syncproto.CodeBadRequest {
				t.Errorf("got Error codes %v, want [%v]", codes, syncproto.CodeBadRequest)
			}
			if tc.want != "" {
				deadline := time.Now().Add(5 * time.Second)
				for !strings.Contains(ts.logs.String(), tc.want) && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if !strings.Contains(ts.logs.String(), tc.want) {
					t.Errorf("the server's log lacks %q:\n%s", tc.want, ts.logs.String())
				}
			}
		})
	}
}

// frameHeader returns a frame header with the given fields.
func frameHeader(version byte, t syncproto.MsgType, n uint32) []byte {
	b := []byte{syncproto.Magic[0], syncproto.Magic[1], version, byte(t)}
	return binary.BigEndian.AppendUint32(b, n)
}

// TestServerHostileClients shows that every kind of bad client gets its
// connection closed quickly, with an Error where one can be delivered,
// while a well-behaved client is served at the same time.
func TestServerHostileClients(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"smartclient": strings.Repeat("x", 100<<10), "smartclient.ini": "[TCP]\n"}
	writeTree(t, dir, files, oldTime)
	const handshake = 200 * time.Millisecond
	ts := startServer(t, linuxConfig(t, dir), func(s *Server) { s.HandshakeTimeout = handshake }, nil)

	raw := func(b []byte) func(*testClient) error {
		return func(c *testClient) error {
			_, err := c.conn.Write(b)
			return err
		}
	}
	bigHello := frameHeader(syncproto.Version, syncproto.MsgHello, 1<<20+6)
	bigHello = append(bigHello, 0xff, 0xff)
	bigHello = append(bigHello, bytes.Repeat([]byte("7"), 1<<20)...)
	bigHello = append(bigHello, 0, 0, 0, 0)
	longBuild := append(frameHeader(syncproto.Version, syncproto.MsgHello, 2+200+2+2), 0, 200)
	longBuild = append(append(longBuild, bytes.Repeat([]byte("7"), 200)...), 0, 0, 0, 0)

	tests := []struct {
		name   string
		attack func(*testClient) error
		// wantCode is the Error the server must send before closing; 0
		// leaves it open.
		wantCode syncproto.Code
		// mayReset: the server closes with our bytes unread, so the
		// kernel may reset the connection and drop its Error.
		mayReset bool
		// minWait and maxWait bound when the server closes the
		// connection; maxWait 0 means at once (within the read deadline).
		minWait, maxWait time.Duration
	}{
		{name: "HTTP request", attack: raw([]byte("GET / HTTP/1.1\r\nHost: erp\r\n\r\n")), wantCode: syncproto.CodeProtocol},
		{name: "4 GB frame", attack: raw(frameHeader(syncproto.Version, syncproto.MsgHello, 1<<32-1)), wantCode: syncproto.CodeProtocol},
		{name: "4 GB FileData frame", attack: raw(frameHeader(syncproto.Version, syncproto.MsgFileData, 1<<32-1)), wantCode: syncproto.CodeProtocol},
		{name: "another protocol version", attack: raw(frameHeader(syncproto.Version+1, syncproto.MsgHello, 0)), wantCode: syncproto.CodeVersion},
		{name: "unknown message type", attack: raw(frameHeader(syncproto.Version, 200, 0)), wantCode: syncproto.CodeProtocol},
		{name: "Hello with a 1 MB build", attack: raw(bigHello), wantCode: syncproto.CodeProtocol, mayReset: true},
		{name: "Hello with a build over its limit", attack: raw(longBuild), wantCode: syncproto.CodeProtocol},
		{name: "Report before Hello", attack: func(c *testClient) error {
			return c.send(syncproto.Report{Outcome: syncproto.OutcomeUpdated})
		}, wantCode: syncproto.CodeProtocol},
		{name: "Request before GetManifest", attack: func(c *testClient) error {
			if _, err := c.hello(srvBuild, "linux", "hostile"); err != nil {
				return err
			}
			return c.send(syncproto.Request{Indices: []uint32{0}}, syncproto.RequestEnd{})
		}, wantCode: syncproto.CodeProtocol},
		{name: "silent client", attack: func(*testClient) error { return nil }, minWait: handshake * 3 / 4, maxWait: 3 * handshake},
		{name: "half a header, then silence", attack: raw([]byte("SC\x01")), minWait: handshake * 3 / 4, maxWait: 3 * handshake},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bad := mustDial(t, ts.addr)
			start := time.Now()
			if err := tc.attack(bad); err != nil && !tc.mayReset {
				t.Fatalf("attack: %v", err)
			}

			// A good client is served while the bad one is connected.
			good := make(chan error, 1)
			go func() { good <- fullSession(ts.addr, "good-client", files) }()

			bad.conn.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
			codes, err := bad.readUntilClosed()
			took := time.Since(start)
			if err != nil {
				t.Errorf("bad client: %v (after %v)", err, took.Round(time.Millisecond))
			}
			switch {
			case tc.wantCode == 0:
			case tc.mayReset && len(codes) == 0:
			case len(codes) != 1 || codes[0] != tc.wantCode:
				t.Errorf("bad client got Error codes %v, want [%v]", codes, tc.wantCode)
			}
			if took < tc.minWait || (tc.maxWait > 0 && took > tc.maxWait) {
				t.Errorf("connection closed after %v; want it closed by the handshake timeout of %v", took, handshake)
			}
			if err := <-good; err != nil {
				t.Errorf("good client: %v", err)
			}
		})
	}
}

// smallBuffers makes the server's sockets' send buffers small, so that a
// file of a few MB cannot hide in kernel buffers: the server is still
// sending it for as long as the client has not read it.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(64 << 10)
	}
	return c, err
}

// dialSmall connects with a small receive buffer (see smallBuffers).
func dialSmall(t *testing.T, addr string) *testClient {
	t.Helper()
	c := mustDial(t, addr)
	if err := c.raw.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	return c
}

// listenSmall returns a listener on 127.0.0.1 with small send buffers.
func listenSmall(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return smallBuffers{ln}
}

// requestFile has c say hello, get the manifest and ask for name; it
// returns name's manifest entry.
func requestFile(t *testing.T, c *testClient, name string) (uint32, syncproto.ManifestEntry) {
	t.Helper()
	if _, err := c.hello(srvBuild, "linux", "shutdown-test"); err != nil {
		t.Fatal(err)
	}
	_, entries, err := c.manifest()
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range entries {
		if e.Path == name {
			if err := c.send(syncproto.Request{Indices: []uint32{uint32(i)}}, syncproto.RequestEnd{}); err != nil {
				t.Fatal(err)
			}
			return uint32(i), e
		}
	}
	t.Fatalf("%s not in the manifest", name)
	return 0, syncproto.ManifestEntry{}
}

// waitRefused waits until connections to addr are refused.
func waitRefused(t *testing.T, addr string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, limit)
		switch {
		case errors.Is(err, errConnRefused):
			return
		case errors.Is(err, errConnReset):
			// Queued just before the listener closed; try again.
		case err != nil:
			t.Fatalf("dialing %s after cancel: %v, want connection refused", addr, err)
		default:
			c.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections %v after cancel", addr, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestServerGracefulShutdown shows that cancelling Serve stops accepting at
// once but lets a running transfer finish within Grace, and that Serve
// returns as soon as the last session ends.
func TestServerGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	big := randomBytes(3<<20, 6)
	writeTree(t, dir, map[string]string{"big.bin": string(big), "small": "small"}, oldTime)
	// The client stops reading while the server shuts down: the write
	// deadline must outlast that pause, or the test would be of it.
	ts := startServer(t, linuxConfig(t, dir), func(s *Server) { s.Grace, s.WriteTimeout = 10*time.Second, 5*time.Second }, listenSmall(t))

	c := dialSmall(t, ts.addr)
	idle := mustDial(t, ts.addr) // connected, not yet asking for anything
	if _, err := idle.hello(srvBuild, "linux", "idle"); err != nil {
		t.Fatal(err)
	}
	index, entry := requestFile(t, c, "big.bin")
	if _, err := c.r.Expect(syncproto.MsgFileStart); err != nil {
		t.Fatal(err)
	}
	dec, err := syncproto.NewChunkDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	var data, chunk []byte
	m, err := c.r.Expect(syncproto.MsgFileData)
	if err != nil {
		t.Fatal(err)
	}
	if chunk, err = syncproto.DecodeChunk(dec, m.(syncproto.FileData), chunk); err != nil {
		t.Fatal(err)
	}
	data = append(data, chunk...)

	// Shut down in the middle of the transfer.
	ts.cancel()
	waitRefused(t, ts.addr, time.Second)

	// A session that had not asked for its manifest yet is told to come
	// back later.
	if err := idle.send(syncproto.GetManifest{}); err != nil {
		t.Fatal(err)
	}
	if codes, err := idle.readUntilClosed(); err != nil || len(codes) != 1 || codes[0] != syncproto.CodeShuttingDown {
		t.Errorf("GetManifest while draining: got codes %v, %v; want [%v]", codes, err, syncproto.CodeShuttingDown)
	}

	for {
		m, err := c.r.Read()
		if err != nil {
			t.Fatalf("transfer broken by shutdown after %d of %d bytes: %v\n%s", len(data), len(big), err, ts.logs.String())
		}
		if end, ok := m.(syncproto.FileEnd); ok {
			if end.Hash != entry.Hash || end.Hash != blake3.Sum256(big) {
				t.Errorf("FileEnd hash %x, want %x", end.Hash, entry.Hash)
			}
			break
		}
		fd, ok := m.(syncproto.FileData)
		if !ok {
			t.Fatalf("got %v inside file %d", m.Type(), index)
		}
		if chunk, err = syncproto.DecodeChunk(dec, fd, chunk); err != nil {
			t.Fatal(err)
		}
		data = append(data, chunk...)
	}
	if !bytes.Equal(data, big) {
		t.Fatalf("received %d bytes that differ from the file's %d", len(data), len(big))
	}
	select {
	case <-ts.served:
		t.Fatal("Serve returned while a session was still running")
	default:
	}
	if err := c.report(syncproto.Report{Outcome: syncproto.OutcomeUpdated, Build: srvBuild, Files: 1}); err != nil {
		t.Fatal(err)
	}
	c.conn.Close()

	// Serve returns when the session ends, not when Grace is over.
	select {
	case <-ts.served:
		if ts.err != nil {
			t.Errorf("Serve: %v", ts.err)
		}
	case <-time.After(time.Second):
		t.Fatal("Serve did not return within 1 s of the last session's end")
	}
	if c, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
		c.Close()
		t.Error("the server accepts connections after Serve returned")
	}
}

// TestServerGraceOver shows that a client that stops reading cannot hold
// the server up beyond Grace.
func TestServerGraceOver(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"big.bin": string(randomBytes(3<<20, 7))}, oldTime)
	const grace = 100 * time.Millisecond
	ts := startServer(t, linuxConfig(t, dir), func(s *Server) {
		s.Grace = grace
		s.WriteTimeout = 10 * time.Second // only Grace may end the stuck transfer
		s.IdleTimeout = 10 * time.Second
	}, listenSmall(t))

	c := dialSmall(t, ts.addr)
	requestFile(t, c, "big.bin")
	if _, err := c.r.Expect(syncproto.MsgFileStart); err != nil {
		t.Fatal(err)
	}
	// The client reads no more, so the server is stuck writing.
	start := time.Now()
	ts.cancel()
	select {
	case <-ts.served:
	case <-time.After(grace + 900*time.Millisecond):
		t.Fatalf("Serve did not return within %v of cancel with Grace %v", grace+900*time.Millisecond, grace)
	}
	if took := time.Since(start); took < grace {
		t.Errorf("Serve returned %v after cancel, before Grace %v was over, with a transfer running", took, grace)
	}
	if !strings.Contains(ts.logs.String(), "grace period over") {
		t.Errorf("log does not say that the grace period ended sessions:\n%s", ts.logs)
	}
	// The connection was closed: the client gets what was in flight and
	// then the end, never FileEnd.
	c.conn.SetReadDeadline(time.Now().Add(time.Second))
	for {
		m, err := c.r.Read()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("connection still open after Serve returned: %v", err)
			}
			break
		}
		if m.Type() != syncproto.MsgFileData {
			t.Fatalf("got %v after the grace period", m.Type())
		}
	}
}

// TestRunCheck shows that --check indexes every folder, prints one line
// per OS and returns without serving.
func TestRunCheck(t *testing.T) {
	base := t.TempDir()
	writeTree(t, filepath.Join(base, "linux"), map[string]string{
		"smartclient": strings.Repeat("l", 1000), "smartclient.ini": strings.Repeat("i", 200), "lib/a.so": strings.Repeat("a", 34),
	}, oldTime)
	writeTree(t, filepath.Join(base, "windows"), map[string]string{
		"smartclient.exe": strings.Repeat("w", 1234567),
	}, oldTime)
	cfgPath := filepath.Join(base, "AppServer.ini")
	writeFile(t, cfgPath, "[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nPathLinux=linux\nPathWindows=windows\nBuild="+srvBuild+"\nMinClientBuild="+srvMinBuild+"\n")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb testtree.Buffer
	done := make(chan error, 1)
	go func() { done <- RunServer(ctx, ServeOptions{Config: cfgPath, Check: true}, &out, &errb) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run --check: %v\nstderr:\n%s", err, errb.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run --check did not return")
	}

	text := out.String()
	for _, tc := range []struct{ os, files, bytes, dir string }{
		{"linux", "3", "1,234", filepath.Join(base, "linux")},
		{"windows", "1", "1,234,567", filepath.Join(base, "windows")},
	} {
		re := regexp.MustCompile(`(?m)^` + tc.os + `\s+` + tc.files + ` files\s+` + tc.bytes + ` bytes\s+build ` +
			regexp.QuoteMeta(srvBuild) + `\s+` + regexp.QuoteMeta(tc.dir) + `$`)
		if n := len(re.FindAllString(text, -1)); n != 1 {
			t.Errorf("%d lines for %s with %s files and %s bytes, want 1:\n%s", n, tc.os, tc.files, tc.bytes, text)
		}
	}
	if n := strings.Count(strings.TrimSpace(text), "\n") + 1; n != 13 {
		t.Errorf("%d lines, want a summary, the state folder, the TLS key, the log, the limits, the rollout, the console, the records, the service and two lines per OS:\n%s", n, text)
	}
	if !strings.Contains(text, "\nConsole  http://127.0.0.1:8088/ (this machine only, no login)\n") {
		t.Errorf("the summary does not say where the console is:\n%s", text)
	}
	if want := "\nRecords  " + filepath.Join(base, "appserver-state", "clients.db") + "  history kept 90 days; stale after 7 days; digest not mailed ([STATUS] Notify is not set)\n"; !strings.Contains(text, want) {
		t.Errorf("the summary does not say where the client records are (%q):\n%s", want, text)
	}
	if want := "\nService  " + service.Detect("").String() + "\n"; !strings.Contains(text, want) {
		t.Errorf("the summary does not say whether the server runs as a service (%q):\n%s", want, text)
	}
	if want := fmt.Sprintf("\nLimits   [UPDATE] MaxTransfers=%d transfers at once; MaxBytesPerSecond no limit, MaxClientBytesPerSecond no limit\n", defaultMaxTransfers()); !strings.Contains(text, want) {
		t.Errorf("the summary does not show the admission keys (%q):\n%s", want, text)
	}
	if !strings.Contains(text, "\nLog      standard error, text, level info\n") {
		t.Errorf("the summary does not say where the log goes:\n%s", text)
	}
	if want := "\nState    " + filepath.Join(base, "appserver-state") + "  no server runs on it\n"; !strings.Contains(text, want) {
		t.Errorf("the summary does not say that no server holds the state folder (%q):\n%s", want, text)
	}
	if !regexp.MustCompile(`(?m)^TLS key  SHA256:[A-Za-z0-9+/]{43}  .*server\.crt; TLS only$`).MatchString(text) {
		t.Errorf("the summary does not name the TLS key:\n%s", text)
	}
	// Under each OS: whether its release is signed.
	for _, name := range []string{"linux", "windows"} {
		if !strings.Contains(text, "unsigned (no "+name+".release)") {
			t.Errorf("the summary does not say that the %s release is unsigned:\n%s", name, text)
		}
	}
	if strings.Contains(text, "darwin") {
		t.Errorf("summary lists darwin, which has no folder:\n%s", text)
	}
}

// TestRunErrors shows that a usage or configuration error is an ErrUsage
// that says what to fix, and that nothing is served.
func TestRunErrors(t *testing.T) {
	base := t.TempDir()
	good := filepath.Join(base, "good.ini")
	writeTree(t, filepath.Join(base, "linux"), map[string]string{"smartclient": "x"}, oldTime)
	writeFile(t, good, "[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nPathLinux=linux\nBuild="+srvBuild+"\n")
	missing := filepath.Join(base, "no-such-folder")
	bad := filepath.Join(base, "bad.ini")
	writeFile(t, bad, "[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nPathLinux="+missing+"\nBuild="+srvBuild+"\n")

	tests := []struct {
		name string
		args []string
		want []string // parts of the error message
	}{
		{name: "missing update folder", args: []string{"--config", bad}, want: []string{bad, "[UPDATE]", "PathLinux", missing, "does not exist"}},
		{name: "missing configuration", args: []string{"--config", filepath.Join(base, "none.ini")}, want: []string{"none.ini"}},
		// An unknown flag and a stray argument are the command line's:
		// see TestUnknownFlagsAndCommands in appserver/internal/cli.
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()

			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			var out, errb testtree.Buffer
			err = RunServer(ctx, ServeOptions{Config: tc.args[1], Listen: addr}, &out, &errb)
			if !errors.Is(err, ErrUsage) {
				t.Fatalf("Run = %v, want an error wrapping ErrUsage", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				t.Errorf("something listens on %s after Run failed", addr)
			}
		})
	}
}

// TestServerManifestPathsAreUTF8: the protocol carries paths as valid
// UTF-8, and Linux file names are arbitrary bytes. A name the protocol
// cannot carry must be refused when the folder is indexed, naming the file
// (as a symbolic link is), not sent to every client in a frame they reject.
//
// Windows file names are UTF-16, where "caf\xe9" cannot be written (Go
// would make it "caf\uFFFD"), but they may hold an unpaired surrogate,
// which Go reads as WTF-8: not valid UTF-8 either.
func TestServerManifestPathsAreUTF8(t *testing.T) {
	dir := t.TempDir()
	name := "caf\xe9.txt" // Latin-1
	if runtime.GOOS == "windows" {
		name = "caf\xed\xa0\x80.txt" // U+D800, a lone high surrogate, in WTF-8
	}
	if runtime.GOOS == "windows" {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			var cause error = err
			if pe, ok := err.(*fs.PathError); ok {
				cause = pe.Err // the path is not printable
			}
			testtree.SkipUnderWine(t, fmt.Sprintf("it cannot make a file name holding a lone UTF-16 surrogate, which NTFS can (%v)", cause))
			t.Fatalf("making a file name with a lone surrogate: %v", err)
		}
		// Make sure the name was made as written, not mended on the way.
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if !slices.Contains(names, name) {
			t.Fatalf("the folder lists %q, not the name %q with a lone surrogate", names, name)
		}
	}
	files := map[string]string{"smartclient": "binary", name: "a name not in UTF-8"}
	writeTree(t, dir, files, oldTime)
	cfg := linuxConfig(t, dir)
	srv, err := New(context.Background(), discardLogger(), cfg, t.TempDir())
	if err == nil {
		srv.Close()
		t.Fatal("a file name that is not valid UTF-8 was indexed; every client would refuse the manifest")
	}
	if bad := fmt.Sprintf("%q", filepath.Join(dir, name)); !strings.Contains(err.Error(), bad) {
		t.Errorf("error %q does not name %s", err, bad)
	}
}

// TestServerClientErrorIsFinal: an Error is the peer's final word (see
// syncproto's doc), so the server answers it with nothing and closes.
func TestServerClientErrorIsFinal(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"smartclient": "binary"}, oldTime)
	ts := startServer(t, linuxConfig(t, dir), nil, nil)
	tests := []struct {
		name string
		code syncproto.Code
	}{
		{name: "update aborted", code: syncproto.CodeUpdateAborted},
		{name: "protocol error", code: syncproto.CodeProtocol},
		{name: "internal error", code: syncproto.CodeInternal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustDial(t, ts.addr)
			if _, err := c.hello(srvBuild, "linux", "gives-up"); err != nil {
				t.Fatal(err)
			}
			if err := c.send(&syncproto.Error{Code: tc.code, Message: "the user closed the window"}); err != nil {
				t.Fatal(err)
			}
			codes, err := c.readUntilClosed()
			if err != nil {
				t.Fatal(err)
			}
			if len(codes) != 0 {
				t.Errorf("the server answered the client's Error %v with Errors %v", tc.code, codes)
			}
		})
	}
}

// TestServerConcurrentClients shows that sessions run side by side (run
// with -race) and each gets every file intact.
func TestServerConcurrentClients(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"smartclient":     strings.Repeat("client ", 60000),
		"lib/data.bin":    string(randomBytes(200<<10, 8)),
		"smartclient.ini": "[TCP]\n",
	}
	writeTree(t, dir, files, oldTime)
	ts := startServer(t, linuxConfig(t, dir), nil, nil)
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- fullSession(ts.addr, fmt.Sprintf("client-%d", i), files) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestServerDropsStuckClients shows the write and idle deadlines: a client
// that stops reading mid-file, or that says hello and then nothing, is
// dropped and logged, while a good client beside it completes.
func TestServerDropsStuckClients(t *testing.T) {
	files := map[string]string{"big.bin": string(randomBytes(3<<20, 9)), "smartclient": "binary"}
	dir := t.TempDir()
	writeTree(t, dir, files, oldTime)
	const limit = 500 * time.Millisecond
	ts := startServer(t, linuxConfig(t, dir), func(s *Server) {
		s.WriteTimeout = limit
		s.IdleTimeout = limit
	}, listenSmall(t))
	tests := []struct {
		name  string
		stall func(t *testing.T, c *testClient)
	}{
		{"never reads", func(t *testing.T, c *testClient) {
			requestFile(t, c, "big.bin")
			if _, err := c.r.Expect(syncproto.MsgFileStart); err != nil {
				t.Fatal(err)
			}
		}},
		{"goes idle", func(t *testing.T, c *testClient) {
			if _, err := c.hello(srvBuild, "linux", "idle"); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialSmall(t, ts.addr)
			defer c.conn.Close()
			tc.stall(t, c)
			start := time.Now()
			// Stop reading, long enough for the deadline to pass, while
			// another client syncs.
			if err := fullSession(ts.addr, "good-"+tc.name, files); err != nil {
				t.Fatalf("good client beside the stuck one: %v", err)
			}
			time.Sleep(time.Until(start.Add(3 * limit)))
			c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			for {
				_, err := c.r.Read()
				if err == nil {
					continue // what was in flight before the server gave up
				}
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatal("the server kept the stuck connection open")
				}
				break
			}
		})
	}
}

// TestServerUpToDateAndRaw: a client that names the current manifest's
// digest gets UpToDate and nothing else; a stale digest gets the manifest;
// GetRaw gets every chunk uncompressed.
func TestServerUpToDateAndRaw(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"bin/smartclient": strings.Repeat("compressible client binary ", 26000), "a.ini": "x=1\n"}
	writeTree(t, dir, files, oldTime)
	ts := startServer(t, linuxConfig(t, dir), nil, nil)
	digestOf := func(h syncproto.ManifestHeader, entries []syncproto.ManifestEntry) [32]byte {
		d := syncproto.NewDigester(h)
		for _, e := range entries {
			d.Add(e)
		}
		return d.Sum()
	}
	c := mustDial(t, ts.addr)
	if _, err := c.hello(srvBuild, "linux", "a"); err != nil {
		t.Fatal(err)
	}
	h, entries, err := c.manifest()
	if err != nil {
		t.Fatal(err)
	}
	current := digestOf(h, entries)

	c = mustDial(t, ts.addr)
	if _, err := c.hello(srvBuild, "linux", "b"); err != nil {
		t.Fatal(err)
	}
	if err := c.send(syncproto.GetManifest{Have: current}); err != nil {
		t.Fatal(err)
	}
	m, err := c.r.Read()
	if err != nil {
		t.Fatal(err)
	}
	if u, ok := m.(syncproto.UpToDate); !ok || u.Build != srvBuild {
		t.Fatalf("answer to the current digest: %#v, want UpToDate{%s}", m, srvBuild)
	}
	if err := c.report(syncproto.Report{Outcome: syncproto.OutcomeUpToDate, Build: srvBuild}); err != nil {
		t.Fatal(err)
	}

	// A file changes: the old digest is stale, and the manifest comes.
	p := filepath.Join(dir, "a.ini")
	change(t, ts.srv.Indexes()["linux"], func() {
		if err := os.WriteFile(p, []byte("x=2\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, oldTime.Add(time.Hour), oldTime.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	})
	c = mustDial(t, ts.addr)
	if _, err := c.hello(srvBuild, "linux", "c"); err != nil {
		t.Fatal(err)
	}
	h, entries, err = c.manifestWith(syncproto.GetManifest{Have: current, Flags: syncproto.GetRaw})
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(h, entries) == current {
		t.Fatal("the digest did not change with a file")
	}
	var bin uint32
	for i, e := range entries {
		if e.Path == "bin/smartclient" {
			bin = uint32(i)
		}
	}
	if err := c.send(syncproto.Request{Indices: []uint32{bin}}, syncproto.RequestEnd{}); err != nil {
		t.Fatal(err)
	}
	dec, err := syncproto.NewChunkDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	got, err := c.receiveFile(dec, bin)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.data) != files["bin/smartclient"] || got.encodings[syncproto.EncodingZstd] != 0 || got.encodings[syncproto.EncodingRaw] != 3 {
		t.Errorf("GetRaw: %d bytes in chunks %v, want the file in 3 raw chunks", len(got.data), got.encodings)
	}
}

// chunkRefs returns the protocol's names of chunks.
func chunkRefs(chunks []cdc.Chunk) []syncproto.ChunkRef {
	refs := make([]syncproto.ChunkRef, len(chunks))
	for i, c := range chunks {
		refs[i] = syncproto.ChunkRef{Len: c.Len, Hash: c.Hash}
	}
	return refs
}

// cut returns the chunks of b cut with bits, as the protocol names them.
func cut(t testing.TB, b []byte, bits uint8) []syncproto.ChunkRef {
	t.Helper()
	chunks, err := cdc.Split(bytes.NewReader(b), bits)
	if err != nil {
		t.Fatal(err)
	}
	return chunkRefs(chunks)
}

// deltaFrames returns the DeltaRequest frames that ask for index as the
// difference from base, perFrame references a frame (the last frame may
// hold fewer; one frame, empty, for an empty base).
func deltaFrames(index uint32, bits, flags uint8, base []syncproto.ChunkRef, perFrame int) []syncproto.Message {
	var msgs []syncproto.Message
	for k := 0; k == 0 || k < len(base); k += perFrame {
		r := syncproto.DeltaRequest{Index: index, Bits: bits, Flags: flags, Chunks: base[k:min(k+perFrame, len(base))]}
		if k+perFrame < len(base) {
			r.Flags |= syncproto.DeltaMore
		}
		msgs = append(msgs, r)
	}
	return msgs
}

// receivedDelta is one file as a client received it in answer to a
// DeltaRequest.
type receivedDelta struct {
	data   []byte
	hash   [32]byte // as FileEnd carried it
	list   []syncproto.ChunkRef
	lists  int   // ChunkList frames
	copies int   // FileCopy frames
	copied int64 // bytes taken from the base
	sent   int64 // bytes of FileData, raw
}

// receiveDelta reads FileStart for index, the file's ChunkList frames
// when wantList (all cut with bits), then FileData and FileCopy frames,
// copying from base, up to FileStart's size, and FileEnd. Every frame is
// checked as a strict client checks it.
func (c *testClient) receiveDelta(dec *zstd.Decoder, index uint32, bits uint8, base []byte, wantList bool) (receivedDelta, error) {
	var got receivedDelta
	m, err := c.r.Expect(syncproto.MsgFileStart)
	if err != nil {
		return got, fmt.Errorf("waiting for FileStart of %d: %w", index, err)
	}
	start := m.(syncproto.FileStart)
	if start.Index != index {
		return got, fmt.Errorf("got file %d, want %d", start.Index, index)
	}
	for more := wantList; more; {
		m, err := c.r.Expect(syncproto.MsgChunkList)
		if err != nil {
			return got, fmt.Errorf("file %d: waiting for its chunk list: %w", index, err)
		}
		l := m.(syncproto.ChunkList)
		if l.Bits != bits {
			return got, fmt.Errorf("file %d: chunk list cut with %d, asked for %d", index, l.Bits, bits)
		}
		got.lists++
		got.list = append(got.list, l.Chunks...)
		more = l.More
	}
	var chunk []byte
	for uint64(len(got.data)) < start.Size {
		m, err := c.r.Read()
		if err != nil {
			return got, fmt.Errorf("reading file %d after %d bytes: %w", index, len(got.data), err)
		}
		switch m := m.(type) {
		case syncproto.FileData:
			if chunk, err = syncproto.DecodeChunk(dec, m, chunk); err != nil {
				return got, err
			}
			got.data = append(got.data, chunk...)
			got.sent += int64(len(chunk))
		case syncproto.FileCopy:
			if m.Off > uint64(len(base)) || uint64(m.Len) > uint64(len(base))-m.Off {
				return got, fmt.Errorf("file %d: copy of %d bytes at %d from a base of %d", index, m.Len, m.Off, len(base))
			}
			got.data = append(got.data, base[m.Off:m.Off+uint64(m.Len)]...)
			got.copies++
			got.copied += int64(m.Len)
		default:
			return got, fmt.Errorf("got %v inside file %d", m.Type(), index)
		}
	}
	if uint64(len(got.data)) != start.Size {
		return got, fmt.Errorf("file %d: got %d bytes, FileStart said %d", index, len(got.data), start.Size)
	}
	m, err = c.r.Expect(syncproto.MsgFileEnd)
	if err != nil {
		return got, fmt.Errorf("file %d: %w", index, err)
	}
	got.hash = m.(syncproto.FileEnd).Hash
	return got, nil
}

// indexOf maps the manifest's paths to their indices.
func indexOf(entries []syncproto.ManifestEntry) map[string]uint32 {
	ix := make(map[string]uint32, len(entries))
	for i, e := range entries {
		ix[e.Path] = uint32(i)
	}
	return ix
}

// deltaSession is a well-behaved client that has an older version of
// some files, bases: it fetches every regular file of the linux folder,
// which holds files, those it has a base of as deltas, the rest whole,
// and reports success.
func deltaSession(addr, id string, files map[string]string, bases map[string][]byte) error {
	c, err := dialClient(addr)
	if err != nil {
		return err
	}
	defer c.conn.Close()
	if _, err := c.hello(srvBuild, "linux", id); err != nil {
		return err
	}
	_, entries, err := c.manifest()
	if err != nil {
		return err
	}
	var msgs []syncproto.Message
	var order []uint32
	for i, e := range entries {
		if e.Flags&syncproto.FlagSymlink != 0 {
			continue
		}
		if _, ok := files[e.Path]; !ok {
			return fmt.Errorf("%s in the manifest, not in the folder", e.Path)
		}
		order = append(order, uint32(i))
		if base, ok := bases[e.Path]; ok {
			bits := cdc.BitsFor(int64(len(base)))
			chunks, err := cdc.Split(bytes.NewReader(base), bits)
			if err != nil {
				return err
			}
			msgs = append(msgs, deltaFrames(uint32(i), bits, 0, chunkRefs(chunks), syncproto.MaxChunkRefs)...)
		} else {
			msgs = append(msgs, syncproto.Request{Indices: []uint32{uint32(i)}})
		}
	}
	if len(order) != len(files) {
		return fmt.Errorf("manifest of %d files, want %d", len(order), len(files))
	}
	if err := c.send(append(msgs, syncproto.RequestEnd{})...); err != nil {
		return err
	}
	dec, err := syncproto.NewChunkDecoder()
	if err != nil {
		return err
	}
	defer dec.Close()
	for _, i := range order {
		e := entries[i]
		base := bases[e.Path]
		got, err := c.receiveDelta(dec, i, cdc.BitsFor(int64(len(base))), base, false)
		if err != nil {
			return err
		}
		if string(got.data) != files[e.Path] || got.hash != e.Hash || blake3.Sum256(got.data) != e.Hash {
			return fmt.Errorf("%s: received content or hash differs from the folder's", e.Path)
		}
		if base != nil && got.copied == 0 {
			return fmt.Errorf("%s: nothing copied from the base", e.Path)
		}
	}
	return c.report(syncproto.Report{Outcome: syncproto.OutcomeUpdated, Build: srvBuild, Files: uint32(len(order))})
}

// TestServerDelta: a client that has an older version of a file gets the
// new one as copies of its own chunks and data for the rest, and with
// DeltaWantList the new file's chunk list first, equal to cdc's cut of the
// new file; the deltas go out in request order among whole files.
func TestServerDelta(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{11})
	old := make([]byte, 1<<20)
	rng.Read(old)
	patch := make([]byte, 4096)
	rng.Read(patch)
	// The new version: 4 KiB overwritten near the start, 4 KiB inserted
	// after the middle.
	newer := slices.Clone(old)
	copy(newer[100<<10:], patch)
	newer = slices.Concat(newer[:600<<10], patch, newer[600<<10:])
	whole := randomBytes(300<<10, 12)
	files := map[string]string{
		"a.ini":         "x=1\n",
		"data/pack.pak": string(newer),
		"data/same.pak": string(old),
		"lib/whole.bin": string(whole),
		"empty":         "",
	}
	dir := t.TempDir()
	writeTree(t, dir, files, oldTime)
	ts := startServer(t, linuxConfig(t, dir), nil, nil)

	c := mustDial(t, ts.addr)
	if _, err := c.hello(srvBuild, "linux", "delta"); err != nil {
		t.Fatal(err)
	}
	_, entries, err := c.manifestWith(syncproto.GetManifest{Flags: syncproto.GetRaw})
	if err != nil {
		t.Fatal(err)
	}
	ix := indexOf(entries)
	bits := cdc.BitsFor(int64(len(old)))
	base := cut(t, old, bits)
	type want struct {
		path     string
		base     []byte
		bits     uint8
		wantList bool
	}
	// Whole files and deltas interleaved; the base's references in frames
	// of 100, so that the server gathers them over DeltaMore.
	order := []want{
		{path: "a.ini"},
		{path: "data/pack.pak", base: old, bits: bits, wantList: true},
		{path: "lib/whole.bin", bits: cdc.MinBits, wantList: true},
		{path: "data/same.pak", base: old, bits: bits},
		{path: "empty", bits: cdc.MaxBits, wantList: true},
	}
	var msgs []syncproto.Message
	for _, w := range order {
		switch {
		case w.bits == 0:
			msgs = append(msgs, syncproto.Request{Indices: []uint32{ix[w.path]}})
		default:
			flags := uint8(0)
			if w.wantList {
				flags = syncproto.DeltaWantList
			}
			var refs []syncproto.ChunkRef
			if w.base != nil {
				refs = base
			}
			msgs = append(msgs, deltaFrames(ix[w.path], w.bits, flags, refs, 100)...)
		}
	}
	if err := c.send(append(msgs, syncproto.RequestEnd{})...); err != nil {
		t.Fatal(err)
	}
	dec, err := syncproto.NewChunkDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	got := map[string]receivedDelta{}
	for _, w := range order {
		i := ix[w.path]
		r, err := c.receiveDelta(dec, i, w.bits, w.base, w.wantList)
		if err != nil {
			t.Fatalf("%s: %v", w.path, err)
		}
		if string(r.data) != files[w.path] || r.hash != entries[i].Hash || blake3.Sum256(r.data) != entries[i].Hash {
			t.Errorf("%s: reassembled %d bytes that differ from the folder's %d", w.path, len(r.data), len(files[w.path]))
		}
		if w.wantList {
			if want := cut(t, []byte(files[w.path]), w.bits); !slices.Equal(r.list, want) {
				t.Errorf("%s: chunk list of %d chunks differs from cdc's cut, %d chunks", w.path, len(r.list), len(want))
			}
		} else if r.lists != 0 {
			t.Errorf("%s: %d ChunkList frames, none asked for", w.path, r.lists)
		}
		got[w.path] = r
	}
	if err := c.report(syncproto.Report{Outcome: syncproto.OutcomeUpdated, Build: srvBuild, Files: uint32(len(order))}); err != nil {
		t.Fatal(err)
	}

	// Two 4 KiB edits touch a few chunks of at most 16 KiB each (bits 12).
	if r := got["data/pack.pak"]; r.sent > 128<<10 || r.copied < int64(len(newer))-128<<10 || r.copies < 2 {
		t.Errorf("data/pack.pak: %d bytes sent, %d copied in %d copies; want the edits sent and the rest copied", r.sent, r.copied, r.copies)
	}
	// Adjacent copies are merged: a file the base has whole is one copy.
	if r := got["data/same.pak"]; r.sent != 0 || r.copies != 1 || r.copied != int64(len(old)) {
		t.Errorf("data/same.pak: %d bytes sent, %d copied in %d copies; want one copy of all %d", r.sent, r.copied, r.copies, len(old))
	}
	// An empty base fetches the file whole, with its list.
	if r := got["lib/whole.bin"]; r.sent != int64(len(whole)) || r.copies != 0 || r.lists != 1 {
		t.Errorf("lib/whole.bin: %d bytes sent, %d copies, %d list frames; want it whole with its list in one frame", r.sent, r.copies, r.lists)
	}
	// An empty file's list is one empty frame.
	if r := got["empty"]; r.lists != 1 || len(r.list) != 0 || len(r.data) != 0 {
		t.Errorf("empty: %d list frames of %d chunks, %d bytes", r.lists, len(r.list), len(r.data))
	}
}

// TestServerDeltaLongList: a file of more than MaxChunkRefs chunks gets
// its list in several ChunkList frames, all but the last with More, full,
// and together equal to cdc's cut of the file; a client's base of that
// many chunks goes in several DeltaRequest frames.
func TestServerDeltaLongList(t *testing.T) {
	if testing.Short() {
		t.Skip("cuts and sends 10 MiB")
	}
	content := randomBytes(10<<20, 13)
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"big.pak": string(content)}, oldTime)
	// A client under the race detector on a busy machine can take over a
	// second to take in a chunk.
	ts := startServer(t, linuxConfig(t, dir), func(s *Server) { s.WriteTimeout, s.IdleTimeout = 20*time.Second, 20*time.Second }, nil)
	want := cut(t, content, cdc.MinBits)
	if len(want) <= syncproto.MaxChunkRefs {
		t.Fatalf("%d chunks: the test needs more than %d", len(want), syncproto.MaxChunkRefs)
	}
	for _, tc := range []struct {
		name string
		base []byte
	}{
		{"empty base", nil},
		{"the same file as base", content},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustDial(t, ts.addr)
			c.conn.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.hello(srvBuild, "linux", "long-list"); err != nil {
				t.Fatal(err)
			}
			if _, _, err := c.manifestWith(syncproto.GetManifest{Flags: syncproto.GetRaw}); err != nil {
				t.Fatal(err)
			}
			var refs []syncproto.ChunkRef
			if tc.base != nil {
				refs = want
			}
			msgs := deltaFrames(0, cdc.MinBits, syncproto.DeltaWantList, refs, syncproto.MaxChunkRefs)
			if err := c.send(append(msgs, syncproto.RequestEnd{})...); err != nil {
				t.Fatal(err)
			}
			dec, err := syncproto.NewChunkDecoder()
			if err != nil {
				t.Fatal(err)
			}
			defer dec.Close()
			r, err := c.receiveDelta(dec, 0, cdc.MinBits, tc.base, true)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(r.data, content) {
				t.Error("reassembled content differs from the file")
			}
			if wantFrames := (len(want) + syncproto.MaxChunkRefs - 1) / syncproto.MaxChunkRefs; r.lists != wantFrames || !slices.Equal(r.list, want) {
				t.Errorf("list of %d chunks in %d frames; want cdc's %d chunks in %d frames", len(r.list), r.lists, len(want), wantFrames)
			}
			if tc.base != nil && (r.sent != 0 || r.copies != 1) {
				t.Errorf("%d bytes sent, %d copies; want one copy of the whole file", r.sent, r.copies)
			}
		})
	}
}

// TestServerHostileDeltaClients: every malformed or abusive DeltaRequest
// gets CodeBadRequest (CodeProtocol where the decoder refuses the frame)
// and a closed connection, while a client fetching a delta is served at
// the same time.
func TestServerHostileDeltaClients(t *testing.T) {
	testtree.NeedSymlinks(t)
	dir := t.TempDir()
	old := randomBytes(200<<10, 21)
	newer := slices.Concat(old[:50<<10], []byte("an insert"), old[50<<10:])
	files := map[string]string{"smartclient": string(newer), "smartclient.ini": "[TCP]\n", "lib/data.bin": "data"}
	writeTree(t, dir, files, oldTime)
	haveLink := os.Symlink("smartclient", filepath.Join(dir, "smartclient.lnk")) == nil
	// No case waits for a deadline; long ones keep a slow machine from
	// dropping a client that is merely slow to send its 20 MB.
	ts := startServer(t, linuxConfig(t, dir), func(s *Server) { s.WriteTimeout, s.IdleTimeout = 10*time.Second, 10*time.Second }, nil)
	bases := map[string][]byte{"smartclient": old}

	ref := syncproto.ChunkRef{Len: 1000, Hash: [16]byte{1}}
	one := []syncproto.ChunkRef{ref}
	delta := func(index uint32, bits, flags uint8, refs []syncproto.ChunkRef) syncproto.DeltaRequest {
		return syncproto.DeltaRequest{Index: index, Bits: bits, Flags: flags, Chunks: refs}
	}
	// full is one frame of MaxChunkRefs references, encoded once: the
	// session limit takes MaxSessionChunkRefs/MaxChunkRefs of them.
	fullRefs := slices.Repeat(one, syncproto.MaxChunkRefs)
	frames := syncproto.MaxSessionChunkRefs / syncproto.MaxChunkRefs
	fullMore := syncproto.AppendFrame(nil, delta(0, 12, syncproto.DeltaMore, fullRefs))
	fullLast := syncproto.AppendFrame(nil, delta(0, 12, 0, fullRefs))
	// rawDelta is a DeltaRequest payload: index 0, bits 12, flags, count
	// and body as given.
	rawDelta := func(flags uint8, count uint32, body []byte) []byte {
		p := append([]byte{0, 0, 0, 0, 12, flags}, binary.BigEndian.AppendUint32(nil, count)...)
		p = append(p, body...)
		return append(frameHeader(syncproto.Version, syncproto.MsgDeltaRequest, uint32(len(p))), p...)
	}

	tests := []struct {
		name string
		// attack runs after the manifest, whose indices ix names.
		attack   func(c *testClient, ix map[string]uint32) error
		wantCode syncproto.Code
		// wantMsg is in the error the server logs for the session.
		wantMsg string
		link    bool // needs a symbolic link in the folder
	}{
		{name: "bits 9, below the range", wantMsg: "chunk parameter 9 out of range 10..16", wantCode: syncproto.CodeBadRequest, attack: func(c *testClient, ix map[string]uint32) error {
			return c.send(delta(ix["smartclient"], cdc.MinBits-1, 0, one))
		}},
		{name: "bits 17, above the range", wantMsg: "chunk parameter 17 out of range", wantCode: syncproto.CodeBadRequest, attack: func(c *testClient, ix map[string]uint32) error {
			return c.send(delta(ix["smartclient"], cdc.MaxBits+1, 0, one))
		}},
		{name: "bits 0 with an empty base", wantMsg: "chunk parameter 0 out of range", wantCode: syncproto.CodeBadRequest, attack: func(c *testClient, ix map[string]uint32) error {
			return c.send(delta(ix["smartclient"], 0, syncproto.DeltaWantList, nil))
		}},
		{name: "bits 255", wantMsg: "chunk parameter 255 out of range", wantCode: syncproto.CodeBadRequest, attack: func(c *testClient, ix map[string]uint32) error {
			return c.send(delta(ix["smartclient"], 255, 0, one))
		}},
		{name: "DeltaMore, then another index", wantMsg: "interrupted by one for file", wantCode: syncproto.CodeBadRequest, attack: func(c *testClient, ix map[string]uint32) error {
			return c.send(delta(ix["smartclient"], 12, syncproto.DeltaMore, one), delta(ix["lib/data.bin"], 12, 0, one))
		}},
		{name: "DeltaMore, then the same index with other bits", wantMsg: "continued with chunk parameter 13, begun with 12", wantCode: syncproto.CodeBadRequest, attack: func(c *testClient, ix map[string]uint32) error {
			return c.send(delta(ix["smartclient"], 12, syncproto.DeltaMore, one), delta(ix["smartclient"], 13, 0, one))
		}},
		{name: "DeltaMore, then RequestEnd", wantMsg: "not finished before RequestEnd", wantCode: syncproto.CodeBadRequest, attack: func(c *testClient, ix map[string]uint32) error {
			return c.send(delta(ix["smartclient"], 12, syncproto.DeltaMore, one), syncproto.RequestEnd{})
		}},
		{name: "DeltaMore, then a Request", wantMsg: "not finished before Request", wantCode: syncproto.CodeBadRequest, attack: func(c *testClient, ix map[string]uint32) error {
			return c.send(delta(ix["smartclient"], 12, syncproto.DeltaMore, one), syncproto.Request{Indices: []uint32{ix["lib/data.bin"]}})
		}},
		{name: "a symbolic link", wantMsg: "smartclient.lnk is a symbolic link", link: true, wantCode: syncproto.CodeBadRequest, attack: func(c *testClient, ix map[string]uint32) error {
			return c.send(delta(ix["smartclient.lnk"], 12, 0, one))
		}},
		{name: "index equal to count", wantMsg: "is not in the manifest of", wantCode: syncproto.CodeBadRequest, attack: func(c *testClient, ix map[string]uint32) error {
			return c.send(delta(uint32(len(ix)), 12, 0, one))
		}},
		{name: "largest index", wantMsg: "file index 4294967295 is not in the manifest", wantCode: syncproto.CodeBadRequest, attack: func(c *testClient, ix map[string]uint32) error {
			return c.send(delta(1<<32-1, 12, syncproto.DeltaWantList, nil))
		}},
		// A file is sent once a session: a second request for it (which
		// also bounds the requests by the manifest's length) is refused.
		{name: "the same file twice", wantMsg: "smartclient (file index 1) is requested twice", wantCode: syncproto.CodeBadRequest, attack: func(c *testClient, ix map[string]uint32) error {
			return c.send(delta(ix["smartclient"], 12, 0, one), delta(ix["smartclient"], 12, 0, one))
		}},
		{name: "session limit passed by one file's frames", wantMsg: "more than 1048576 chunk references in one session", wantCode: syncproto.CodeBadRequest, attack: func(c *testClient, ix map[string]uint32) error {
			// frames+1 full frames for index 0.
			for range frames {
				if err := c.w.WriteEncoded(fullMore); err != nil {
					return err
				}
			}
			if err := c.w.WriteEncoded(fullLast); err != nil {
				return err
			}
			return c.w.Flush()
		}},
		{name: "session limit passed by a second file", wantMsg: "more than 1048576 chunk references in one session", wantCode: syncproto.CodeBadRequest, attack: func(c *testClient, ix map[string]uint32) error {
			// Exactly the limit for index 0, then one reference more.
			for range frames - 1 {
				if err := c.w.WriteEncoded(fullMore); err != nil {
					return err
				}
			}
			if err := c.w.WriteEncoded(fullLast); err != nil {
				return err
			}
			other := ix["smartclient"]
			if other == 0 {
				other = ix["lib/data.bin"]
			}
			return c.send(delta(other, 12, 0, one))
		}},
		{name: "unknown DeltaRequest flag", wantMsg: "unknown flags 0x80", wantCode: syncproto.CodeProtocol, attack: func(c *testClient, ix map[string]uint32) error {
			return c.sendRaw(rawDelta(0x80, 0, nil))
		}},
		{name: "DeltaRequest frame over MaxChunkRefs", wantMsg: "8193 chunks, limit 8192", wantCode: syncproto.CodeProtocol, attack: func(c *testClient, ix map[string]uint32) error {
			return c.sendRaw(rawDelta(0, syncproto.MaxChunkRefs+1, nil))
		}},
		{name: "DeltaRequest count that lies", wantMsg: "3 chunks in 40 bytes", wantCode: syncproto.CodeProtocol, attack: func(c *testClient, ix map[string]uint32) error {
			return c.sendRaw(rawDelta(0, 3, make([]byte, 2*(4+syncproto.ChunkHashSize))))
		}},
		{name: "DeltaRequest with an empty chunk", wantMsg: "chunk 0 is empty", wantCode: syncproto.CodeProtocol, attack: func(c *testClient, ix map[string]uint32) error {
			return c.sendRaw(rawDelta(0, 1, make([]byte, 4+syncproto.ChunkHashSize)))
		}},
		{name: "ChunkList from the client", wantMsg: "got ChunkList while reading requests", wantCode: syncproto.CodeProtocol, attack: func(c *testClient, ix map[string]uint32) error {
			return c.send(syncproto.ChunkList{Bits: 12, Chunks: one})
		}},
		{name: "FileCopy from the client", wantMsg: "got FileCopy while reading requests", wantCode: syncproto.CodeProtocol, attack: func(c *testClient, ix map[string]uint32) error {
			return c.send(syncproto.FileCopy{Off: 0, Len: 1})
		}},
		{name: "DeltaRequest before GetManifest", wantMsg: "got DeltaRequest after Welcome", wantCode: syncproto.CodeProtocol, attack: nil},
	}
	received := regexp.MustCompile(` received=(\d+) `)
	for n, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.link && !haveLink {
				t.Skip("cannot create symbolic links here")
			}
			bad := mustDial(t, ts.addr)
			bad.conn.SetDeadline(time.Now().Add(time.Minute))
			id := fmt.Sprintf("hostile-delta-%d", n)
			if _, err := bad.hello(srvBuild, "linux", id); err != nil {
				t.Fatal(err)
			}
			if tc.attack == nil {
				if err := bad.send(delta(0, 12, 0, one)); err != nil {
					t.Fatal(err)
				}
			} else {
				_, entries, err := bad.manifest()
				if err != nil {
					t.Fatal(err)
				}
				ix := indexOf(entries)
				if _, ok := ix["smartclient.lnk"]; tc.link && !ok {
					t.Fatal("the link is not in the manifest")
				}
				if err := tc.attack(bad, ix); err != nil {
					t.Fatalf("attack: %v", err)
				}
			}

			// A good client fetches a delta while the bad one is connected.
			good := make(chan error, 1)
			go func() { good <- deltaSession(ts.addr, "good-client", files, bases) }()

			// Only a guard against a hang: the server decodes 20 MB of references
			// under the race detector in the largest cases.
			bad.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			codes, err := bad.readUntilClosed()
			if err != nil {
				t.Errorf("bad client: %v", err)
			}
			if len(codes) != 1 || codes[0] != tc.wantCode {
				t.Errorf("bad client got Error codes %v, want [%v]", codes, tc.wantCode)
			}
			if err := <-good; err != nil {
				t.Errorf("good client: %v", err)
			}
			// The server refused the request for its reason, and only at
			// its last frame: it had read every byte the client sent.
			var line string
			for l := range strings.Lines(ts.logs.String()) {
				if strings.Contains(l, " id="+id+" ") {
					line = l
				}
			}
			if !strings.Contains(line, tc.wantMsg) {
				t.Errorf("session log %q does not say %q", line, tc.wantMsg)
			}
			if m := received.FindStringSubmatch(line); m == nil || m[1] != fmt.Sprint(bad.w.N) {
				t.Errorf("session log %q; want received=%d, all the client sent", line, bad.w.N)
			}
		})
	}
}

// TestServerDeltaOfCopiesAfterALongCut: a delta that is all copies, of a
// file whose chunk list the server must cut first, reaches the client
// however long the cut took: every write, the final flush included, gets
// a fresh write deadline, not one left from before the cut.
func TestServerDeltaOfCopiesAfterALongCut(t *testing.T) {
	if testing.Short() {
		t.Skip("cuts 64 MiB")
	}
	content := randomBytes(64<<20, 31)
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"big.pak": string(content)}, oldTime)
	bits := cdc.BitsFor(int64(len(content)))
	start := time.Now()
	base := cut(t, content, bits)
	// The server's cut, which hashes the file too, takes longer than
	// this one: a third of it is a write deadline the cut outlasts, and
	// still ample for a write to a socket's buffer.
	writeTimeout := time.Since(start) / 3
	if writeTimeout < 10*time.Millisecond {
		t.Skipf("cutting 64 MiB took %v here, too little to outlast a write deadline safely", 3*writeTimeout)
	}
	ts := startServer(t, linuxConfig(t, dir), func(s *Server) { s.WriteTimeout, s.IdleTimeout = writeTimeout, 10*time.Second }, nil)

	c := mustDial(t, ts.addr)
	c.conn.SetDeadline(time.Now().Add(time.Minute))
	if _, err := c.hello(srvBuild, "linux", "slow-cut"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.manifestWith(syncproto.GetManifest{Flags: syncproto.GetRaw}); err != nil {
		t.Fatal(err)
	}
	// The whole file as the base, no list: the answer is FileStart, one
	// copy and FileEnd, all written after the cut.
	if err := c.send(append(deltaFrames(0, bits, 0, base, syncproto.MaxChunkRefs), syncproto.RequestEnd{})...); err != nil {
		t.Fatal(err)
	}
	dec, err := syncproto.NewChunkDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	r, err := c.receiveDelta(dec, 0, bits, content, false)
	if err != nil {
		t.Fatalf("%v\nserver log:\n%s", err, ts.logs)
	}
	if !bytes.Equal(r.data, content) || r.copies != 1 {
		t.Errorf("%d bytes in %d copies; want the file in one copy", len(r.data), r.copies)
	}
}

// TestSendFoldersOpensInOrder opens files as a session is sent them, by
// path, going back to a folder it left, and refuses a folder that became
// a link out of the update folder after the manifest was made.
func TestSendFoldersOpensInOrder(t *testing.T) {
	dir, state, outside := t.TempDir(), t.TempDir(), t.TempDir()
	files := map[string]string{"top": "top", "a/x": "ax", "a/y": "ay", "a/b/c": "abc", "b/z": "bz"}
	writeTree(t, dir, files, oldTime)
	man := current(t, openIndex(t, dir, state))
	c := &sendFolders{man: man}
	defer c.close()
	for _, name := range []string{"a/b/c", "a/x", "a/y", "b/z", "top", "a/x"} {
		fh, err := c.open(index.File{Path: name})
		if err != nil {
			t.Fatalf("opening %s: %v", name, err)
		}
		got, err := io.ReadAll(fh)
		fh.Close()
		if err != nil || string(got) != files[name] {
			t.Errorf("%s reads %q, %v; want %q", name, got, err, files[name])
		}
	}

	writeTree(t, outside, map[string]string{"z": "outside"}, oldTime)
	if err := os.RemoveAll(filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "b")); err != nil {
		t.Skipf("no symbolic links here: %v", err)
	}
	if fh, err := c.open(index.File{Path: "b/z"}); err == nil {
		got, _ := io.ReadAll(fh)
		fh.Close()
		t.Errorf("b/z, through a link out of the update folder, was opened and reads %q", got)
	}
}

// TestCheckReportsPreserveThatNamesNothing: --check warns of a Preserve
// entry that is in no update folder (matched case-insensitively).
func TestCheckReportsPreserveThatNamesNothing(t *testing.T) {
	base := t.TempDir()
	writeTree(t, filepath.Join(base, "linux"), map[string]string{"smartclient": "x", "SmartClient.ini": "[TCP]\n"}, oldTime)
	cfgPath := filepath.Join(base, "AppServer.ini")
	writeFile(t, cfgPath, "[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nPathLinux=linux\nBuild="+srvBuild+"\nPreserve=smartclient.ini;config/typo.ini\n")
	var out, errb testtree.Buffer
	if err := RunServer(t.Context(), ServeOptions{Config: cfgPath, Check: true}, &out, &errb); err != nil {
		t.Fatalf("--check: %v\n%s", err, errb.String())
	}
	text := out.String()
	if !strings.Contains(text, `warning: [UPDATE] Preserve: "config/typo.ini" names no file in any update folder`) {
		t.Errorf("no warning for config/typo.ini:\n%s", text)
	}
	if strings.Contains(text, `"smartclient.ini" names no file`) {
		t.Errorf("smartclient.ini, which is there as SmartClient.ini, was reported:\n%s", text)
	}
}
