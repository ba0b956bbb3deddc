package appserver

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/erpupdate/smartsync/syncproto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The server's metrics, in the Prometheus format (see MetricsHandler).
// Each Server has a registry of its own: two servers in one process (the
// tests) never mix their counts, and nothing is registered globally.
//
// What the server does is counted where it happens, by one call to a
// method of metrics (which a nil *metrics ignores); what it holds (the
// sessions open, the transfers under way, the releases served) is read
// from the server when /metrics is scraped.

// syncOutcomes are the values of appserver_syncs_total's outcome label,
// shown at 0 before the first sync of each: the outcomes a client reports
// (see syncproto.Outcome), and "interrupted".
var syncOutcomes = []string{"updated", "up-to-date", "failed", "declined", "checked", "interrupted"}

// The reasons of appserver_busy_refusals_total: every answer that sends a
// client away to come back later.
const (
	busyConnections = "connections" // over [LIMITS] MaxConnections or MaxPerAddress
	busyTransfers   = "transfers"   // every transfer slot ([UPDATE] MaxTransfers) taken
	busyStay        = "stay"        // [LIMITS] MaxStaySessions staying sessions held
	busyTakenBack   = "taken_back"  // a transfer slot taken back from a client without progress
	busyUpdating    = "updating"    // the server is updating itself
)

var busyReasons = []string{busyConnections, busyTransfers, busyStay, busyTakenBack, busyUpdating}

// The results of appserver_admin_logins_total.
var loginResults = []string{"ok", "failed", "throttled"}

// ClientCounts returns how many clients are on each build and OS, keyed by
// [2]string{build, os}, for the appserver_clients gauge.
type ClientCounts func(ctx context.Context) (map[[2]string]int, error)

// clientCountsTimeout bounds a ClientCounts call made for a scrape.
const clientCountsTimeout = 5 * time.Second

type metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	syncs       *prometheus.CounterVec
	bytesSent   prometheus.Counter
	busy        *prometheus.CounterVec
	indexTime   *prometheus.HistogramVec
	publishTime *prometheus.HistogramVec
	patchesMade prometheus.Counter
	patchTime   prometheus.Histogram
	hashHits    prometheus.Counter
	hashMisses  prometheus.Counter
	logins      *prometheus.CounterVec

	clients atomic.Pointer[ClientCounts]
}

// Buckets of the durations, in seconds: a scan of an update folder whose
// hashes are cached takes milliseconds, one that hashes a release of 2 GB
// a minute or more; a patch of a large file some seconds.
var (
	indexBuckets = prometheus.ExponentialBuckets(0.005, 4, 9) // 5 ms to 5.5 min
	patchBuckets = prometheus.ExponentialBuckets(0.01, 4, 8)  // 10 ms to 2.7 min
)

// newMetrics makes the registry of s (see registerMetrics) and sets the
// hooks the server's parts count through: patches made, administrators'
// logins. It is called by New before the update folders are indexed.
func newMetrics(s *Server) *metrics {
	m := registerMetrics(s)
	s.patches.observe = m.patchMade
	s.logins.Observe = m.adminLogin
	return m
}

