// Command zpatchmeasure measures package zpatch on two releases of a tree:
// for every file at the same path in both with different content, it
// makes the bounded patch (zpatch.Make), checks that zpatch.Apply rebuilds
// the new file, and compares the patch's size with one zstd frame whose
// raw dictionary is the whole old file (klauspost/compress, at the same
// level and at SpeedBestCompression) and with `zstd -19 --patch-from` when
// the zstd program is installed. It then makes and applies the patch of
// the largest changed file in a child process of its own, and reports
// each child's peak RSS and peak live heap.
//
// The Go toolchain distributions 1.25.0 and 1.25.1 are the data of issue
// 23:
//
//	cd $(mktemp -d)
//	go mod download -json golang.org/toolchain@v0.0.1-go1.25.0.linux-amd64  # gives "Zip"
//	go mod download -json golang.org/toolchain@v0.0.1-go1.25.1.linux-amd64
//	mkdir -p /tmp/zp-data/v0 /tmp/zp-data/v1
//	(cd /tmp/zp-data/v0 && unzip -q ZIP0); (cd /tmp/zp-data/v1 && unzip -q ZIP1)
//	go run ./scripts/zpatchmeasure \
//	  -old /tmp/zp-data/v0/golang.org/toolchain@v0.0.1-go1.25.0.linux-amd64 \
//	  -new /tmp/zp-data/v1/golang.org/toolchain@v0.0.1-go1.25.1.linux-amd64
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/bits"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/erpupdate/smartsync/internal/zpatch"
	"github.com/klauspost/compress/zstd"
)

func main() {
	var (
		oldDir  = flag.String("old", "", "root of the old release")
		newDir  = flag.String("new", "", "root of the new release")
		level   = flag.Int("level", 0, "zstd level of the bounded patch: 0 default, 1 fastest .. 4 best")
		segment = flag.Int("segment", 0, "segment bytes (0: zpatch.MaxSegment)")
		window  = flag.Int("window", 0, "window bytes (0: zpatch.MaxWindow)")
		whole   = flag.Bool("whole", true, "also measure one frame with the whole old file as dictionary")
		cli     = flag.Bool("cli", true, "also measure zstd -19 --patch-from when zstd is installed")
		child   = flag.String("child", "", "internal: make or apply one file (-old and -new are files, -patch the patch)")
		patchF  = flag.String("patch", "", "internal: the patch file of -child")
	)
	flag.Parse()
	o := zpatch.Options{Level: zstd.EncoderLevel(*level), Segment: *segment, Window: *window}
	if *child != "" {
		if err := runChild(*child, *oldDir, *newDir, *patchF, o); err != nil {
			fmt.Fprintln(os.Stderr, "zpatchmeasure:", err)
			os.Exit(1)
		}
		return
	}
	if *oldDir == "" || *newDir == "" {
		fmt.Fprintln(os.Stderr, "zpatchmeasure: -old and -new are required")
		os.Exit(2)
	}
	if err := run(*oldDir, *newDir, o, *whole, *cli, *level); err != nil {
		fmt.Fprintln(os.Stderr, "zpatchmeasure:", err)
		os.Exit(1)
	}
}

