package main

import (
	"bytes"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// Profiles for measuring (BENCHMARKS.md), opt-in by environment variable;
// a "%p" in the file name becomes the process id, so that the clients of a
// benchmark run write files of their own:
//
//   - SMARTSYNC_CPUPROFILE=FILE writes a CPU profile of the whole run.
//   - SMARTSYNC_MEMPROFILE=FILE writes the heap profile as it stood when the
//     live heap (after a collection) was largest, sampled every 5 ms, and
//     FILE.status, the process's /proc/self/status at its exit (VmHWM,
//     RssAnon, RssFile) where there is one.
//   - SMARTSYNC_STATUSFILE=FILE writes only /proc/self/status at the exit,
//     without the profiles' own cost in memory (pprof's symbol tables).
//
// Neither is set in normal use, and a file that cannot be written is
// ignored: a profile never fails a sync.

// startProfiles starts what the environment asks for and returns the
// function that finishes it, to call before the process exits.
func startProfiles() (stop func()) {
	var stops []func()
	if name := profileName("SMARTSYNC_CPUPROFILE"); name != "" {
		if f, err := os.Create(name); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				stops = append(stops, func() { pprof.StopCPUProfile(); f.Close() })
			} else {
				f.Close()
			}
		}
	}
	if name := profileName("SMARTSYNC_MEMPROFILE"); name != "" {
		stops = append(stops, peakHeap(name))
	}
	if name := profileName("SMARTSYNC_STATUSFILE"); name != "" {
		stops = append(stops, func() {
			status, _ := os.ReadFile("/proc/self/status")
			_ = os.WriteFile(name, status, 0o644)
		})
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}

func profileName(env string) string {
	return strings.ReplaceAll(os.Getenv(env), "%p", strconv.Itoa(os.Getpid()))
}

// peakHeap keeps the heap profile of the largest live heap seen and writes
// it, with the process's status, when stopped.
func peakHeap(name string) (stop func()) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var peak uint64
	var best bytes.Buffer
	snap := func() {
		metrics.Read(sample)
		if v := sample[0].Value; v.Kind() == metrics.KindUint64 && v.Uint64() > peak {
			peak = v.Uint64()
			best.Reset()
			_ = pprof.Lookup("heap").WriteTo(&best, 0)
		}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				snap()
			}
		}
	}()
	return func() {
		close(quit)
		<-done
		snap()
		_ = os.WriteFile(name, best.Bytes(), 0o644)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		status, _ := os.ReadFile("/proc/self/status")
		extra := "peak live heap " + strconv.FormatUint(peak, 10) +
			"\nMemStats Sys " + strconv.FormatUint(ms.Sys, 10) +
			" HeapSys " + strconv.FormatUint(ms.HeapSys, 10) +
			" HeapReleased " + strconv.FormatUint(ms.HeapReleased, 10) +
			" StackSys " + strconv.FormatUint(ms.StackSys, 10) +
			" NumGC " + strconv.FormatUint(uint64(ms.NumGC), 10) + "\n"
		_ = os.WriteFile(name+".status", append(status, extra...), 0o644)
	}
}
