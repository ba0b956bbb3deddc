package appserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/syncproto"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape is one scrape of /metrics, parsed.
type scrape map[string]*dto.MetricFamily

// scrapeMetrics gets url's /metrics over HTTP and parses the text format.
func scrapeMetrics(t *testing.T, url string) scrape {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// series returns the series of name whose labels include labels (name,
// value pairs), or nil.
func (s scrape) series(name string, labels ...string) *dto.Metric {
	f := s[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			if !slices.ContainsFunc(m.Label, func(l *dto.LabelPair) bool {
				return l.GetName() == labels[i] && l.GetValue() == labels[i+1]
			}) {
				continue next
			}
		}
		return m
	}
	return nil
}

// value returns the value of a counter or gauge series, failing the test
// when there is none.
func (s scrape) value(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	m := s.series(name, labels...)
	switch {
	case m == nil:
		t.Fatalf("no series %s%v in /metrics", name, labels)
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("%s%v is neither a counter nor a gauge", name, labels)
	return 0
}

// count returns the number of observations of a histogram series, 0 when
// there is none.
func (s scrape) count(name string, labels ...string) uint64 {
	m := s.series(name, labels...)
	if m == nil || m.Histogram == nil {
		return 0
	}
	return m.Histogram.GetSampleCount()
}

// metricsURL serves ts's metrics on a real HTTP listener and returns its URL.
func metricsURL(t *testing.T, ts *testServer) string {
	t.Helper()
	h := httptest.NewServer(ts.srv.MetricsHandler())
	t.Cleanup(h.Close)
	return h.URL
}

// TestMetricsCountSyncs: a real smartclient's syncs through a real server
// move the counters by what they did: an update, an up-to-date check,
// the bytes of the files sent, a client told busy at its manifest while
// another holds the one transfer slot, and the scan of the folder.
func TestMetricsCountSyncs(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"bin/app": string(randomText(200<<10, 1)), "lib/a.so": "library", "readme.txt": "hello"}
	writeTree(t, dir, files, oldTime)
	ts := startServer(t, linuxConfig(t, dir), func(s *Server) {
		s.MaxTransfers = 1
		s.TransferWait = 50 * time.Millisecond
	}, nil)
	url := metricsURL(t, ts)

	before := scrapeMetrics(t, url)
	for _, o := range syncOutcomes {
		if v := before.value(t, "appserver_syncs_total", "outcome", o); v != 0 {
			t.Errorf("syncs_total{outcome=%q} = %v before any sync; want 0", o, v)
		}
	}
	for _, r := range busyReasons {
		if v := before.value(t, "appserver_busy_refusals_total", "reason", r); v != 0 {
			t.Errorf("busy_refusals_total{reason=%q} = %v before any client; want 0", r, v)
		}
	}
	if v := before.value(t, "appserver_build_info", "build", srvBuild, "protocol", strconv.Itoa(syncproto.Version)); v != 1 {
		t.Errorf("build_info = %v", v)
	}
	if v := before.value(t, "appserver_release", "os", "linux", "build", srvBuild, "number", "0"); v != 1 {
		t.Errorf("release{linux, folder} = %v", v)
	}
	// The scan New made, with a cold hash cache, hashed every file; any
	// scan since (Serve's first look) took every hash from the cache.
	scans := before.count("appserver_index_duration_seconds", "os", "linux")
	if scans < 1 {
		t.Errorf("index_duration_seconds{os=linux} has no observation after New")
	}
	if h, m := before.value(t, "appserver_hashcache_hits_total"), before.value(t, "appserver_hashcache_misses_total"); m != float64(len(files)) || h != float64((scans-1)*uint64(len(files))) {
		t.Errorf("hash cache hits %v, misses %v after %d scans, the first with a cold cache; want %d and %d", h, m, scans, (scans-1)*uint64(len(files)), len(files))
	}
	if before.series("appserver_clients") != nil {
		t.Error("appserver_clients has series before SetClientCounts")
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "appserver_sessions_open", "appserver_transfers_active"} {
		if before[name] == nil {
			t.Errorf("no %s in /metrics", name)
		}
	}

	inst := filepath.Join(t.TempDir(), "inst")
	o := smartclient.Options{Dir: inst, Server: ts.addr, OS: "linux", Yes: true, AllowUnsigned: true, Timeout: 5 * time.Second}
	res, err := smartclient.Sync(context.Background(), o)
	if err != nil || res.Outcome != syncproto.OutcomeUpdated {
		t.Fatalf("first sync: %+v, %v; want updated", res, err)
	}
	if _, err := smartclient.Sync(context.Background(), o); err != nil {
		t.Fatalf("second sync: %v", err)
	}
	// The counts of a sync are made before the server's ReportAck, but
	// the client may be gone before the session's end is counted.
	after := waitMetrics(t, url, func(s scrape) bool {
		return s.value(t, "appserver_syncs_total", "outcome", "up-to-date") >= 1 && s.value(t, "appserver_sessions_open") == 0
	})
	for o, want := range map[string]float64{"updated": 1, "up-to-date": 1, "failed": 0, "declined": 0} {
		if got := after.value(t, "appserver_syncs_total", "outcome", o); got != want {
			t.Errorf("syncs_total{outcome=%q} = %v after an update and a check; want %v", o, got, want)
		}
	}
	// The bytes of the files on the wire: what the client counted as
	// file data, with the frames around it (a few dozen bytes a file).
	sent := after.value(t, "appserver_bytes_sent_total")
	if sent < float64(res.WireBytes) || sent > float64(res.WireBytes)+1024 {
		t.Errorf("bytes_sent_total = %v after a sync the client received %d bytes of file data for", sent, res.WireBytes)
	}

	// One client holds the only transfer slot; the next is told busy.
	a := mustDial(t, ts.addr)
	if _, err := a.hello(srvBuild, "linux", "a"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.manifest(); err != nil {
		t.Fatal(err)
	}
	b := mustDial(t, ts.addr)
	if _, err := b.hello(srvBuild, "linux", "b"); err != nil {
		t.Fatal(err)
	}
	if err := b.send(syncproto.GetManifest{}); err != nil {
		t.Fatal(err)
	}
	_, err = b.r.Read()
	wantCode(t, err, syncproto.CodeBusy, "server is busy")
	busy := scrapeMetrics(t, url)
	if v := busy.value(t, "appserver_busy_refusals_total", "reason", busyTransfers); v != 1 {
		t.Errorf("busy_refusals_total{reason=transfers} = %v after one client was told busy; want 1", v)
	}
	if v := busy.value(t, "appserver_transfers_active"); v != 1 {
		t.Errorf("transfers_active = %v while a holds the slot; want 1", v)
	}
	if v := busy.value(t, "appserver_sessions_open"); v < 1 {
		t.Errorf("sessions_open = %v while a's session is open", v)
	}
	if v := busy.value(t, "appserver_bytes_sent_total"); v != sent {
		t.Errorf("bytes_sent_total moved from %v to %v with no file sent", sent, v)
	}
}

// waitMetrics scrapes url until ok holds of the scrape, for up to 5 s, and
// returns it.
func waitMetrics(t *testing.T, url string, ok func(scrape) bool) scrape {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := scrapeMetrics(t, url)
		if ok(s) || time.Now().After(deadline) {
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMetricsPublishAndPatches: a release published with `appserver
// publish` (Publish) beside the running server is timed when the server
// takes it up, appserver_release names it, and the patch the next one
// brings is counted when made.
func TestMetricsPublishAndPatches(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "linux_upd")
	writeTree(t, dir, map[string]string{"keep": "folder"}, oldTime)
	cfg := linuxConfig(t, dir)
	state := t.TempDir()
	exe1 := randomText(300<<10, 1)
	publishTree(t, cfg, state, pubBuild2, map[string]string{"bin/app": string(exe1)}, nil)
	ts := startServerIn(t, cfg, state, nil, nil)
	url := metricsURL(t, ts)
	// Serve takes the release up before its first client.
	first := waitMetrics(t, url, func(s scrape) bool {
		return s.count("appserver_publish_duration_seconds", "os", "linux") > 0 &&
			s.series("appserver_release", "os", "linux", "build", pubBuild2, "number", "1") != nil
	})
	if n := first.count("appserver_publish_duration_seconds", "os", "linux"); n != 1 {
		t.Errorf("publish_duration_seconds{os=linux} has %d observations after the server took up release 1; want 1", n)
	}
	if v := first.value(t, "appserver_release", "os", "linux", "build", pubBuild2, "number", "1"); v != 1 {
		t.Errorf("release{linux, 1} = %v", v)
	}
	if v := first.value(t, "appserver_patches_made_total"); v != 0 {
		t.Errorf("patches_made_total = %v with one release", v)
	}

	publishTree(t, cfg, state, pubBuild3, map[string]string{"bin/app": string(rebuilt(exe1, 2))}, nil)
	waitOffers(t, ts.addr, 1)
	second := scrapeMetrics(t, url)
	if n := second.count("appserver_publish_duration_seconds", "os", "linux"); n != 2 {
		t.Errorf("publish_duration_seconds{os=linux} has %d observations after release 2; want 2", n)
	}
	if second.series("appserver_release", "number", "1") != nil || second.value(t, "appserver_release", "os", "linux", "build", pubBuild3, "number", "2") != 1 {
		t.Errorf("appserver_release after release 2: %v", second["appserver_release"])
	}
	if v := second.value(t, "appserver_patches_made_total"); v != 1 {
		t.Errorf("patches_made_total = %v after the patch of release 2 was offered; want 1", v)
	}
	if n := second.count("appserver_patch_seconds"); n != 1 {
		t.Errorf("patch_seconds has %d observations; want 1", n)
	}
}

// TestMetricsClientsAndLogins: appserver_clients follows the function
// set by SetClientCounts, and its error leaves it out of a scrape that
// serves the rest; administrators' logins are counted by result.
func TestMetricsClientsAndLogins(t *testing.T) {
	ts, _ := selfUpdateServer(t, "7.00.240501A")
	url := metricsURL(t, ts)
	ts.srv.SetClientCounts(func(ctx context.Context) (map[[2]string]int, error) {
		return map[[2]string]int{{srvBuild, "linux"}: 480, {"7.00.231101A", "windows"}: 20}, nil
	})
	s := scrapeMetrics(t, url)
	if a, b := s.value(t, "appserver_clients", "build", srvBuild, "os", "linux"), s.value(t, "appserver_clients", "build", "7.00.231101A", "os", "windows"); a != 480 || b != 20 {
		t.Errorf("appserver_clients = %v, %v; want 480 and 20", a, b)
	}
	ts.srv.SetClientCounts(func(ctx context.Context) (map[[2]string]int, error) {
		return nil, errors.New("database is locked")
	})
	s = scrapeMetrics(t, url)
	if s.series("appserver_clients") != nil || s["appserver_syncs_total"] == nil {
		t.Errorf("with the counts failing: clients %v, syncs_total %v; want no clients and the rest served", s["appserver_clients"], s["appserver_syncs_total"])
	}
	if !strings.Contains(ts.logs.String(), "database is locked") {
		t.Errorf("the failing count was not logged:\n%s", ts.logs)
	}

	for _, password := range []string{"wrong horse", "wrong again", "correct horse"} {
		res := adminSession(t, ts.addr, password, syncproto.Admin{Op: syncproto.OpStatus}, nil)
		wantCode(t, res.err, syncproto.CodeDenied, "")
	}
	forgetFailures(ts)
	if res := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpStatus}, nil); res.err != nil {
		t.Fatal(res.err)
	}
	s = scrapeMetrics(t, url)
	for result, want := range map[string]float64{"failed": 2, "throttled": 1, "ok": 1} {
		if got := s.value(t, "appserver_admin_logins_total", "result", result); got != want {
			t.Errorf("admin_logins_total{result=%q} = %v; want %v", result, got, want)
		}
	}
}

