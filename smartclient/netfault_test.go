package smartclient_test

// Network faults between a real smartclient and a real appserver, made by
// faultProxy, a TCP proxy on 127.0.0.1 that forwards both ways and breaks
// the connection in one chosen way: a reset after N bytes in either
// direction, a stall, or a slow drip. The places to break are found in a
// recording of a good sync of the same update, so each cut lands inside
// the message the test names, whatever the sizes of the messages become.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
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
	"github.com/otiai10/copy"
)

// faultKind says what a faultProxy does to the connections it carries.
type faultKind int

const (
	faultNone      faultKind = iota // forward both ways, untouched
	faultResetDown                  // after `after` bytes from the server, reset both connections
	faultResetUp                    // after `after` bytes from the client, reset both connections
	faultStallDown                  // after `after` bytes from the server, forward nothing more that way and close nothing
	faultDripDown                   // forward the server's bytes `drip` at a time, `every` apart
)

type fault struct {
	kind  faultKind
	after int64         // faultResetDown, faultResetUp, faultStallDown
	drip  int           // faultDripDown
	every time.Duration // faultDripDown
}

// faultProxy forwards every connection it accepts to target, applying its
// fault to each one.
type faultProxy struct {
	t      *testing.T
	target string
	fault  fault
	record bool // keep what went each way (for one connection)
	addr   string

	ln   net.Listener
	tls  *tls.Config   // the proxy's own key, which the client trusts on first use
	done chan struct{} // closed when the proxy closes
	wg   sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	conns    map[net.Conn]struct{}
	down, up bytes.Buffer // recorded: server to client, client to server
	upstream []string     // the proxy's address on each connection to the server

	trips    atomic.Int32 // connections on which the fault fired
	tripOnce sync.Once
	tripped  chan struct{} // closed when the fault first fires
	pieces   atomic.Int64  // writes to clients
}

func newFaultProxy(t *testing.T, target string, f fault, record bool) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := pkitest.Certificate(t)
	p := &faultProxy{
		t: t, target: target, fault: f, record: record, addr: ln.Addr().String(),
		tls: pki.ServerConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }),
		ln:  ln, done: make(chan struct{}), conns: map[net.Conn]struct{}{}, tripped: make(chan struct{}),
	}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *faultProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c)
		}()
	}
}

// close stops the proxy, closes every connection it still carries and
// waits, for a bounded time, for all its goroutines to end.
func (p *faultProxy) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	ended := make(chan struct{})
	go func() { p.wg.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		p.t.Errorf("faultProxy: goroutines still running 5 s after closing")
	}
}

func (p *faultProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *faultProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

func (p *faultProxy) trip() {
	p.trips.Add(1)
	p.tripOnce.Do(func() { close(p.tripped) })
}

// recorded returns what went from the server to the client and back.
func (p *faultProxy) recorded() (down, up []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.down.Bytes()), bytes.Clone(p.up.Bytes())
}

func (p *faultProxy) upstreamAddrs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.upstream)
}

// serve carries one connection. The proxy ends the client's TLS with a
// key of its own (which the client trusts on first use, at the proxy's
// address) and speaks TLS to the server, so that what it counts, records
// and cuts are the frames; its faults hit the TCP connections under both.
func (p *faultProxy) serve(client net.Conn) {
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	clientTLS := tls.Server(client, p.tls)
	serverTLS := tls.Client(server, pki.ClientConfig("127.0.0.1", func(tls.ConnectionState) error { return nil }))
	if clientTLS.Handshake() != nil || serverTLS.Handshake() != nil {
		client.Close()
		server.Close()
		return
	}
	if !p.track(client, server) {
		client.Close()
		server.Close()
		return
	}
	defer p.untrack(client, server)
	p.mu.Lock()
	p.upstream = append(p.upstream, server.LocalAddr().String())
	p.mu.Unlock()
	// Small send buffers bound what a reset throws away unsent, so that
	// the peer receives nearly all of the bytes before the cut and the cut
	// lands inside the message the test aims at.
	client.(*net.TCPConn).SetWriteBuffer(32 << 10)
	server.(*net.TCPConn).SetWriteBuffer(32 << 10)

	var once sync.Once
	end := func(reset bool) {
		once.Do(func() {
			for _, c := range []net.Conn{client, server} {
				if reset {
					// Linger 0: Close sends a RST, not a FIN.
					c.(*net.TCPConn).SetLinger(0)
				}
				c.Close()
			}
		})
	}
	clientGone := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(clientGone)
		p.pipe(serverTLS, clientTLS, false, nil, end)
	}()
	go func() {
		defer wg.Done()
		p.pipe(clientTLS, serverTLS, true, clientGone, end)
	}()
	wg.Wait()
	end(false)
}