// registerMetrics makes a registry with the Go runtime's and the
// process's collectors and the server's metrics, which read s when
// scraped.
func registerMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), log: s.log}
	m.syncs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "appserver_syncs_total",
		Help: "Syncs by the outcome the client reported.",
	}, []string{"outcome"})
	m.bytesSent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "appserver_bytes_sent_total",
		Help: "Bytes sent on the wire for the files of syncs (compressed as sent, with their frames), counted when a session's files are sent or it ends.",
	})
	m.busy = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "appserver_busy_refusals_total",
		Help: "Clients told to come back later, by reason: connections (MaxConnections, MaxPerAddress), transfers (MaxTransfers), stay (MaxStaySessions), taken_back (a transfer without progress), updating (the server updates itself).",
	}, []string{"reason"})
	m.indexTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "appserver_index_duration_seconds",
		Help:    "Time taken by a scan of an update folder (a stat of every file, and a hash of those the hash cache does not know), by OS.",
		Buckets: indexBuckets,
	}, []string{"os"})
	m.publishTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "appserver_publish_duration_seconds",
		Help:    "Time taken by the server to take up a release published with `appserver publish` (read its record, compare the update folder) until it serves it, by OS.",
		Buckets: indexBuckets,
	}, []string{"os"})
	m.patchesMade = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "appserver_patches_made_total",
		Help: "Patches made from the release history and kept (a patch not smaller enough than its file is not kept).",
	})
	m.patchTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "appserver_patch_seconds",
		Help:    "Time taken to make one patch from the release history, kept or not.",
		Buckets: patchBuckets,
	})
	m.hashHits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "appserver_hashcache_hits_total",
		Help: "Files of the update folders' scans whose hash came from the hash cache.",
	})
	m.hashMisses = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "appserver_hashcache_misses_total",
		Help: "Files of the update folders' scans that were hashed (new or changed since the cache was written).",
	})
	m.logins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "appserver_admin_logins_total",
		Help: "Administrators' logins, by result: ok, failed (wrong user, password or token), throttled (refused unchecked after failures from the address).",
	}, []string{"result"})
	for _, o := range syncOutcomes {
		m.syncs.WithLabelValues(o)
	}
	for _, r := range busyReasons {
		m.busy.WithLabelValues(r)
	}
	for _, r := range loginResults {
		m.logins.WithLabelValues(r)
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.syncs, m.bytesSent, m.busy, m.indexTime, m.publishTime, m.patchesMade, m.patchTime,
		m.hashHits, m.hashMisses, m.logins,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "appserver_sessions_open",
			Help: "Client connections the server holds: syncing, staying to hear of a restart, or administrators'.",
		}, func() float64 {
			s.mu.Lock()
			defer s.mu.Unlock()
			return float64(len(s.conns))
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "appserver_stay_sessions",
			Help: "Sessions kept open after their sync to hear of a server restart ([LIMITS] MaxStaySessions caps them).",
		}, func() float64 {
			s.upd.mu.Lock()
			defer s.upd.mu.Unlock()
			return float64(len(s.upd.stayers))
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "appserver_transfers_active",
			Help: "Transfers under way, each holding a transfer slot.",
		}, func() float64 { return float64(s.AdmissionStats().Transfers) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "appserver_transfers_waiting",
			Help: "Sessions waiting for a transfer slot.",
		}, func() float64 { return float64(s.AdmissionStats().Waiting) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "appserver_transfer_slots",
			Help: "Transfers allowed at once (from [UPDATE] MaxTransfers and MaxBytesPerSecond).",
		}, func() float64 { return float64(s.AdmissionStats().MaxTransfers) }),
		&serverCollector{s: s},
		&clientsCollector{m: m},
	)
	return m
}

// MetricsHandler returns the handler of /metrics: the server's metrics in
// the Prometheus text format (or OpenMetrics, when asked for). A metric
// that cannot be read (the client records' database locked) is left out
// and logged; the others are served.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{
		ErrorLog:            promLog{s.log},
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            s.metrics.reg, // promhttp_metric_handler_errors_total
		MaxRequestsInFlight: 4,
		Timeout:             30 * time.Second,
		EnableOpenMetrics:   true,
	})
}

// SetClientCounts sets the function appserver_clients is read from at
// each scrape (the client records); until it is set, or when it is nil,
// appserver_clients has no series.
func (s *Server) SetClientCounts(f ClientCounts) {
	if f == nil {
		s.metrics.clients.Store(nil)
		return
	}
	s.metrics.clients.Store(&f)
}

// promLog writes promhttp's errors to the server's log.
type promLog struct{ log *slog.Logger }

func (l promLog) Println(v ...any) {
	l.log.Warn("serving /metrics", "err", fmt.Sprint(v...))
}

// sync counts a sync whose outcome is known: a Report's (see
// syncproto.Outcome's String), or "interrupted". Any other is counted
// as "other".
func (m *metrics) sync(outcome string) {
	if m == nil {
		return
	}
	if !slices.Contains(syncOutcomes, outcome) {
		outcome = "other"
	}
	m.syncs.WithLabelValues(outcome).Inc()
}

// sentSince counts the bytes w sent since it had sent from; it is
// deferred by the send of a session's files.
func (m *metrics) sentSince(w *syncproto.Writer, from int64) {
	if m == nil || w.N < from {
		return
	}
	m.bytesSent.Add(float64(w.N - from))
}