// TestMetricsMemory shows what the registry costs a server: the heap it
// holds after New and a scrape, against a server made the same way
// without it, and the process's resident memory around them (logged).
func TestMetricsMemory(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"a": "a"}, oldTime)
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	ts := startServer(t, linuxConfig(t, dir), nil, nil)
	rssNone, hNone := residentKiB(), heap()
	scrapeMetrics(t, metricsURL(t, ts)) // the server's own, and promhttp's first use
	rss0, h0 := residentKiB(), heap()
	t.Logf("the first scrape of the server's registry (with an HTTP server and client) took the heap from %d KiB to %d KiB, the RSS from %d KiB to %d KiB", hNone>>10, h0>>10, rssNone, rss0)
	const n = 10
	var ms []*metrics
	for range n {
		m := registerMetrics(ts.srv)
		if _, err := m.reg.Gather(); err != nil { // a scrape
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	perRegistry := (int64(heap()) - int64(h0)) / n
	rss1 := residentKiB()
	runtime.KeepAlive(ms)
	t.Logf("a registry and its metrics hold %d KiB of heap once scraped; the process's RSS went from %d KiB to %d KiB for %d registries", perRegistry>>10, rss0, rss1, n)
	if perRegistry > 2<<20 {
		t.Errorf("a registry holds %d bytes of heap; want well under 2 MiB", perRegistry)
	}
}

// residentKiB is the process's resident memory (VmRSS), 0 where
// /proc/self/status cannot tell it.
func residentKiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kib int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kib)
			return kib
		}
	}
	return 0
}

