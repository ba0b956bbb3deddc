package smartclient_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient"
	"github.com/erpupdate/smartsync/smartclient/internal/hostiletest"
	"github.com/erpupdate/smartsync/syncproto"
)

// trickle returns a Send that sends each file asked for in pieces of
// piece bytes, every, until the client hangs up: a server that keeps
// every message within its timeout and the transfer below its rate.
func trickle(piece int, every time.Duration) func(s *hostiletest.Stream) {
	return func(s *hostiletest.Stream) {
		for _, i := range s.Saw.Asked {
			f := s.Files[i]
			s.Msg(syncproto.FileStart{Index: i, Size: uint64(len(f.Content))})
			for b := f.Content; len(b) > 0; b = b[min(piece, len(b)):] {
				s.Data(b[:min(piece, len(b))])
				if err := s.W.Flush(); err != nil {
					return // the client gave up, as it should
				}
				time.Sleep(every)
			}
			s.Msg(syncproto.FileEnd{Hash: hostiletest.Entries([]hostiletest.File{f})[0].Hash})
		}
	}
}

// installUnchanged fails t if dir differs from before, the folder kept
// for resuming aside (the fail path keeps verified files there).
func installUnchanged(t *testing.T, dir string, before map[string]string) {
	t.Helper()
	after := wholeTree(t, dir)
	all := maps.Clone(before)
	maps.Copy(all, after)
	for _, k := range slices.Sorted(maps.Keys(all)) {
		if k == ".smartclient/resume" || strings.HasPrefix(k, ".smartclient/resume/") {
			continue
		}
		if before[k] != after[k] {
			t.Errorf("install changed: %s: was %q, is %q", k, before[k], after[k])
		}
	}
}

// TestSlowTransfer drives the transfer's bounds with a real server over
// TCP, with small configured values so that each case takes seconds. Each
// message comes well within the per-message timeout: only the bounds can
// fail a trickle.
func TestSlowTransfer(t *testing.T) {
	const slack = 3 * time.Second // a loaded test machine's scheduling
	for _, tc := range []struct {
		name  string
		o     smartclient.Options
		send  func(*hostiletest.Stream)
		want  []string // pieces of the error; none: the sync succeeds
		bound time.Duration
	}{
		{
			name: "trickle below the minimum rate",
			o:    smartclient.Options{MinRate: 64 << 10, RateWindow: 500 * time.Millisecond, Deadline: 20 * time.Second},
			send: trickle(200, 50*time.Millisecond), // 4 KB/s
			want: []string{"the server sent", "in the last", "below the minimum of 64.0 KiB/s"},
			// The grace of one window, then a check every fifth of one.
			bound: 500*time.Millisecond + 100*time.Millisecond,
		},
		{
			name:  "above the rate but past the deadline",
			o:     smartclient.Options{MinRate: 1 << 10, RateWindow: 500 * time.Millisecond, Deadline: 2 * time.Second},
			send:  trickle(1000, 50*time.Millisecond), // 20 KB/s: 300 KiB take 15 s
			want:  []string{"did not end within its deadline of 2s"},
			bound: 2 * time.Second,
		},
		{
			name: "steady, slow but above the minimum",
			o:    smartclient.Options{MinRate: 16 << 10, RateWindow: 500 * time.Millisecond, Deadline: 20 * time.Second},
			send: trickle(8<<10, 50*time.Millisecond), // about 160 KB/s: 2 s
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "install")
			oldInstall(t, dir, oldRelease())
			before := wholeTree(t, dir)
			addr, wait := hostiletest.Serve(t, hostiletest.Lie{Send: tc.send}, liarRelease())
			o := tc.o
			o.Dir, o.Server, o.OS, o.Yes, o.Timeout, o.AllowUnsigned = dir, addr, "linux", true, 5*time.Second, true
			start := time.Now()
			_, err := smartclient.Sync(context.Background(), o)
			took := time.Since(start)
			saw := wait()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("sync: %v", err)
				}
				if saw.Report == nil || saw.Report.Outcome != syncproto.OutcomeUpdated {
					t.Errorf("report %+v; want an update", saw.Report)
				}
				return
			}
			if !errors.Is(err, smartclient.ErrSlowTransfer) {
				t.Fatalf("got %v; want %v", err, smartclient.ErrSlowTransfer)
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if took > tc.bound+slack {
				t.Errorf("failed after %s; want within %s (plus %s of slack)", took, tc.bound, slack)
			}
			if !saw.AskedEnd {
				t.Errorf("the client never asked for the files: the bound was not what failed it")
			}
			installUnchanged(t, dir, before)
		})
	}
}

// TestSlowManifest: a server that trickles the manifest, each entry well
// within the per-message timeout, is held to the deadline too, before a
// byte of a file is asked for.
func TestSlowManifest(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "install")
	oldInstall(t, dir, oldRelease())
	before := wholeTree(t, dir)
	slow := hostiletest.Lie{BySketch: func(w *syncproto.Writer, h syncproto.ManifestHeader, entries []syncproto.ManifestEntry, _ []uint64) {
		for _, e := range entries {
			w.Write(e)
			if w.Flush() != nil {
				return
			}
			time.Sleep(700 * time.Millisecond)
		}
	}}
	addr, wait := hostiletest.Serve(t, slow, liarRelease())
	start := time.Now()
	_, err := smartclient.Sync(context.Background(), smartclient.Options{AllowUnsigned: true, Dir: dir, Server: addr, OS: "linux", Yes: true,
		Timeout: 5 * time.Second, Deadline: time.Second})
	took := time.Since(start)
	saw := wait()
	if !errors.Is(err, smartclient.ErrSlowTransfer) || !strings.Contains(err.Error(), "reading the manifest") ||
		!strings.Contains(err.Error(), "the manifest did not come within its deadline of 1s") {
		t.Fatalf("got %v; want the manifest's deadline named", err)
	}
	if took > time.Second+3*time.Second {
		t.Errorf("failed after %s; want within 1 s (plus 3 s of slack)", took)
	}
	if len(saw.Asked) != 0 || saw.AskedEnd {
		t.Errorf("the client asked for %v (end %v); want nothing", saw.Asked, saw.AskedEnd)
	}
	installUnchanged(t, dir, before)
}

// TestRunStartsProgramAfterSlowTransfer checks that 'run' starts the
// installed program once a trickling server has failed the sync.
func TestRunStartsProgramAfterSlowTransfer(t *testing.T) {
	program := []string{"sh", "-c", "cat app.bin > ran.txt; exit 7"}
	if runtime.GOOS == "windows" {
		program = smartclient.HelperCommand(t, "copy", "app.bin", "ran.txt", "exit", "7")
	}
	dir := filepath.Join(t.TempDir(), "install")
	oldInstall(t, dir, oldRelease())
	addr, wait := hostiletest.Serve(t, hostiletest.Lie{Send: trickle(200, 50*time.Millisecond)}, liarRelease())
	code, _, errOut := runCLI(t, append([]string{"run", "--server", addr, "--dir", dir, "--os", "linux", "--yes",
		"--min-rate", "64", "--rate-window", "500ms", "--deadline", "10s", "--"}, program...)...)
	wait()
	if code != 7 {
		t.Errorf("exit code %d; want the program's 7\nstderr:\n%s", code, errOut)
	}
	if !strings.Contains(errOut, "below the minimum of 64.0 KiB/s") {
		t.Errorf("stderr does not name the rate:\n%s", errOut)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "ran.txt")); err != nil || string(got) != "the old application binary" {
		t.Errorf("ran.txt: %q, %v; want the old program to have run", got, err)
	}
}