// refused counts a client told busy for reason (one of busyReasons).
func (m *metrics) refused(reason string) {
	if m == nil {
		return
	}
	m.busy.WithLabelValues(reason).Inc()
}

// ended counts, at the end of a session, the busy answers decided by its
// outcome: the admin reserve's and the transfer slots' (outcomeBusy),
// the stay's, the self-update's, and a slot taken back.
func (m *metrics) ended(ss *session) {
	switch {
	case ss.takenBack.Load() != nil:
		m.refused(busyTakenBack)
	case ss.outcome == outcomeBusy && ss.adminOnly:
		m.refused(busyConnections)
	case ss.outcome == outcomeBusy:
		m.refused(busyTransfers)
	case ss.outcome == outcomeStayFull:
		m.refused(busyStay)
	case ss.outcome == outcomeUpdating:
		m.refused(busyUpdating)
	}
}

// The outcomes of sessions refused by the stay's cap and by a self-update
// (see stay and converse), which ended tells apart; they are logged.
const (
	outcomeStayFull = "stay refused: full"
	outcomeUpdating = "refused: updating"
)

// Scanned counts a scan of an update folder (see index.Observer).
func (m *metrics) Scanned(osName string, took time.Duration, hits, misses int) {
	if m == nil {
		return
	}
	m.indexTime.WithLabelValues(osName).Observe(took.Seconds())
	m.hashHits.Add(float64(hits))
	m.hashMisses.Add(float64(misses))
}

// published counts a published release taken up for osName, loaded in
// took.
func (m *metrics) published(osName string, took time.Duration) {
	if m == nil {
		return
	}
	m.publishTime.WithLabelValues(osName).Observe(took.Seconds())
}

// patchMade counts a patch made in took (see patcher.run): kept, or not
// worth keeping; one that failed counts for its time only.
func (m *metrics) patchMade(took time.Duration, kept bool, err error) {
	m.patchTime.Observe(took.Seconds())
	if err == nil && kept {
		m.patchesMade.Inc()
	}
}

// adminLogin counts an administrator's login by its result (see
// loginResults).
func (m *metrics) adminLogin(result string) { m.logins.WithLabelValues(result).Inc() }

// serverCollector exports what the server serves, read at each scrape:
// appserver_build_info and appserver_release.
type serverCollector struct{ s *Server }

var (
	buildInfoDesc = prometheus.NewDesc("appserver_build_info",
		"Always 1: the build the server serves ([UPDATE] Build) and the protocol version it speaks.",
		[]string{"build", "protocol"}, nil)
	releaseDesc = prometheus.NewDesc("appserver_release",
		"Always 1: the release served to each OS, its build and number (0: the update folder, no published release).",
		[]string{"os", "build", "number"}, nil)
)

func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- buildInfoDesc
	ch <- releaseDesc
}

func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	sv := c.s.cur.Load()
	if sv == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(buildInfoDesc, prometheus.GaugeValue, 1,
		sv.cfg.Build.String(), strconv.Itoa(int(syncproto.Version)))
	for osName, ix := range sv.indexes {
		build, number := "", uint64(0)
		if man := ix.Latest(); man != nil {
			build = man.Build
		}
		if r := c.s.pub.current(osName); r != nil {
			build, number = r.rec.Build, r.rec.Number
		}
		ch <- prometheus.MustNewConstMetric(releaseDesc, prometheus.GaugeValue, 1,
			osName, build, strconv.FormatUint(number, 10))
	}
}

// clientsCollector exports appserver_clients from the function set by
// SetClientCounts.
type clientsCollector struct{ m *metrics }

var clientsDesc = prometheus.NewDesc("appserver_clients",
	"Clients known to the server, by the build they last reported and their OS.",
	[]string{"build", "os"}, nil)

func (c *clientsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- clientsDesc }

func (c *clientsCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.m.clients.Load()
	if f == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), clientCountsTimeout)
	defer cancel()
	counts, err := (*f)(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(clientsDesc, fmt.Errorf("counting the clients by build and OS: %w", err))
		return
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(clientsDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
}

// current returns the published release served to osName, or nil when
// its update folder is served (none published, or edited by hand since).
func (p *published) current(osName string) *storedRelease {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	o := p.byOS[osName]
	if o == nil || o.rel == nil || o.folderWins {
		return nil
	}
	return o.rel
}