// pipe copies src to dst, one direction of a connection, and applies the
// proxy's fault to it. A clean end of src is passed on as a half close.
func (p *faultProxy) pipe(dst, src *tls.Conn, down bool, clientGone <-chan struct{}, end func(reset bool)) {
	f := p.fault
	limit := int64(-1)
	switch {
	case down && (f.kind == faultResetDown || f.kind == faultStallDown), !down && f.kind == faultResetUp:
		limit = f.after
	}
	buf := make([]byte, 32<<10)
	if down && f.kind == faultDripDown {
		buf = make([]byte, f.drip)
	}
	var sent int64
	for {
		if limit >= 0 && sent == limit {
			p.trip()
			if f.kind == faultStallDown {
				// Keep both connections open and silent until the
				// client gives up (or the test ends).
				select {
				case <-clientGone:
				case <-p.done:
				}
				end(false)
				return
			}
			end(true)
			return
		}
		b := buf
		if limit >= 0 {
			b = b[:min(int64(len(b)), limit-sent)]
		}
		n, err := src.Read(b)
		if n > 0 {
			if p.record {
				p.mu.Lock()
				if down {
					p.down.Write(b[:n])
				} else {
					p.up.Write(b[:n])
				}
				p.mu.Unlock()
			}
			if _, werr := dst.Write(b[:n]); werr != nil {
				end(false)
				return
			}
			sent += int64(n)
			if down {
				p.pieces.Add(1)
			}
			if down && f.kind == faultDripDown {
				select {
				case <-time.After(f.every):
				case <-p.done:
				}
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				dst.CloseWrite()
				return
			}
			end(false)
			return
		}
	}
}

// wireFrame is one message of a recorded stream and where it lies in it.
type wireFrame struct {
	msg        syncproto.Message
	start, end int64
}

func (f wireFrame) mid() int64 { return (f.start + f.end) / 2 }

func parseWireFrames(t *testing.T, stream []byte) []wireFrame {
	t.Helper()
	r := syncproto.NewReader(bytes.NewReader(stream))
	var fs, zs []wireFrame
	for {
		start := r.N
		m, err := r.Read()
		if errors.Is(err, io.EOF) && r.N == start {
			return fs
		}
		if err != nil {
			t.Fatalf("recorded stream, frame at byte %d: %v", start, err)
		}
		fs = append(fs, wireFrame{msg: m, start: start, end: r.N})
		if z, ok := m.(syncproto.ManifestZ); ok {
			zs = append(zs, wireFrame{msg: syncproto.ManifestZ{More: z.More, Data: bytes.Clone(z.Data)}, start: start, end: r.N})
			if !z.More {
				fs = append(fs, unzipWireFrames(t, zs)...)
				zs = nil
			}
		}
	}
}