// TestMetricsBusyReasons: the busy answers are counted by reason: a
// session over MaxStaySessions, a client over MaxConnections heard after
// its hello on the admin reserve, and one refused unheard once the
// reserve is full; appserver_stay_sessions counts the staying session.
func TestMetricsBusyReasons(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"smartclient": "client"}, oldTime)
	ts := startServer(t, linuxConfig(t, dir), func(s *Server) {
		s.MaxConnections, s.MaxPerAddress, s.MaxStaySessions = 3, 100, 1
		s.IdleTimeout, s.HandshakeTimeout = 10*time.Second, 5*time.Second
	}, nil)
	url := metricsURL(t, ts)
	stayClient(t, ts.addr, "a")
	over := stayClient(t, ts.addr, "over")
	if codes, err := over.readUntilClosed(); err != nil || len(codes) != 1 || codes[0] != syncproto.CodeBusy {
		t.Fatalf("a second staying session over MaxStaySessions=1: %v, %v; want CodeBusy", codes, err)
	}
	s := waitMetrics(t, url, func(s scrape) bool {
		return s.value(t, "appserver_busy_refusals_total", "reason", busyStay) > 0
	})
	if v := s.value(t, "appserver_busy_refusals_total", "reason", busyStay); v != 1 {
		t.Errorf("busy_refusals_total{reason=stay} = %v; want 1", v)
	}
	if v := s.value(t, "appserver_stay_sessions"); v != 1 {
		t.Errorf("stay_sessions = %v; want 1", v)
	}
	if v := s.value(t, "appserver_syncs_total", "outcome", "up-to-date"); v != 2 {
		t.Errorf("syncs_total{outcome=up-to-date} = %v after two reports; want 2", v)
	}

	// a and two more hold the 3 connections allowed.
	defer holdSessions(t, ts.addr, "127.0.0.1", 2)()
	waitHeld(t, ts, 3)
	c := dialFrom(t, ts.addr, "127.0.0.1")
	if err := c.send(syncproto.Hello{ClientBuild: srvBuild, OS: "linux", ClientID: "over-cap"}); err != nil {
		t.Fatal(err)
	}
	if err := busyAnswer(c); err != nil {
		t.Fatalf("client over the cap, reserve free: %v", err)
	}
	if v := scrapeMetrics(t, url).value(t, "appserver_busy_refusals_total", "reason", busyConnections); v != 1 {
		t.Errorf("busy_refusals_total{reason=connections} = %v after one client over the cap; want 1", v)
	}
	c.readUntilClosed()
	for range adminReserve {
		dialFrom(t, ts.addr, "127.0.0.1")
	}
	waitHeld(t, ts, 3+adminReserve)
	if err := busyAnswer(dialFrom(t, ts.addr, "127.0.0.1")); err != nil {
		t.Fatalf("silent client over the cap, reserve full: %v", err)
	}
	// The refused connection is held until its answer is written.
	s = waitMetrics(t, url, func(s scrape) bool { return s.value(t, "appserver_sessions_open") == 3+adminReserve })
	if v := s.value(t, "appserver_busy_refusals_total", "reason", busyConnections); v != 2 {
		t.Errorf("busy_refusals_total{reason=connections} = %v after a second client over the cap; want 2", v)
	}
	if v := s.value(t, "appserver_sessions_open"); v != 3+adminReserve {
		t.Errorf("sessions_open = %v; want the %d held", v, 3+adminReserve)
	}
	for _, r := range []string{busyTransfers, busyTakenBack, busyUpdating} {
		if v := s.value(t, "appserver_busy_refusals_total", "reason", r); v != 0 {
			t.Errorf("busy_refusals_total{reason=%q} = %v; want 0", r, v)
		}
	}
}
