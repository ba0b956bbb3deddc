package smartclient

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/manifest"
)

// ErrSlowTransfer marks a transfer that the server fed below the minimum
// rate, or that outlasted its deadline: slow retrieval, the attack (or the
// failure) of a server that sends one small chunk just before each
// message's timeout, and so holds the sync, and 'run' behind it, for ever.
var ErrSlowTransfer = errors.New("smartclient: the transfer is too slow")

// The defaults of the transfer's bounds (see Options.MinRate).
const (
	// DefaultMinRate is a quarter of a 1 Mbit/s branch line (125 KB/s):
	// such a line passes with room for the other traffic it carries.
	DefaultMinRate = 32 << 10
	// DefaultRateWindow is long enough that a slow disk moment on the
	// server, or a burst of other traffic on the line, does not trip the
	// rate; the first window of the transfer is its grace.
	DefaultRateWindow = 60 * time.Second
	// deadlineMargin is added to the time the bytes to fetch take at the
	// minimum rate to make the default deadline.
	deadlineMargin = 10 * time.Minute
)

// transferBounds are the minimum rate and the deadline of one transfer,
// defaults filled in.
type transferBounds struct {
	minRate  int64 // bytes a second; 0: not checked
	window   time.Duration
	deadline time.Duration // 0: none
	manifest bool          // the bounds of the manifest, whose bytes are not counted
}

// boundsOf fills in the defaults of o's bounds for a transfer of total
// bytes. A negative MinRate or Deadline turns that bound off.
func boundsOf(o Options, total int64) transferBounds {
	b := transferBounds{minRate: o.MinRate, window: o.RateWindow, deadline: o.Deadline}
	if b.minRate == 0 {
		b.minRate = DefaultMinRate
	}
	if b.window <= 0 {
		b.window = DefaultRateWindow
	}
	if b.deadline == 0 {
		// What the bytes take at the minimum rate, plus a margin for
		// the start and the files' writing: a transfer that keeps the
		// rate ends within it, so the deadline stops only a server
		// that alternates bursts with silences.
		rate := b.minRate
		if rate <= 0 {
			rate = DefaultMinRate
		}
		b.deadline = time.Duration(total/rate)*time.Second + deadlineMargin
	}
	b.minRate, b.deadline = max(b.minRate, 0), max(b.deadline, 0)
	return b
}

// rateGuard watches a transfer from beside it: every fifth of the window
// it compares what arrived over the last window with the minimum, and the
// time spent with the deadline, and when either fails it records why and
// calls stop, which makes the blocked read fail at once.
type rateGuard struct {
	b     transferBounds
	n     atomic.Int64 // bytes of files received (and copied) so far
	start time.Time
	stop  func()
	done  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	err   error
}

// startGuard starts watching a transfer; stop interrupts it.
func startGuard(b transferBounds, stop func()) *rateGuard {
	g := &rateGuard{b: b, start: time.Now(), stop: stop, done: make(chan struct{})}
	if b.minRate == 0 && b.deadline == 0 {
		return g
	}
	g.wg.Add(1)
	go g.watch()
	return g
}

// add counts n bytes received.
func (g *rateGuard) add(n int64) { g.n.Add(n) }

// sample is the count of bytes at a moment.
type sample struct {
	at time.Time
	n  int64
}

func (g *rateGuard) watch() {
	defer g.wg.Done()
	tick := time.NewTicker(g.b.window / 5)
	defer tick.Stop()
	var dl <-chan time.Time
	if g.b.deadline > 0 {
		t := time.NewTimer(g.b.deadline)
		defer t.Stop()
		dl = t.C
	}
	samples := []sample{{g.start, 0}}
	for {
		select {
		case <-g.done:
			return
		case <-dl:
			if g.b.manifest {
				g.fail(fmt.Errorf("%w: the manifest did not come within its deadline of %s", ErrSlowTransfer, g.b.deadline))
			} else {
				g.fail(fmt.Errorf("%w: the transfer did not end within its deadline of %s (%s received)",
					ErrSlowTransfer, g.b.deadline, humanBytes(g.n.Load())))
			}
			return
		case now := <-tick.C:
			samples = append(samples, sample{now, g.n.Load()})
			if g.b.minRate == 0 {
				continue
			}
			// The oldest sample at least a window old; none during the
			// first window, the grace of a transfer that starts.
			k := -1
			for i, s := range samples {
				if now.Sub(s.at) >= g.b.window {
					k = i
				}
			}
			if k < 0 {
				continue
			}
			samples = samples[k:]
			got, over := samples[len(samples)-1].n-samples[0].n, now.Sub(samples[0].at)
			if float64(got) < float64(g.b.minRate)*over.Seconds() {
				g.fail(fmt.Errorf("%w: the server sent %s in the last %s, below the minimum of %s/s",
					ErrSlowTransfer, humanBytes(got), over.Round(time.Millisecond), humanBytes(g.b.minRate)))
				return
			}
		}
	}
}

func (g *rateGuard) fail(err error) {
	g.mu.Lock()
	g.err = err
	g.mu.Unlock()
	g.stop()
}

// end stops watching and returns why the guard stopped the transfer, nil
// if it did not.
func (g *rateGuard) end() error {
	select {
	case <-g.done:
	default:
		close(g.done)
	}
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// guardedProgress counts the bytes of a transfer for its guard and passes
// them on.
type guardedProgress struct {
	Progress
	g *rateGuard
}

func (p guardedProgress) Add(n int64) {
	p.g.add(n)
	p.Progress.Add(n)
}

// manifestBounds bound the reading of the manifest: o.Deadline when set,
// else deadlineMargin. Its size is not known before it comes, so no
// deadline can grow with it, and no rate is checked: the server may take
// a while to index a changed folder before the first entry.
func manifestBounds(o Options) transferBounds {
	b := transferBounds{window: DefaultRateWindow, deadline: o.Deadline, manifest: true}
	if b.deadline == 0 {
		b.deadline = deadlineMargin
	}
	b.deadline = max(b.deadline, 0)
	return b
}

// readManifestBounded is readManifest within manifestBounds: a server
// that trickles the manifest holds the sync no longer than a trickled
// transfer does.
func (a *attempt) readManifestBounded() error {
	guard := startGuard(manifestBounds(a.o), a.c.Interrupt)
	return a.endGuard(guard, a.readManifest(), "reading the manifest")
}

// endGuard stops the guard of a step that returned err, and returns the
// guard's reason when it interrupted the step, naming the step; an
// interrupt that came as the step ended well (err nil, or the server's
// "up to date") is undone, and the session goes on.
func (a *attempt) endGuard(g *rateGuard, err error, step string) error {
	gerr := g.end()
	switch {
	case gerr == nil:
		return err
	case err == nil || errors.Is(err, manifest.ErrUpToDate):
		a.c.Resume()
		return err
	}
	// The guard's reason, not the interrupted read's, is the sync's.
	return fmt.Errorf("%s: %w", step, gerr)
}