// unzipWireFrames returns the frames of a compressed manifest, sent in
// the ManifestZ frames zs, each placed where all of zs lie on the wire.
func unzipWireFrames(t *testing.T, zs []wireFrame) []wireFrame {
	t.Helper()
	var src zFrameSource
	for _, f := range zs {
		src = append(src, f.msg)
	}
	z, err := syncproto.NewZReader(&src, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	var fs []wireFrame
	for {
		m, err := z.Read()
		if errors.Is(err, io.EOF) {
			return fs
		}
		if err != nil {
			t.Fatalf("recorded stream, compressed manifest: %v", err)
		}
		fs = append(fs, wireFrame{msg: m, start: zs[0].start, end: zs[len(zs)-1].end})
	}
}

// zFrameSource gives the ManifestZ frames it holds.
type zFrameSource []syncproto.Message

func (s *zFrameSource) Read() (syncproto.Message, error) {
	if len(*s) == 0 {
		return nil, io.EOF
	}
	m := (*s)[0]
	*s = (*s)[1:]
	return m, nil
}

func firstWireFrame(t *testing.T, fs []wireFrame, types ...syncproto.MsgType) wireFrame {
	t.Helper()
	for _, f := range fs {
		if slices.Contains(types, f.msg.Type()) {
			return f
		}
	}
	t.Fatalf("recorded stream has no %v", types)
	return wireFrame{}
}

// sentFile is where one file's content lies in the recorded stream from
// the server.
type sentFile struct {
	path               string
	dataStart, dataEnd int64 // from the end of FileStart to the start of FileEnd
}

func (f sentFile) mid() int64 { return (f.dataStart + f.dataEnd) / 2 }

// faultScene is a server whose release changed after a good install was
// made, and a recording of a whole sync from that install to the release.
type faultScene struct {
	s        *server
	good     string // the good install, to be copied, never synced
	down, up []wireFrame
	manifest []wireFrame // the ManifestEntry frames
	files    []sentFile
}

func newFaultScene(t *testing.T) *faultScene { return newFaultSceneWith(t, false) }

// newFaultSceneWith makes a fault scene whose install keeps the manifest
// it received if kept; otherwise it forgets it, so that every sync of the
// scene gets the manifest whole, each entry in its own frame, as recorded
// (TestResetInsideTheSketch cuts the other form).
func newFaultSceneWith(t *testing.T, kept bool) *faultScene {
	t.Helper()
	sc := &faultScene{s: newServer(t, defaultConf), good: filepath.Join(t.TempDir(), "good")}
	mustSync(t, sc.s, sc.good, yes)
	if !kept {
		if err := os.Remove(filepath.Join(sc.good, ".smartclient", "manifest.cache")); err != nil {
			t.Fatal(err)
		}
	}
	// Two large incompressible files, the first and the last sent, so
	// that cuts land inside file data: a new library, and a new build of
	// the smartclient executable itself.
	rng := rand.NewChaCha8([32]byte{7})
	for _, rel := range []string{"lib/big.so", "smartclient"} {
		b := make([]byte, 1<<20)
		rng.Read(b)
		sc.s.write("linux", rel, string(b))
	}

	sc.down, sc.up, sc.manifest, sc.files = recordSync(t, sc.s, cloneInstall(t, sc.good), nil)
	if len(sc.manifest) < 3 && !kept {
		t.Fatalf("manifest of %d entries; the cut inside it needs at least 3", len(sc.manifest))
	}
	if len(sc.files) != 2 {
		t.Fatalf("%d files sent, want 2", len(sc.files))
	}
	for _, f := range sc.files {
		// Half of the file's data on either side of the cut is far more
		// than the proxy's send buffer could swallow.
		if f.dataEnd-f.dataStart < 512<<10 {
			t.Fatalf("%s: %d bytes of data on the wire; the cut inside it needs more", f.path, f.dataEnd-f.dataStart)
		}
	}
	return sc
}

// recordSync syncs dir through a proxy that only forwards and records,
// and returns the frames that went each way, the manifest's entries and
// where each file sent lies in the stream from the server.
func recordSync(t *testing.T, s *server, dir string, mod func(*smartclient.Options)) (down, up, manifest []wireFrame, files []sentFile) {
	t.Helper()
	rec := newFaultProxy(t, s.addr, fault{}, true)
	mustSync(t, s, dir, func(o *smartclient.Options) {
		if mod != nil {
			mod(o)
		}
		o.Server = rec.addr
	})
	d, u := rec.recorded()
	down, up = parseWireFrames(t, d), parseWireFrames(t, u)
	var paths []string
	for _, f := range down {
		switch m := f.msg.(type) {
		case syncproto.ManifestEntry:
			manifest = append(manifest, f)
			paths = append(paths, m.Path)
		case syncproto.ManifestSame:
			// Entries the client keeps: their paths are not on the wire.
			for range m.Count {
				paths = append(paths, "(kept entry)")
			}
		case syncproto.FileStart:
			files = append(files, sentFile{path: paths[m.Index], dataStart: f.end})
		case syncproto.FileEnd:
			files[len(files)-1].dataEnd = f.start
		}
	}
	return down, up, manifest, files
}

// cloneInstall copies the good install, bookkeeping and times included,
// into a new folder: a workstation that is one release behind.
func cloneInstall(t *testing.T, good string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "install")
	if err := copy.Copy(good, dir, copy.Options{PreserveTimes: true}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkUnharmed asserts what a failed sync must leave behind: the install
// byte for byte as it was, no staging, journal or half-made backup, no new
// backup; and that the next sync, on a good connection, completes.
func checkUnharmed(t *testing.T, sc *faultScene, dir string, before map[string]string, backupsBefore []string) {
	t.Helper()
	sameTree(t, tree(t, dir), before, "after the fault")
	noLeftovers(t, dir)
	if b := backups(t, dir); !slices.Equal(b, backupsBefore) {
		t.Errorf("backups %v after a failed update, had %v", b, backupsBefore)
	}
	res := mustSync(t, sc.s, dir, nil)
	// A file received whole before the fault is not downloaded again:
	// in the cases cut in the last file, the first one.
	wantReused := 0
	if strings.HasSuffix(t.Name(), "_last_file") {
		wantReused = 1
	}
	if res.Outcome != syncproto.OutcomeUpdated || res.Fetched+res.Reused != 2 || res.Reused != wantReused {
		t.Errorf("next sync: %+v; want the 2 files, %d of them kept from the failed sync", res, wantReused)
	}
	sameTree(t, tree(t, dir), tree(t, sc.s.folders["linux"]), "after the next sync")
}

// TestResetMidTransferLeavesInstallUnchanged: the connection is reset
// (RST, not FIN) after the server has sent N bytes, for N inside each
// part of the session. The user is told the connection was lost, and the
// workstation keeps its old install untouched.
func TestResetMidTransferLeavesInstallUnchanged(t *testing.T) {
	sc := newFaultScene(t)
	tests := []struct {
		name  string
		at    int64
		where string // what the error names: the part that was cut
	}{
		{"inside the Welcome", firstWireFrame(t, sc.down, syncproto.MsgWelcome).mid(), "welcome"},
		{"inside the manifest", sc.manifest[len(sc.manifest)/2].mid(), "manifest"},
		{"inside the first file", sc.files[0].mid(), "receiving " + sc.files[0].path},
		{"inside the last file", sc.files[1].mid(), "receiving " + sc.files[1].path},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := cloneInstall(t, sc.good)
			before, backupsBefore := tree(t, dir), backups(t, dir)
			p := newFaultProxy(t, sc.s.addr, fault{kind: faultResetDown, after: tc.at}, false)
			start := time.Now()
			code, _, errOut := runCLI(t, "sync", "--server", p.addr, "--dir", dir, "--os", "linux")
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("a reset took %v to notice", d)
			}
			t.Logf("stderr: %s", errOut)
			if got := p.trips.Load(); got != 1 {
				t.Fatalf("the reset fired on %d connections, want 1", got)
			}
			if code != cli.ExitFailed {
				t.Errorf("exit %d, want %d", code, cli.ExitFailed)
			}
			for _, want := range []string{"Could not update automatically", "connection to the update server was lost", tc.where} {
				if !strings.Contains(strings.ToLower(errOut), strings.ToLower(want)) {
					t.Errorf("stderr %q lacks %q", errOut, want)
				}
			}
			checkUnharmed(t, sc, dir, before, backupsBefore)
		})
	}
}

