// The harness reads /proc, sets resource limits and counts descriptors the
// Linux way; it is not built elsewhere, so that GOOS=windows and
// GOOS=darwin builds and vets of ./... stay clean.

//go:build linux

// Command load puts one real appserver under the load of issue 22's goals
// and prints one Markdown table: the goals as rows, what was measured, and
// whether each was met. It exits 1 when a goal is not met.
//
//	go run ./scripts/load [flags]            (or: make load LOAD_ARGS='-clients 100')
//
// It builds bin/appserver, bin/smartclient and the benchdata generator of
// ../shared/benchdata, generates two deterministic trees (an "old" release of
// about 20 MiB and the "new" one benchdata derives from it; kept in the work
// folder between runs), signs both with a publisher key made for the run, and
// makes two templates, each synced once from a real server: the old release
// installed (for incremental clients) and the new one (for no-op clients,
// with the client's state, so that the no-op check applies). Then, each
// scenario with a fresh appserver process on 127.0.0.1 (the same state
// folder, so the same TLS key, which every client pins):
//
//   - stampede: -clients clients started evenly within -window, a mix of
//     cold (an empty folder), incremental (the old release installed) and
//     no-op (the new one installed); most are goroutines calling
//     smartclient.Sync, -procs of them real smartclient processes. Every
//     folder is then compared, file by file (BLAKE3), with the release.
//   - idle: -idle sessions kept open as 'smartclient run' keeps them (a
//     no-op sync whose session stays, Hello ... Report, Stay), then one
//     incremental, one cold and one no-op sync started meanwhile.
//   - fds: a server whose RLIMIT_NOFILE is lowered to -fds-limit, -fds-conns
//     silent connections held open, then a good client's sync.
//   - revert: the end-to-end test TestSelfUpdateReverts/exits_at_start, which
//     measures the time from a broken new server's exit to the old build
//     answering again (-revert=false leaves it out).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	switch {
	case errors.Is(err, errGoalsFailed):
		os.Exit(1)
	case err != nil:
		fmt.Fprintf(os.Stderr, "load: %v\n", err)
		os.Exit(2)
	}
}

// errGoalsFailed is returned when the run worked but a goal was not met.
var errGoalsFailed = errors.New("load: a goal was not met")

// config is what the flags set.
type config struct {
	work          string
	keep          bool
	clients       int
	window        time.Duration
	mix           [3]int // cold, incremental, no-op
	procs         int
	maxTransfers  int
	update        []string // extra [UPDATE] lines of the stampede's AppServer.ini
	clientTimeout time.Duration
	idle          int
	idleFolders   int
	idleHold      time.Duration
	// idleMemoryLimit is the idle server's [LIMITS] MemoryLimitMB; 0
	// leaves it unset.
	idleMemoryLimit int
	fdsLimit        int
	fdsConns        int
	revert          bool
	only            map[string]bool
}