// changed returns the paths, relative to the roots, of the regular files
// in both trees whose content differs, largest first.
func changed(oldDir, newDir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(newDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(newDir, p)
		a, err := os.ReadFile(filepath.Join(oldDir, rel))
		if err != nil {
			return nil // new file
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(a, b) {
			out = append(out, rel)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool {
		a, _ := os.Stat(filepath.Join(newDir, out[i]))
		b, _ := os.Stat(filepath.Join(newDir, out[j]))
		return a.Size() > b.Size()
	})
	return out, err
}

func run(oldDir, newDir string, o zpatch.Options, whole, cli bool, level int) error {
	ctx := context.Background()
	files, err := changed(oldDir, newDir)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no changed files between %s and %s", oldDir, newDir)
	}
	_, zerr := exec.LookPath("zstd")
	cli = cli && zerr == nil
	tmp, err := os.MkdirTemp("", "zpatchmeasure")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	var tNew, tOld, tPatch, tWhole, tWholeBest, tCLI int64
	var makeTime, wholeTime, wholeBestTime time.Duration
	fmt.Printf("%-40s %10s %10s %10s %10s %10s\n", "file", "new", "bounded", "whole", "whole-best", "zstd-cli")
	for _, rel := range files {
		oldB, err := os.ReadFile(filepath.Join(oldDir, rel))
		if err != nil {
			return err
		}
		newB, err := os.ReadFile(filepath.Join(newDir, rel))
		if err != nil {
			return err
		}
		var patch bytes.Buffer
		start := time.Now()
		if err := zpatch.Make(ctx, &patch, bytes.NewReader(oldB), int64(len(oldB)), bytes.NewReader(newB), int64(len(newB)), o); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		makeTime += time.Since(start)
		var got bytes.Buffer
		if err := zpatch.Apply(ctx, &got, bytes.NewReader(oldB), int64(len(oldB)), bytes.NewReader(patch.Bytes()), int64(len(newB))); err != nil {
			return fmt.Errorf("%s: apply: %w", rel, err)
		}
		if !bytes.Equal(got.Bytes(), newB) {
			return fmt.Errorf("%s: apply rebuilt a different file", rel)
		}
		tNew += int64(len(newB))
		tOld += int64(len(oldB))
		tPatch += int64(patch.Len())
		w, wb, c := "-", "-", "-"
		if whole {
			lv := zstd.EncoderLevel(level)
			if lv == 0 {
				lv = zstd.SpeedBetterCompression
			}
			start = time.Now()
			n := wholeFrame(oldB, newB, lv)
			wholeTime += time.Since(start)
			start = time.Now()
			nb := wholeFrame(oldB, newB, zstd.SpeedBestCompression)
			wholeBestTime += time.Since(start)
			tWhole += int64(n)
			tWholeBest += int64(nb)
			w, wb = strconv.Itoa(n), strconv.Itoa(nb)
		}
		if cli {
			out := filepath.Join(tmp, "p.zst")
			cmd := exec.Command("zstd", "-q", "-f", "-19", "--patch-from="+filepath.Join(oldDir, rel), filepath.Join(newDir, rel), "-o", out)
			if b, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%s: zstd: %v: %s", rel, err, b)
			}
			st, err := os.Stat(out)
			if err != nil {
				return err
			}
			tCLI += st.Size()
			c = strconv.FormatInt(st.Size(), 10)
		}
		fmt.Printf("%-40s %10d %10d %10s %10s %10s\n", trim(rel, 40), len(newB), patch.Len(), w, wb, c)
	}
	fmt.Printf("%-40s %10d %10d %10d %10d %10d\n", fmt.Sprintf("TOTAL (%d files)", len(files)), tNew, tPatch, tWhole, tWholeBest, tCLI)
	mb := float64(tNew) / 1e6
	fmt.Printf("make: %.2f s for %.1f MB of new files: %.0f ms/MB (level %d, segment %d, window %d)\n",
		makeTime.Seconds(), mb, float64(makeTime.Milliseconds())/mb, o.Level, o.Segment, o.Window)
	if whole {
		fmt.Printf("whole-file dictionary: %.0f ms/MB at the same level, %.0f ms/MB at SpeedBestCompression\n",
			float64(wholeTime.Milliseconds())/mb, float64(wholeBestTime.Milliseconds())/mb)
	}

	// Memory, in child processes, on the largest file.
	rel := files[0]
	oldF, newF := filepath.Join(oldDir, rel), filepath.Join(newDir, rel)
	pf := filepath.Join(tmp, "patch")
	for _, mode := range []string{"make", "apply"} {
		args := []string{"-child", mode, "-old", oldF, "-new", newF, "-patch", pf,
			"-level", strconv.Itoa(int(o.Level)), "-segment", strconv.Itoa(o.Segment), "-window", strconv.Itoa(o.Window)}
		cmd := exec.Command(os.Args[0], args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("child %s: %v: %s", mode, err, out.Bytes())
		}
		fmt.Printf("%s of %s (%d bytes): %s", mode, rel, size(newF), out.String())
	}
	return nil
}

func size(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return -1
	}
	return st.Size()
}

func trim(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n+1:]
}

// wholeFrame returns the size of one zstd frame of newB with all of oldB
// as its raw dictionary.
func wholeFrame(oldB, newB []byte, level zstd.EncoderLevel) int {
	w := 1 << bits.Len(uint(len(oldB)+len(newB)))
	w = max(min(w, zstd.MaxWindowSize), zstd.MinWindowSize)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(w), zstd.WithEncoderDictRaw(0, oldB))
	if err != nil {
		panic(err)
	}
	defer enc.Close()
	return len(enc.EncodeAll(newB, nil))
}

// runChild makes (mode "make") or applies (mode "apply") the patch of one
// file, sampling the live heap, and prints its peak.
func runChild(mode, oldF, newF, patchF string, o zpatch.Options) error {
	ctx := context.Background()
	if os.Getenv("ZPATCHMEASURE_MEMPROFILE") != "" {
		runtime.MemProfileRate = 1
	}
	oldFile, err := os.Open(oldF)
	if err != nil {
		return err
	}
	defer oldFile.Close()
	oldSize := size(oldF)
	newSize := size(newF)
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	runtime.GC()
	base := heapNow()
	start := time.Now()
	switch mode {
	case "make":
		newFile, err := os.Open(newF)
		if err != nil {
			return err
		}
		defer newFile.Close()
		out, err := os.Create(patchF)
		if err != nil {
			return err
		}
		if err := zpatch.Make(ctx, out, oldFile, oldSize, newFile, newSize, o); err != nil {
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
	case "apply":
		p, err := os.Open(patchF)
		if err != nil {
			return err
		}
		defer p.Close()
		if err := zpatch.Apply(ctx, io.Discard, oldFile, oldSize, p, newSize); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown -child %q", mode)
	}
	el := time.Since(start)
	close(stop)
	<-done
	fmt.Printf("peak live heap %.1f MiB (%.1f MiB before), %.2f s, %s\n", float64(peak.Load())/(1<<20), float64(base)/(1<<20), el.Seconds(), hwm())
	if p := os.Getenv("ZPATCHMEASURE_MEMPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return pprof.Lookup("allocs").WriteTo(f, 0)
	}
	return nil
}

// hwm returns the process's peak RSS as /proc/self/status says it (the
// rusage of a child counts its parent's RSS at the fork).
func hwm() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "peak RSS unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			return "peak RSS (VmHWM) " + strings.TrimSpace(v)
		}
	}
	return "peak RSS unknown"
}

func heapNow() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