// TestStalledServerTimesOutAndLeavesInstallUnchanged: the server's bytes
// stop arriving without the connection closing, as when a link dies
// silently. The client gives up after its timeout with a timeout error,
// instead of hanging, and changes nothing.
func TestStalledServerTimesOutAndLeavesInstallUnchanged(t *testing.T) {
	sc := newFaultScene(t)
	const timeout = 500 * time.Millisecond
	tests := []struct {
		name  string
		at    int64
		where string
	}{
		{"inside the Welcome", firstWireFrame(t, sc.down, syncproto.MsgWelcome).mid(), "welcome"},
		{"inside the manifest", sc.manifest[len(sc.manifest)/2].mid(), "manifest"},
		{"inside the first file", sc.files[0].mid(), "receiving " + sc.files[0].path},
		{"at the start of the last file", sc.files[1].dataStart, "receiving " + sc.files[1].path},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := cloneInstall(t, sc.good)
			before, backupsBefore := tree(t, dir), backups(t, dir)
			p := newFaultProxy(t, sc.s.addr, fault{kind: faultStallDown, after: tc.at}, false)
			type result struct {
				res *smartclient.Result
				err error
			}
			ch := make(chan result, 1)
			start := time.Now()
			go func() {
				res, err := smartclient.Sync(context.Background(), smartclient.Options{AllowUnsigned: true, Dir: dir, Server: p.addr, OS: "linux", Timeout: timeout})
				ch <- result{res, err}
			}()
			var r result
			select {
			case r = <-ch:
			case <-time.After(5 * time.Second):
				// Let the sync end before the folders go away.
				p.close()
				<-ch
				t.Fatalf("sync still running 5 s into a stall, with a timeout of %v", timeout)
			}
			t.Logf("gave up after %v: %v", time.Since(start).Round(time.Millisecond), r.err)
			if p.trips.Load() != 1 {
				t.Fatalf("the stall fired on %d connections, want 1", p.trips.Load())
			}
			var ne net.Error
			if r.err == nil || !errors.As(r.err, &ne) || !ne.Timeout() {
				t.Fatalf("got %+v, %v; want a timeout error", r.res, r.err)
			}
			if !strings.Contains(strings.ToLower(r.err.Error()), strings.ToLower(tc.where)) {
				t.Errorf("error %q does not say it was waiting for %s", r.err, tc.where)
			}
			checkUnharmed(t, sc, dir, before, backupsBefore)
		})
	}
}

