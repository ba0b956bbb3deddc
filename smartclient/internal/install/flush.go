package install

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// flushEvery is how much staged data the download writes between two
// background syncs of the file system (see Flusher).
const flushEvery = 128 << 20

// Flusher syncs the file system in the background while the download goes
// on, once every flushEvery bytes staged, so that the one sync before the
// switch, which the invariants ask for, finds little left to write
// instead of the whole update (1.2 s for 1 GB here, on a machine whose
// memory holds all of it unwritten). It is only a head start: durability
// still comes from that sync. A background sync that fails fails the
// download, since a later sync might not report the same error.
type Flusher struct {
	d       *Disk
	every   int64 // flushEvery, but for tests
	pending atomic.Int64
	busy    atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	err     error
}

// NewFlusher returns a Flusher of d's file system, or nil where there is
// no background sync (see BackgroundSync); a nil Flusher does nothing.
func NewFlusher(d *Disk) *Flusher {
	if !BackgroundSync {
		return nil
	}
	return &Flusher{d: d, every: flushEvery}
}

// Wrote counts n bytes staged, and starts a sync when enough are pending
// and none is running.
func (fl *Flusher) Wrote(n int64) {
	if fl == nil || fl.pending.Add(n) < fl.every || !fl.busy.CompareAndSwap(false, true) {
		return
	}
	fl.pending.Store(0)
	fl.wg.Go(func() {
		defer fl.busy.Store(false)
		if err := fl.d.SyncStaged(); err != nil {
			fl.mu.Lock()
			if fl.err == nil {
				fl.err = fmt.Errorf("syncing staged files: %w", err)
			}
			fl.mu.Unlock()
		}
	})
}

// Wait waits for a running sync, and returns the first error of any.
func (fl *Flusher) Wait() error {
	if fl == nil {
		return nil
	}
	fl.wg.Wait()
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.err
}
