package smartclient

import (
	"math"
	"os"
	"runtime/debug"
	"sync/atomic"
)

// The client's memory. A sync of 20,000 files holds about 12 MB of live
// heap at its peak (its state, the manifest and, at the switch, the next
// state), and Go's collector lets the heap grow to twice that before it
// runs, and returns freed pages to the system lazily: such a sync took
// 39-41 MiB. With a soft limit of 28 MiB the collector runs earlier and
// returns pages sooner, and the same syncs took 30-31 MiB with no more
// CPU (BENCHMARKS.md). The limit grows with the number of files, so that a
// large install never makes the collector run back to back.

// limiting is set by LimitMemory.
var limiting atomic.Bool

// LimitMemory sets the process's soft memory limit for a sync (see
// memoryLimit), unless GOMEMLIMIT sets one. The smartclient command calls
// it; the package's tests do not, since their syncs share one process.
func LimitMemory() {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limiting.Store(true)
	debug.SetMemoryLimit(memoryLimit(0))
}

// sizeMemory raises the limit, once LimitMemory has set one, for a sync of
// files files.
func sizeMemory(files int) {
	if limiting.Load() {
		debug.SetMemoryLimit(memoryLimit(files))
	}
}

// memoryLimit is the soft limit for a sync of files files: 28 MiB, or 8 MiB
// and 1 KiB a file (above the 600 bytes a file that a sync holds at its
// peak), whichever is more.
func memoryLimit(files int) int64 {
	const floor, base, perFile = 28 << 20, 8 << 20, 1 << 10
	if files > (math.MaxInt64-base)/perFile {
		return math.MaxInt64
	}
	return max(floor, base+perFile*int64(files))
}