// TestSlowLinkCompletes: every byte from the server arrives, but slowly,
// in small pieces, so that the whole sync takes longer than the client's
// timeout. As long as each message arrives within the timeout, a
// slow link is not a failure.
func TestSlowLinkCompletes(t *testing.T) {
	s := newServer(t, defaultConf)
	// Many small incompressible files beside the fixtures: much data, in
	// messages that are each quick to drip through.
	rng := rand.NewChaCha8([32]byte{9})
	for i := range 16 {
		b := make([]byte, 8<<10)
		rng.Read(b)
		s.write("linux", fmt.Sprintf("plugins/slow/part%02d.bin", i), string(b))
	}
	const timeout = 500 * time.Millisecond
	p := newFaultProxy(t, s.addr, fault{kind: faultDripDown, drip: 512, every: 2 * time.Millisecond}, false)
	dir := filepath.Join(t.TempDir(), "install")
	start := time.Now()
	res := mustSync(t, s, dir, func(o *smartclient.Options) {
		o.Yes = true
		o.Server = p.addr
		o.Timeout = timeout
	})
	took := time.Since(start)
	t.Logf("fresh install in %d pieces of at most 512 bytes, %v", p.pieces.Load(), took.Round(time.Millisecond))
	if res.Outcome != syncproto.OutcomeUpdated || res.Fetched != 6+16 {
		t.Errorf("got %+v; want updated, %d files fetched", res, 6+16)
	}
	if took <= timeout {
		t.Errorf("the sync took %v, no more than the timeout: the link was not slow enough to prove anything", took)
	}
	sameTree(t, tree(t, dir), tree(t, s.folders["linux"]), "after a slow sync")
	noLeftovers(t, dir)
}

// gateProgress holds its sync at the first file data it receives until
// release is closed (or 5 s pass), so that the sync is known to be in the
// middle of a transfer meanwhile.
type gateProgress struct {
	once    sync.Once
	reached chan struct{}
	release <-chan struct{}
}

func (g *gateProgress) Start(int, int64) {}
func (g *gateProgress) FileDone()        {}
func (g *gateProgress) Finish()          {}
func (g *gateProgress) Add(int64) {
	g.once.Do(func() {
		close(g.reached)
		select {
		case <-g.release:
		case <-time.After(5 * time.Second):
		}
	})
}