func parseFlags(args []string) (*config, error) {
	c := &config{}
	fl := flag.NewFlagSet("load", flag.ContinueOnError)
	fl.StringVar(&c.work, "work", filepath.Join(os.TempDir(), "smartsync-load"), "scratch folder: the trees are kept there between runs, each run's folders are removed after it")
	fl.BoolVar(&c.keep, "keep", false, "keep this run's folders (client folders, server logs) for a look around")
	fl.IntVar(&c.clients, "clients", 500, "stampede: clients in all")
	fl.DurationVar(&c.window, "window", 10*time.Second, "stampede: the clients are started evenly within this time")
	mix := fl.String("mix", "50/100/350", "stampede: cold/incremental/no-op shares, scaled to -clients")
	fl.IntVar(&c.procs, "procs", 10, "stampede: how many of the clients are real smartclient processes (the rest are goroutines calling smartclient.Sync)")
	fl.IntVar(&c.maxTransfers, "max-transfers", 0, "stampede: [UPDATE] MaxTransfers written into the AppServer.ini when above 0 (a build without the key refuses it)")
	update := fl.String("update", "", "stampede: more [UPDATE] keys for the AppServer.ini, KEY=VALUE separated by commas (e.g. MaxClientBytesPerSecond=10M, to give each workstation the link of a 100 Mbit/s LAN)")
	fl.DurationVar(&c.clientTimeout, "client-timeout", 10*time.Minute, "a client not done after this counts as a timeout")
	fl.IntVar(&c.idle, "idle", 10000, "idle: 'run' sessions held open")
	fl.IntVar(&c.idleFolders, "idle-folders", 100, "idle: install folders the sessions take turns in (each folder a workstation with several programs open)")
	fl.IntVar(&c.idleMemoryLimit, "idle-memory-limit", 160, "idle: the server's [LIMITS] MemoryLimitMB (the Go runtime's soft limit, MiB); 0 leaves it unset, so the heap may grow to twice what is live")
	fl.DurationVar(&c.idleHold, "idle-hold", 0, "idle: how long the sessions are held before they are measured (70s sees every session take a heartbeat after the first, at the default [LIMITS] Heartbeat=60)")
	fl.IntVar(&c.fdsLimit, "fds-limit", 256, "fds: the server's RLIMIT_NOFILE")
	fl.IntVar(&c.fdsConns, "fds-conns", 0, "fds: silent connections held open (0: -fds-limit + 150)")
	fl.BoolVar(&c.revert, "revert", true, "revert: run TestSelfUpdateReverts/exits_at_start and report its figure")
	only := fl.String("only", "", "comma-separated scenarios to run (stampede,idle,fds,revert); default all")
	if err := fl.Parse(args); err != nil {
		return nil, err
	}
	if fl.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fl.Args())
	}
	if _, err := fmt.Sscanf(*mix, "%d/%d/%d", &c.mix[0], &c.mix[1], &c.mix[2]); err != nil || c.mix[0] < 0 || c.mix[1] < 0 || c.mix[2] < 0 || c.mix[0]+c.mix[1]+c.mix[2] == 0 {
		return nil, fmt.Errorf("-mix %q: want three shares cold/incremental/no-op, such as 50/100/350", *mix)
	}
	switch {
	case c.clients < 1:
		return nil, errors.New("-clients must be at least 1")
	case c.procs < 0 || c.procs > c.clients:
		return nil, fmt.Errorf("-procs must be from 0 to -clients (%d)", c.clients)
	case c.idleMemoryLimit < 0:
		return nil, errors.New("-idle-memory-limit must not be negative")
	case c.idle < 0:
		return nil, errors.New("-idle must not be negative")
	case c.idleFolders < 1:
		return nil, errors.New("-idle-folders must be at least 1")
	case c.fdsLimit < 32:
		return nil, errors.New("-fds-limit must be at least 32: the server needs some to start")
	case c.maxTransfers < 0:
		return nil, errors.New("-max-transfers must not be negative")
	}
	for _, kv := range strings.Split(*update, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" || strings.ContainsAny(kv, "\n\r[]") {
			return nil, fmt.Errorf("-update %q: want KEY=VALUE pairs separated by commas", kv)
		}
		c.update = append(c.update, strings.TrimSpace(k)+"="+strings.TrimSpace(v))
	}
	if c.fdsConns == 0 {
		c.fdsConns = c.fdsLimit + 150
	}
	c.only = map[string]bool{}
	if strings.TrimSpace(*only) == "" {
		*only = "stampede,idle,fds,revert"
	}
	for _, s := range strings.Split(*only, ",") {
		s = strings.TrimSpace(s)
		switch s {
		case "stampede", "idle", "fds", "revert":
			c.only[s] = true
		default:
			return nil, fmt.Errorf("-only: unknown scenario %q (the scenarios are stampede, idle, fds, revert)", s)
		}
	}
	if !c.revert {
		delete(c.only, "revert")
	}
	return c, nil
}

func run(ctx context.Context, args []string) error {
	c, err := parseFlags(args)
	if err != nil {
		return err
	}
	started := time.Now()
	// Each client and each held session is a descriptor here, and each is
	// one in the server too, which inherits the limit. Root may raise the
	// hard limit (where it has CAP_SYS_RESOURCE); otherwise the soft one
	// goes as far as the hard one.
	want := uint64(max(c.idle, c.clients) + 4096)
	if err := raiseNoFile(want); err != nil {
		step("could not raise RLIMIT_NOFILE to %d: %v (the idle scenario may run out of descriptors)", want, err)
	}
	l, err := setup(ctx, c)
	if err != nil {
		return err
	}
	defer l.cleanup()
	var rows []row
	var details []string
	if c.only["stampede"] {
		r, d, err := l.stampede(ctx)
		if err != nil {
			return fmt.Errorf("stampede: %w", err)
		}
		rows, details = append(rows, r...), append(details, d...)
	}
	if c.only["idle"] {
		r, d, err := l.idle(ctx)
		if err != nil {
			return fmt.Errorf("idle: %w", err)
		}
		rows, details = append(rows, r...), append(details, d...)
	}
	if c.only["fds"] {
		r, d, err := l.fds(ctx)
		if err != nil {
			return fmt.Errorf("fds: %w", err)
		}
		rows, details = append(rows, r...), append(details, d...)
	}
	if c.only["revert"] {
		r, d := l.revert(ctx)
		rows, details = append(rows, r...), append(details, d...)
	}
	out := l.report(ctx, args, rows, details, time.Since(started))
	os.Stdout.WriteString(out)
	res := filepath.Join(c.work, "results.md")
	if err := os.WriteFile(res, []byte(out), 0o644); err != nil {
		return err
	}
	step("table also written to %s", res)
	for _, r := range rows {
		if !r.pass {
			return errGoalsFailed
		}
	}
	return nil
}

func step(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "load %s: "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, a...)...)
}

// raiseNoFile raises this process's RLIMIT_NOFILE to at least n (the hard
// limit too, which root may). Setting it also makes Go's os/exec pass it on
// to children, rather than the limit this process started with.
func raiseNoFile(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= n {
		return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	want := syscall.Rlimit{Cur: n, Max: max(n, lim.Max)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
		return nil
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	return fmt.Errorf("the hard limit is %d and may not be raised here (no CAP_SYS_RESOURCE)", lim.Max)
}
