//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// row is one goal of the issue, as measured.
type row struct {
	scenario, goal, measured string
	pass                     bool
}

// report is the Markdown the run prints: when, where, what was run, the
// goals' table, then each scenario's details.
func (l *load) report(ctx context.Context, args []string, rows []row, details []string, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Load (make load), %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	cmd := "go run ./scripts/load"
	if len(args) > 0 {
		cmd += " " + strings.Join(args, " ")
	}
	fmt.Fprintf(&b, "- command: `%s` (whole run %.0f s)\n", cmd, took.Seconds())
	fmt.Fprintf(&b, "- commit: %s (read when the binaries were built)\n", l.commit)
	nproc, _ := command(ctx, "", "nproc")
	fmt.Fprintf(&b, "- machine: nproc %s, memory %s, %s, Go %s; load average at the end %s\n", strings.TrimSpace(nproc), memTotal(), kernel(), runtime.Version(), loadAvg())
	mt := "not set (this build's AppServer.ini has no such key, or -max-transfers 0)"
	if l.c.maxTransfers > 0 {
		mt = fmt.Sprint(l.c.maxTransfers)
	}
	fmt.Fprintf(&b, "- [UPDATE] MaxTransfers in the stampede: %s\n", mt)
	if len(l.c.update) > 0 {
		fmt.Fprintf(&b, "- more [UPDATE] keys in the stampede (-update): %s\n", strings.Join(l.c.update, ", "))
	}
	fmt.Fprintf(&b, "- release: ../shared/benchdata `gen %s` (old), `next %s` (new, served): %d entries; TLS 1.3 with the server's key pinned, releases signed\n\n",
		strings.Join(oldTreeArgs, " "), strings.Join(newTreeArgs, " "), len(l.want))
	fmt.Fprintln(&b, "| scenario | goal | measured | pass |")
	fmt.Fprintln(&b, "| --- | --- | --- | --- |")
	for _, r := range rows {
		p := "pass"
		if !r.pass {
			p = "**FAIL**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", r.scenario, r.goal, r.measured, p)
	}
	fmt.Fprintln(&b)
	for _, d := range details {
		fmt.Fprintln(&b, d)
	}
	fmt.Fprintln(&b)
	fmt.Fprint(&b, footnote)
	return b.String()
}

const footnote = `What the columns measure. Welcome: from a client's start to its library's "connected" log record, written once the server's Welcome is read (TCP connect, TLS handshake, Hello, Welcome; for a smartclient process, the time of that line in its -v log); handshakes per second are those welcomes over the time from the first client's start to the last welcome. First file byte: to the first Progress.Add of the download (library clients that fetch; not measured for processes). Completion: to smartclient.Sync's return (a process: its exit), which includes verifying, backing up and switching the files. Busy: the client's log records with the code "server busy", or its messages to the user saying so. A failure is a sync that returned an error; a timeout one whose error is a timeout (the harness gives each client -client-timeout). Trees: every served client folder, file by file (BLAKE3, executable bit, links, folders), against the release, without .smartclient, bkp_remote.* and the harness's smartclient.ini. Server figures: /proc/PID/status (VmRSS, VmHWM = peak RSS, Threads) and the entries of /proc/PID/fd, sampled every 100-250 ms; the appserver exposes no goroutine count. The clients run in the harness's process and the server in its own, on the same machine: the CPU is shared between them.
`

func memTotal() string {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			var kb int64
			fmt.Sscan(v, &kb)
			return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return "unknown"
}

func kernel() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return runtime.GOOS
	}
	var sb strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return "Linux " + sb.String()
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