// TestClientSideResetLeavesInstallUnchangedAndServerServesOthers: the
// connection is reset after the client has sent N bytes. The failing
// client changes nothing; the server ends that session and goes on
// serving another client that is in the middle of its own transfer.
func TestClientSideResetLeavesInstallUnchangedAndServerServesOthers(t *testing.T) {
	sc := newFaultScene(t)
	tests := []struct {
		name string
		at   int64
	}{
		{"inside the Hello", firstWireFrame(t, sc.up, syncproto.MsgHello).mid()},
		{"inside the requests", firstWireFrame(t, sc.up, syncproto.MsgRequest, syncproto.MsgDeltaRequest).mid()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := cloneInstall(t, sc.good)
			before, backupsBefore := tree(t, dir), backups(t, dir)
			p := newFaultProxy(t, sc.s.addr, fault{kind: faultResetUp, after: tc.at}, false)

			// A good client, straight to the server, is held in the
			// middle of its transfer until the other one is cut.
			other := cloneInstall(t, sc.good)
			gate := &gateProgress{reached: make(chan struct{}), release: p.tripped}
			otherErr := make(chan error, 1)
			go func() {
				_, err := smartclient.Sync(context.Background(), smartclient.Options{AllowUnsigned: true,
					Dir: other, Server: sc.s.addr, OS: "linux", Timeout: 10 * time.Second, Progress: gate})
				otherErr <- err
			}()
			select {
			case <-gate.reached:
			case err := <-otherErr:
				t.Fatalf("the good client ended before receiving file data: %v", err)
			case <-time.After(5 * time.Second):
				t.Error("the good client received no file data within 5 s")
				select { // its own timeout ends it
				case <-otherErr:
				case <-time.After(15 * time.Second):
				}
				t.FailNow()
			}

			code, _, errOut := runCLI(t, "sync", "--server", p.addr, "--dir", dir, "--os", "linux")
			if got := p.trips.Load(); got != 1 {
				t.Errorf("the reset fired on %d connections, want 1", got)
			}
			if code != cli.ExitFailed {
				t.Errorf("exit %d, want %d", code, cli.ExitFailed)
			}
			for _, want := range []string{"Could not update automatically", "connection to the update server was lost"} {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr %q lacks %q", errOut, want)
				}
			}

			select {
			case err := <-otherErr:
				if err != nil {
					t.Errorf("the good client, running meanwhile, failed: %v\nserver log:\n%s", err, sc.s.log)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the good client did not finish within 10 s")
			}
			sameTree(t, tree(t, other), tree(t, sc.s.folders["linux"]), "the good client")

			// The server ended the cut session (it logs every session
			// when it ends), rather than waiting on it.
			if addrs := p.upstreamAddrs(); len(addrs) == 1 {
				sc.s.log.waitFor(t, "client="+addrs[0]+" ")
			} else {
				t.Errorf("%d connections to the server, want 1", len(addrs))
			}
			checkUnharmed(t, sc, dir, before, backupsBefore)
		})
	}
}

// TestResetInsideTheSketch: the connection is reset while the client
// names the manifest it keeps, or while the server sends the manifest by
// difference (compressed: in the middle of it, or in its last bytes,
// where the digest is). The update fails as any cut one does, the install and the
// kept manifest stay as they were, and the next sync updates.
func TestResetInsideTheSketch(t *testing.T) {
	sc := newFaultSceneWith(t, true)
	tests := []struct {
		name  string
		fault fault
	}{
		{"inside the sketch", fault{kind: faultResetUp, after: firstWireFrame(t, sc.up, syncproto.MsgSketch).mid()}},
		// The entries, runs and digest travel compressed, in ManifestZ
		// frames (syncproto.GetZManifest).
		{"inside the compressed manifest", fault{kind: faultResetDown, after: firstWireFrame(t, sc.down, syncproto.MsgManifestZ).mid()}},
		{"inside the digest", fault{kind: faultResetDown, after: firstWireFrame(t, sc.down, syncproto.MsgManifestEnd).end - 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := cloneInstall(t, sc.good)
			kept := filepath.Join(dir, ".smartclient", "manifest.cache")
			keptBefore, err := os.ReadFile(kept)
			if err != nil {
				t.Fatal(err)
			}
			before, backupsBefore := tree(t, dir), backups(t, dir)
			p := newFaultProxy(t, sc.s.addr, tc.fault, false)
			code, _, errOut := runCLI(t, "sync", "--server", p.addr, "--dir", dir, "--os", "linux")
			if got := p.trips.Load(); got != 1 {
				t.Fatalf("the reset fired on %d connections, want 1", got)
			}
			if code != cli.ExitFailed || !strings.Contains(errOut, "connection to the update server was lost") {
				t.Errorf("exit %d, stderr %q; want %d and the connection lost", code, errOut, cli.ExitFailed)
			}
			if b, err := os.ReadFile(kept); err != nil || !bytes.Equal(b, keptBefore) {
				t.Errorf("kept manifest after the fault: %d bytes, %v; want it as it was", len(b), err)
			}
			checkUnharmed(t, sc, dir, before, backupsBefore)
		})
	}
}

