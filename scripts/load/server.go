//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// server is one appserver process.
type server struct {
	cmd  *exec.Cmd
	pid  int
	addr string
	log  string
	done chan struct{}
	once sync.Once
}

var (
	listenRE      = regexp.MustCompile(`msg=listening.*?addr=("?)([^ "]+)`)
	listenLineRE  = regexp.MustCompile(`(?m)^.*msg=listening.*$`)
	fingerprintRE = regexp.MustCompile(`tls_fingerprint=("?)([^ "]+)`)
)

// startServer starts bin/appserver with ini on 127.0.0.1:0 and the run's
// state folder, and waits until it logs its address and key. nofile, when
// above 0, is set as the process's RLIMIT_NOFILE (soft and hard, so that
// Go's runtime in the server cannot raise it again) right after its start.
func (l *load) startServer(ctx context.Context, tag, ini string) (*server, error) {
	return l.startServerLimited(ctx, tag, ini, 0)
}

func (l *load) startServerLimited(ctx context.Context, tag, ini string, nofile uint64) (*server, error) {
	l.seq++
	logPath := filepath.Join(l.run, fmt.Sprintf("appserver-%02d-%s.log", l.seq, tag))
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(l.bin("appserver"), "--config", ini, "--state", l.state, "--listen", "127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = logf, logf
	// The runtime's GC trace, into the log: its last line says how much
	// of the heap is live, which RSS alone does not (buffers allocated
	// and never touched are not resident).
	cmd.Env = append(os.Environ(), "GODEBUG=gctrace=1")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, pid: cmd.Process.Pid, log: logPath, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(s.done)
	}()
	if nofile > 0 {
		lim := unix.Rlimit{Cur: nofile, Max: nofile}
		if err := unix.Prlimit(s.pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
			s.stop()
			return nil, fmt.Errorf("lowering the server's RLIMIT_NOFILE to %d: %w", nofile, err)
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		data, _ := os.ReadFile(logPath)
		if m := listenRE.FindSubmatch(data); m != nil {
			s.addr = string(m[2])
			f := fingerprintRE.FindSubmatch(listenLineRE.Find(data))
			if f == nil {
				s.stop()
				return nil, fmt.Errorf("the appserver logged no tls_fingerprint (log %s)", logPath)
			}
			switch {
			case l.fp == "":
				l.fp = string(f[2])
			case l.fp != string(f[2]):
				s.stop()
				return nil, fmt.Errorf("the appserver's key changed within the run: %s, then %s (log %s)", l.fp, f[2], logPath)
			}
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("appserver (%s) exited before listening:\n%s", ini, tail(data, 2000))
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("appserver (%s) did not log its address within 2 minutes:\n%s", ini, tail(data, 2000))
		}
	}
}

// running reports whether the server process has not exited.
func (s *server) running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// stop asks the server to stop (SIGTERM) and waits; after 30 s it is killed.
func (s *server) stop() {
	s.once.Do(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	})
}

func (s *server) logTail() string {
	data, _ := os.ReadFile(s.log)
	return tail(data, 3000)
}

// logCount counts the lines of the server's log holding sub.
func (s *server) logCount(sub string) int {
	f, err := os.Open(s.log)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), sub) {
			n++
		}
	}
	return n
}

// procStats is what /proc says of a process at one moment. The appserver
// exposes no goroutine count: its threads and open descriptors stand in.
type procStats struct {
	rssKiB, hwmKiB int64
	threads        int
	fds            int
}

func readProc(pid int) (procStats, error) {
	var p procStats
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return p, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			p.rssKiB = n
		case "VmHWM":
			p.hwmKiB = n
		case "Threads":
			p.threads = int(n)
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return p, err
	}
	p.fds = len(ents)
	return p, nil
}

func (p procStats) String() string {
	return fmt.Sprintf("RSS %s, %d threads, %d open files", mib(p.rssKiB), p.threads, p.fds)
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

// sampler reads a process's /proc every interval and keeps the peaks.
type sampler struct {
	pid  int
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	peak procStats
}

func sample(pid int, every time.Duration) *sampler {
	s := &sampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			s.take()
			select {
			case <-s.stop:
				s.take()
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) take() {
	p, err := readProc(s.pid)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peak.rssKiB = max(s.peak.rssKiB, p.rssKiB)
	s.peak.hwmKiB = max(s.peak.hwmKiB, p.hwmKiB)
	s.peak.threads = max(s.peak.threads, p.threads)
	s.peak.fds = max(s.peak.fds, p.fds)
}

// end stops the sampling and returns the peaks seen.
func (s *sampler) end() procStats {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

var gcRE = regexp.MustCompile(`(?m)^gc \d+ @.*?(\d+)->(\d+)->(\d+) MB, (\d+) MB goal, (\d+) MB stacks`)

// heapLine is what the server's last GC trace line says: the heap live
// after it, its goal and the goroutine stacks; "" when there is none.
func (s *server) heapLine() string {
	data, _ := os.ReadFile(s.log)
	m := gcRE.FindAllSubmatch(data, -1)
	if len(m) == 0 {
		return ""
	}
	l := m[len(m)-1]
	return fmt.Sprintf("Go heap live after its last GC %s MB (goal %s MB), goroutine stacks %s MB (GODEBUG=gctrace=1)", l[3], l[4], l[5])
}
