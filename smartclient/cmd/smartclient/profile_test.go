package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestProfiles: the environment variables write a CPU profile, the peak
// heap profile with the process's status, and the status alone, each a
// file of its own with "%p" made the process id; an unwritable name is
// ignored.
func TestProfiles(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SMARTSYNC_CPUPROFILE", filepath.Join(dir, "cpu-%p"))
	t.Setenv("SMARTSYNC_MEMPROFILE", filepath.Join(dir, "heap-%p"))
	t.Setenv("SMARTSYNC_STATUSFILE", filepath.Join(dir, "status-%p"))
	stop := startProfiles()
	var keep [][]byte
	for range 64 {
		keep = append(keep, bytes.Repeat([]byte{1}, 64<<10))
	}
	runtime.GC()
	stop()
	runtime.KeepAlive(keep)
	pid := strconv.Itoa(os.Getpid())
	gz := []byte{0x1f, 0x8b} // pprof's files are gzipped protocol buffers
	for _, name := range []string{"cpu-" + pid, "heap-" + pid} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, gz) {
			t.Errorf("%s: not a pprof profile (starts %q)", name, data[:min(len(data), 8)])
		}
	}
	for _, name := range []string{"heap-" + pid + ".status", "status-" + pid} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if runtime.GOOS == "linux" && !strings.Contains(string(data), "VmHWM:") {
			t.Errorf("%s: no VmHWM line:\n%s", name, data)
		}
	}
	peak, _ := os.ReadFile(filepath.Join(dir, "heap-"+pid+".status"))
	if !strings.Contains(string(peak), "peak live heap ") {
		t.Errorf("heap status without the peak live heap:\n%s", peak)
	}

	t.Setenv("SMARTSYNC_CPUPROFILE", filepath.Join(dir, "none", "cpu"))
	t.Setenv("SMARTSYNC_MEMPROFILE", filepath.Join(dir, "none", "heap"))
	t.Setenv("SMARTSYNC_STATUSFILE", filepath.Join(dir, "none", "status"))
	startProfiles()() // must not panic
	if _, err := os.Stat(filepath.Join(dir, "none")); err == nil {
		t.Error("a folder was made for unwritable profiles")
	}
}