// TestResetWhileReportingKeepsTheUpdate: the report to the server is for
// the administrator's log, sent once the update is in place; losing the
// connection then does not undo or fail the update.
func TestResetWhileReportingKeepsTheUpdate(t *testing.T) {
	sc := newFaultScene(t)
	dir := cloneInstall(t, sc.good)
	p := newFaultProxy(t, sc.s.addr, fault{kind: faultResetUp, after: firstWireFrame(t, sc.up, syncproto.MsgReport).mid()}, false)
	code, out, errOut := runCLI(t, "sync", "--server", p.addr, "--dir", dir, "--os", "linux")
	if p.trips.Load() != 1 {
		t.Errorf("the reset fired on %d connections, want 1", p.trips.Load())
	}
	if code != cli.ExitOK || !strings.Contains(out, "Updated to build") {
		t.Fatalf("exit %d, %q %q; want 0 and the update done", code, out, errOut)
	}
	sameTree(t, tree(t, dir), tree(t, sc.s.folders["linux"]), "after the update")
	sameTree(t, tree(t, filepath.Join(dir, "bkp_remote.001")), tree(t, sc.good), "bkp_remote.001")
	noLeftovers(t, dir)
	if res := mustSync(t, sc.s, dir, nil); res.Outcome != syncproto.OutcomeUpToDate || res.Fetched != 0 {
		t.Errorf("next sync: %+v; want up to date", res)
	}
}

// TestResetDuringFreshInstallInstallsNothing: a first install into a
// folder that did not exist is cut inside a file; no file of the release
// is installed, only the files received whole are kept in
// .smartclient/resume, and the next sync does not download them again.
func TestResetDuringFreshInstallInstallsNothing(t *testing.T) {
	s := newServer(t, defaultConf)
	big := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{8}).Read(big)
	s.write("linux", "lib/big.so", string(big))
	_, _, _, files := recordSync(t, s, filepath.Join(t.TempDir(), "fresh"), yes)
	i := slices.IndexFunc(files, func(f sentFile) bool { return f.path == "lib/big.so" })
	if i < 0 {
		t.Fatal("lib/big.so not sent on a fresh install")
	}
	dir := filepath.Join(t.TempDir(), "install")
	p := newFaultProxy(t, s.addr, fault{kind: faultResetDown, after: files[i].mid()}, false)
	code, _, errOut := runCLI(t, "sync", "--server", p.addr, "--dir", dir, "--os", "linux", "--yes")
	if p.trips.Load() != 1 {
		t.Errorf("the reset fired on %d connections, want 1", p.trips.Load())
	}
	if code != cli.ExitFailed || !strings.Contains(errOut, "connection to the update server was lost") || !strings.Contains(errOut, "receiving lib/big.so") {
		t.Fatalf("exit %d, stderr %q; want 1 and a connection lost inside lib/big.so", code, errOut)
	}
	if got := tree(t, dir); len(got) != 0 {
		t.Errorf("a fresh install that did not happen installed %v", got)
	}
	res := mustSync(t, s, dir, yes)
	if res.Reused != i {
		t.Errorf("next sync reused %d files, want the %d received before the cut", res.Reused, i)
	}
	sameTree(t, tree(t, dir), tree(t, s.folders["linux"]), "after the next sync")
}
