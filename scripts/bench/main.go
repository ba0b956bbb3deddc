// The harness measures on Linux (uname, sync(2), process groups, rsync),
// where the benchmarks are run; it is not built elsewhere, so that
// GOOS=windows and GOOS=darwin builds and vets of ./... stay clean.

//go:build linux

// Command bench measures smartclient and appserver against rsync on the same
// data, on this machine, in one run, and prints one Markdown table.
//
//	go run ./scripts/bench [-small] [-runs 5] [-work DIR] [-only SCENARIOS] [-plaintext]
//	                       [-relay-rate 20] [-relay-latency 10ms] [-relay-rsync-z]   (or: make bench, make bench-small)
//
// It builds bin/appserver, bin/smartclient and the benchdata generator of
// ../shared/benchdata, generates the trees into a scratch folder that is kept
// between runs (a tree is regenerated only when its flags or the generator
// change: a flags file lies beside each tree), installs rsync from Debian's
// packages when it is missing, and runs, per scenario, a fresh appserver and
// a fresh rsync daemon on 127.0.0.1. Each client run starts from the same
// state, a fresh copy made (and flushed to disk) before the timed part; ours
// and rsync run alternately, one warm-up and then -runs counted runs each.
// Every scenario is checked with diff -r against the served tree, and the
// harness fails on any difference, so that a fast wrong answer never counts.
//
// Only the ratios of one run mean anything: both tools see the same files,
// the same loopback and the same warm page cache.
//
// Ours runs over TLS 1.3, as it does by default: each client folder gets a
// smartclient.ini whose [SSL] Fingerprint pins the key of the server of its
// scenario (read from the server's "listening" log line), so that no client
// trusts on first use, records a key in .smartclient/known_servers.json
// during a timed run, or refuses a server whose port another server's key
// was recorded for. With -plaintext, ours runs over plain TCP on both sides
// ([SSL] AllowPlaintext=1 in AppServer.ini and in smartclient.ini), so that
// two runs, with and without it, show what TLS costs, as ratios to rsync.
//
// The go-upgrade scenarios serve a real upgrade, the Go 1.25.0 -> 1.25.1
// linux-amd64 distribution from the Go module proxy (see goupgrade.go); a
// bench without network skips them with a line in the output. The
// scenarios whose name ends in -relay run both tools through a throttling
// relay on loopback (package relay: -relay-rate Mbit/s per direction,
// -relay-latency one way), ours with --compress yes, which is what its
// --compress auto chooses on any link that is not loopback.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/erpupdate/smartsync/scripts/bench/relay"
)

const module = "github.com/erpupdate/smartsync"

// Builds written into each AppServer.ini: the template was installed from a
// server of oldBuild, and every served tree accepts it (MinClientBuild), so
// that a client with state gets the compatible, silent update.
const (
	oldBuild = "7.00.240101A"
	newBuild = "7.00.240301A"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// treeSpec is one generated tree: gen when from is empty, else next -in from.
type treeSpec struct {
	name string
	from string
	args []string
}

func treeSpecs(small bool) []treeSpec {
	v1 := []string{"-size", "1G", "-files", "20000", "-seed", "1"}
	big := []string{"-size", "500M", "-files", "1", "-large", "1", "-seed", "3"}
	if small {
		v1 = []string{"-size", "100M", "-files", "2000", "-seed", "1"}
		big = []string{"-size", "50M", "-files", "1", "-large", "1", "-seed", "3"}
	}
	edit := []string{"-seed", "4", "-change", "0", "-add", "0", "-remove", "0", "-edit-large", "1", "-edit-bytes", "4K"}
	return []treeSpec{
		{name: "v1", args: v1},
		{name: "v2", from: "v1", args: []string{"-seed", "2", "-change", "5", "-add", "20", "-remove", "20", "-edit-large", "1", "-edit-bytes", "4K"}},
		{name: "big1", args: big},
		{name: "big2", from: "big1", args: edit},
		{name: "big2i", from: "big1", args: append(slices.Clone(edit), "-edit-mode", "insert")},
	}
}

// scenario is one row pair of the table.
type scenario struct {
	name    string   // what -only names, and the table's row unless title is set
	title   string   // the table's row, when not name (relay appends the link)
	serve   string   // the tree both servers serve
	start   string   // the tree the client holds before the run; "" for an empty folder
	clients int      // clients started at once
	ours    []string // extra flags for our client
	relay   bool     // both tools through the throttling relay (-relay-rate, -relay-latency)
}

// goUpgradeTitle names the go-upgrade rows.
const goUpgradeTitle = "go-upgrade (Go 1.25.0 to 1.25.1, linux-amd64)"

var scenarios = []scenario{
	{name: "no-op", serve: "v1", start: "v1", clients: 1},
	{name: "cold", serve: "v1", start: "", clients: 1},
	{name: "incremental", serve: "v2", start: "v1", clients: 1},
	// On loopback our client asks for raw bytes (--compress auto); this
	// row shows the bytes a real link would carry.
	{name: "incremental, ours with --compress yes", serve: "v2", start: "v1", clients: 1, ours: []string{"--compress", "yes"}},
	{name: "big overwrite", serve: "big2", start: "big1", clients: 1},
	{name: "big insert", serve: "big2i", start: "big1", clients: 1},
	{name: "64 no-op clients", serve: "v1", start: "v1", clients: 64},
	{name: "8 incremental clients", serve: "v2", start: "v1", clients: 8},
	// A real upgrade (goupgrade.go), then it and incremental through the
	// relay. Through the relay, ours compresses (--compress auto does on
	// any link that is not loopback); rsync runs as everywhere else.
	{name: "go-upgrade", title: goUpgradeTitle, serve: "go1.25.1", start: "go1.25.0", clients: 1},
	{name: "go-upgrade-relay", title: goUpgradeTitle, serve: "go1.25.1", start: "go1.25.0", clients: 1, relay: true, ours: []string{"--compress", "yes"}},
	{name: "incremental-relay", title: "incremental", serve: "v2", start: "v1", clients: 1, relay: true, ours: []string{"--compress", "yes"}},
	// appserver publish of v1 and then v2 while a server serves v1
	// (publish.go): a table of its own.
	{name: publishName, serve: "v2"},
}

// bench holds what every step needs.
type bench struct {
	commit   string            // what was built, read when it was built
	root     string            // the repository
	top      string            // the scratch folder (-work), which holds the Go trees
	work     string            // the scratch folder of this mode
	dirs     map[string]string // tree name -> folder, for every tree made
	goDesc   map[string]string // Go tree name -> module@version and checksum
	trees    string            // work/trees
	tmpl     string            // work/tmpl: starting states to copy
	runDir   string            // work/run: client folders and logs
	gen      string            // the benchdata binary
	runs     int
	clkTck   int64
	rsyncD   string // rsyncd.conf
	modules  []string
	seq      int  // numbers the client folders of a scenario (see prepare)
	plain    bool // -plaintext: ours over plain TCP on both sides
	link     relay.Config
	mbit     float64  // -relay-rate
	relayZ   bool     // -relay-rsync-z
	anyRelay bool     // a relayed scenario runs
	skipped  []string // scenarios skipped, and why
	pub      *publishResult
}

func run(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("bench", flag.ContinueOnError)
	small := fl.Bool("small", false, "smaller trees (100 MiB / 2,000 files, 50 MiB big file), for a run of a few minutes")
	runs := fl.Int("runs", 5, "counted runs per scenario and tool, after one warm-up")
	work := fl.String("work", filepath.Join(os.TempDir(), "smartsync-bench"), "scratch folder, kept between runs")
	only := fl.String("only", "", "comma-separated scenario names (e.g. cold,incremental) to run only those; the table then holds only them")
	plaintext := fl.Bool("plaintext", false, "run ours over plain TCP on both sides ([SSL] AllowPlaintext=1 in AppServer.ini and smartclient.ini) instead of TLS, to measure what TLS costs; the table goes to results-plaintext.md")
	relayRate := fl.Float64("relay-rate", 20, "the rate of the throttling relay of the -relay scenarios, in Mbit/s (10^6 bits) per direction")
	relayLatency := fl.Duration("relay-latency", 10*time.Millisecond, "the one-way latency the relay adds (0 for none)")
	relayZ := fl.Bool("relay-rsync-z", false, "in the relayed scenarios, run rsync with -z (it compresses, as ours does there); without it rsync runs as in every other row")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if !(*relayRate > 0) || *relayRate > 1e5 {
		return fmt.Errorf("-relay-rate %v: must be above 0 and at most 100000 Mbit/s", *relayRate)
	}
	if *relayLatency < 0 || *relayLatency > 10*time.Second {
		return fmt.Errorf("-relay-latency %v: must be between 0 and 10s", *relayLatency)
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fl.Args())
	}
	if *runs < 1 {
		return fmt.Errorf("-runs must be at least 1")
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	mode := "full"
	if *small {
		mode = "small"
	}
	top, err := filepath.Abs(*work)
	if err != nil {
		return err
	}
	chosen, err := pickScenarios(*only)
	if err != nil {
		return err
	}
	b := &bench{
		root:   root,
		top:    top,
		work:   filepath.Join(top, mode),
		gen:    filepath.Join(top, "benchdata"),
		dirs:   map[string]string{},
		goDesc: map[string]string{},
		runs:   *runs,
		clkTck: clockTicks(),
		plain:  *plaintext,
		mbit:   *relayRate,
		relayZ: *relayZ,
		link:   relay.Config{BytesPerSecond: relay.MbitPerSecond(*relayRate), Latency: *relayLatency},
	}
	b.trees = filepath.Join(b.work, "trees")
	b.tmpl = filepath.Join(b.work, "tmpl")
	b.runDir = filepath.Join(b.work, "run")
	for _, d := range []string{b.trees, b.tmpl, b.runDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	started := time.Now()

	step("building bin/appserver, bin/smartclient and the benchdata generator")
	if err := b.build(ctx); err != nil {
		return err
	}
	if err := ensurePackage(ctx, "rsync", "rsync"); err != nil {
		return err
	}
	// GNU time reports a child's own peak RSS. The rusage Go gets from
	// wait4 does not: Go starts children with vfork, and Linux carries the
	// parent's peak RSS (this harness's) into the child's at exec, so every
	// figure under the harness's own size would read as that size.
	if err := ensurePackage(ctx, timeBin, "time"); err != nil {
		return err
	}
	specs, wantGo := neededTrees(chosen, treeSpecs(*small))
	if err := b.generate(ctx, specs); err != nil {
		return err
	}
	var names []string
	for _, s := range specs {
		b.dirs[s.name] = filepath.Join(b.trees, s.name)
		names = append(names, s.name)
	}
	if wantGo {
		if err := b.goTrees(ctx); err != nil {
			// No network: the bench goes on without the scenarios
			// that need these trees.
			var kept []scenario
			for _, sc := range chosen {
				if isGoTree(sc.serve) || isGoTree(sc.start) {
					b.skipped = append(b.skipped, fmt.Sprintf("%s: skipped, the Go distributions could not be had: %v", sc.name, err))
					step("SKIPPING scenario %s: the Go distributions could not be had: %v", sc.name, err)
					continue
				}
				kept = append(kept, sc)
			}
			chosen = kept
		} else {
			for _, r := range goReleases {
				names = append(names, r.tree)
			}
		}
	}
	for _, n := range names {
		b.modules = append(b.modules, n)
		// diff -r leaves out the smartclient.ini the harness writes into
		// ours' folders: no served tree may hold one of its own.
		if err := noClientINI(b.dirs[n]); err != nil {
			return err
		}
	}
	if err := b.writeRsyncdConf(); err != nil {
		return err
	}
	step("preparing the starting states (templates)")
	prints, err := b.templates(ctx, startTrees(chosen))
	if err != nil {
		return err
	}

	var results []*result
	for _, sc := range chosen {
		b.anyRelay = b.anyRelay || sc.relay
	}
	for _, sc := range chosen {
		if sc.name == publishName {
			if err := b.publishScenario(ctx); err != nil {
				return fmt.Errorf("scenario %s: %w", sc.name, err)
			}
			continue
		}
		r, err := b.scenario(ctx, sc)
		if err != nil {
			return fmt.Errorf("scenario %s: %w", sc.name, err)
		}
		results = append(results, r...)
		if sc.clients > 1 {
			// The clients of this scenario worked in hard-linked copies of
			// the templates; neither tool writes a file in place, and this
			// proves it.
			if err := b.checkTemplates(prints); err != nil {
				return fmt.Errorf("scenario %s: %w", sc.name, err)
			}
		}
	}

	var out bytes.Buffer
	b.header(ctx, &out, args, specs, time.Since(started))
	if len(results) > 0 {
		writeTable(&out, results)
	}
	for _, s := range b.skipped {
		fmt.Fprintf(&out, "Skipped: %s\n\n", s)
	}
	if len(results) > 0 {
		writeFootnotes(&out, b.runs)
		b.writeExtraNotes(&out, results)
	}
	b.writePublish(&out, *small)
	os.Stdout.Write(out.Bytes())
	res := filepath.Join(b.work, "results.md")
	if b.plain {
		res = filepath.Join(b.work, "results-plaintext.md")
	}
	if err := os.WriteFile(res, out.Bytes(), 0o644); err != nil {
		return err
	}
	step("table also written to %s", res)
	return nil
}

// neededTrees returns the generated trees that the scenarios serve or
// start from, with the trees they are made from, in the order of specs;
// and whether any scenario needs the Go trees.
func neededTrees(chosen []scenario, specs []treeSpec) ([]treeSpec, bool) {
	want := map[string]bool{}
	wantGo := false
	for _, sc := range chosen {
		for _, t := range []string{sc.serve, sc.start} {
			switch {
			case t == "":
			case isGoTree(t):
				wantGo = true
			default:
				want[t] = true
			}
		}
	}
	// A tree's source comes before it in specs.
	for i := len(specs) - 1; i >= 0; i-- {
		if want[specs[i].name] && specs[i].from != "" {
			want[specs[i].from] = true
		}
	}
	var out []treeSpec
	for _, s := range specs {
		if want[s.name] {
			out = append(out, s)
		}
	}
	return out, wantGo
}

// startTrees lists the trees the scenarios' clients start from, once
// each, in the scenarios' order.
func startTrees(chosen []scenario) []string {
	var out []string
	for _, sc := range chosen {
		if sc.start != "" && !slices.Contains(out, sc.start) {
			out = append(out, sc.start)
		}
	}
	return out
}

// pickScenarios returns the scenarios named in a comma-separated list, in
// the table's order, or all of them for an empty list.
func pickScenarios(only string) ([]scenario, error) {
	if strings.TrimSpace(only) == "" {
		return scenarios, nil
	}
	want := map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		want[strings.TrimSpace(n)] = true
	}
	var out []scenario
	for _, sc := range scenarios {
		if want[sc.name] {
			out = append(out, sc)
			delete(want, sc.name)
		}
	}
	if len(want) > 0 {
		var names []string
		for _, sc := range scenarios {
			names = append(names, strconv.Quote(sc.name))
		}
		return nil, fmt.Errorf("-only: unknown scenario(s) %q; the scenarios are %s", slices.Sorted(maps.Keys(want)), strings.Join(names, ", "))
	}
	return out, nil
}

func step(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...)
}

// repoRoot finds the module's go.mod from the current folder up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && regexp.MustCompile(`(?m)^module\s+`+regexp.QuoteMeta(module)+`\s*$`).Match(data) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("run from inside the %s checkout (no go.mod of that module above the current folder)", module)
		}
		dir = parent
	}
}

func clockTicks() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return 100
}

func goCmd() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}

// command runs a program to completion; its output goes into the error.
func command(ctx context.Context, dir string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(out, 2000))
	}
	return nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func (b *bench) build(ctx context.Context) error {
	// The commit is read now, not when the table is written: the tree may
	// change while the harness runs.
	b.commit = strings.TrimSpace(outputOf(ctx, b.root, "git", "rev-parse", "--short", "HEAD"))
	if strings.TrimSpace(outputOf(ctx, b.root, "git", "status", "--porcelain", "--untracked-files=no")) != "" {
		b.commit += " (with uncommitted changes in the working tree)"
	}
	// Without cgo, as the Windows and macOS programs are built (cross
	// compiled, cgo is off): a Linux cgo build also maps libc and the
	// dynamic loader, 1.7 MiB more of each process's peak RSS (measured:
	// smartclient 10.8 against 9.1 MiB of file pages, appserver 13.5
	// against 11.8) that is not the program's own. Neither program uses
	// cgo.
	if err := b.goBuild(ctx, "bin/appserver", "./appserver/cmd/appserver"); err != nil {
		return err
	}
	if err := b.goBuild(ctx, "bin/smartclient", "./smartclient/cmd/smartclient"); err != nil {
		return err
	}
	gdir := filepath.Join(b.root, "..", "shared", "benchdata")
	if _, err := os.Stat(filepath.Join(gdir, "main.go")); err != nil {
		return fmt.Errorf("the benchdata generator is expected in %s: %w", gdir, err)
	}
	return command(ctx, gdir, goCmd(), "build", "-o", b.gen, ".")
}

// goBuild builds the package pkg of the repository into out, without cgo.
func (b *bench) goBuild(ctx context.Context, out, pkg string) error {
	cmd := exec.CommandContext(ctx, goCmd(), "build", "-o", out, pkg)
	cmd.Dir = b.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("CGO_ENABLED=0 go build -o %s %s: %w\n%s", out, pkg, err, tail(o, 2000))
	}
	return nil
}

// timeBin is GNU time, which measures every client and server.
const timeBin = "/usr/bin/time"

// ensurePackage installs a Debian package when the program it provides is
// missing.
func ensurePackage(ctx context.Context, program, pkg string) error {
	if _, err := exec.LookPath(program); err == nil {
		return nil
	}
	step("%s is missing: installing the package %s with apt-get", program, pkg)
	var prefix []string
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("sudo"); err != nil {
			return fmt.Errorf("%s is not installed, and installing it needs root (or sudo): apt-get install %s", program, pkg)
		}
		prefix = []string{"sudo", "-n"}
	}
	for _, args := range [][]string{{"apt-get", "update"}, {"apt-get", "install", "-y", "--no-install-recommends", pkg}} {
		full := append(slices.Clone(prefix), args...)
		cmd := exec.CommandContext(ctx, full[0], full[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("installing %s failed (%s): %w\n%s", pkg, strings.Join(full, " "), err, tail(out, 2000))
		}
	}
	if _, err := exec.LookPath(program); err != nil {
		return fmt.Errorf("%s still missing after apt-get install %s: %w", program, pkg, err)
	}
	return nil
}

// timed wraps a command in GNU time, which writes the child's peak RSS
// (KiB) and user and system CPU seconds (its own and those of the children
// it reaped) into a file.
func timed(ctx context.Context, out string, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, timeBin, append([]string{"-f", "%M %U %S", "-o", out, name}, args...)...)
}

// readTimed reads what timed wrote: its last line (an exit status other
// than 0 adds a line before it).
func readTimed(path string) (maxrssKiB int64, cpu time.Duration, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) != 3 {
		return 0, 0, fmt.Errorf("%s: unexpected %q", path, data)
	}
	maxrssKiB, err = strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	for _, v := range f[1:] {
		sec, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", path, err)
		}
		cpu += time.Duration(sec * float64(time.Second))
	}
	return maxrssKiB, cpu, nil
}

// childOf finds the process GNU time started, by scanning /proc for the
// one whose parent it is.
func childOf(ctx context.Context, ppid int) (int, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
			if err != nil {
				continue
			}
			i := bytes.LastIndexByte(data, ')')
			if i < 0 {
				continue
			}
			f := strings.Fields(string(data[i+1:]))
			if len(f) > 1 && f[1] == strconv.Itoa(ppid) {
				return pid, nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no child of process %d after 10 s", ppid)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// generate makes each tree unless the flags file beside it says it is
// already what these flags and this generator make.
func (b *bench) generate(ctx context.Context, specs []treeSpec) error {
	sum, err := fileSHA256(b.gen)
	if err != nil {
		return err
	}
	flagsOf := map[string]string{}
	for _, s := range specs {
		dir := filepath.Join(b.trees, s.name)
		want := fmt.Sprintf("generator sha256 %s\n", sum)
		var args []string
		if s.from == "" {
			args = append([]string{"gen", "-out", dir}, s.args...)
		} else {
			args = append([]string{"next", "-in", filepath.Join(b.trees, s.from), "-out", dir}, s.args...)
			want += "input " + s.from + ":\n" + flagsOf[s.from]
		}
		want += "benchdata " + strings.Join(args, " ") + "\n"
		flagsOf[s.name] = want
		ffile := dir + ".flags"
		have, err := os.ReadFile(ffile)
		if err == nil && string(have) == want {
			if _, err := os.Stat(dir); err == nil {
				step("tree %s is current (%s)", s.name, ffile)
				continue
			}
		}
		step("generating %s: benchdata %s", s.name, strings.Join(args, " "))
		os.Remove(ffile)
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		t0 := time.Now()
		if err := command(ctx, b.trees, b.gen, args...); err != nil {
			os.RemoveAll(dir)
			return fmt.Errorf("generating %s: %w", s.name, err)
		}
		step("generated %s in %.1f s", s.name, time.Since(t0).Seconds())
		if err := os.WriteFile(ffile, []byte(want), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

func (b *bench) writeRsyncdConf() error {
	var c strings.Builder
	fmt.Fprintf(&c, "# generated by scripts/bench; one read-only module per served tree\n")
	fmt.Fprintf(&c, "use chroot = no\nmax connections = 0\nuid = %d\ngid = %d\nnumeric ids = yes\n", os.Getuid(), os.Getgid())
	for _, m := range b.modules {
		fmt.Fprintf(&c, "\n[%s]\n\tpath = %s\n\tread only = yes\n", m, b.dirs[m])
	}
	b.rsyncD = filepath.Join(b.work, "rsyncd.conf")
	return os.WriteFile(b.rsyncD, []byte(c.String()), 0o644)
}

// templates makes the starting states: for ours a folder synced once from
// the server of that tree (so it holds .smartclient with the client's
// state; no smartclient.ini and no known_servers.json), for rsync a plain
// copy. They are remade on every run, since the
// client's state format follows the smartclient just built.
func (b *bench) templates(ctx context.Context, trees []string) (map[string]string, error) {
	prints := map[string]string{}
	for _, t := range trees {
		ours := filepath.Join(b.tmpl, "ours-"+t)
		if err := os.RemoveAll(ours); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(ours, 0o755); err != nil {
			return nil, err
		}
		srv, err := b.startOurs(ctx, t, "template-"+t)
		if err != nil {
			return nil, err
		}
		if err := b.writeClientINI(ours, srv); err != nil {
			srv.stop()
			return nil, err
		}
		s, err := runOne(ctx, b.oursCmd(ctx, srv.addr, ours), b.checkTransport)
		srv.stop()
		if err != nil {
			return nil, fmt.Errorf("syncing the template %s: %w", ours, err)
		}
		if err := diffTrees(ctx, b.dirs[t], ours); err != nil {
			return nil, fmt.Errorf("template %s: %w", ours, err)
		}
		// Each copy gets the smartclient.ini of its own scenario's server
		// (prepare). A pinned or plain sync records no key; were one
		// recorded, a copy would carry a key for an address that a later
		// server with another key may be given.
		for _, f := range []string{filepath.Join(ours, clientINI), filepath.Join(ours, ".smartclient", "known_servers.json")} {
			if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
		step("template %s: synced from the %s server in %.2f s", ours, t, s.wall.Seconds())
		rs := filepath.Join(b.tmpl, "rsync-"+t)
		if err := os.RemoveAll(rs); err != nil {
			return nil, err
		}
		if err := command(ctx, "", "cp", "-a", b.dirs[t], rs); err != nil {
			return nil, err
		}
		for _, d := range []string{ours, rs} {
			p, err := fingerprint(d)
			if err != nil {
				return nil, err
			}
			prints[d] = p
		}
	}
	return prints, nil
}

// fingerprint lists every entry's path, size, mtime and mode: a template
// whose fingerprint changed was written through a hard link.
func fingerprint(dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00%o\n", path, fi.Size(), fi.ModTime().UnixNano(), fi.Mode())
		return nil
	})
	return fmt.Sprintf("%x", h.Sum(nil)), err
}

func (b *bench) checkTemplates(prints map[string]string) error {
	for d, want := range prints {
		got, err := fingerprint(d)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("template %s changed during the run (a client wrote through a hard link)", d)
		}
	}
	return nil
}

// server is an appserver or an rsync daemon run for one scenario, under
// GNU time.
type server struct {
	name    string
	cmd     *exec.Cmd // GNU time
	pid     int       // the server, GNU time's child
	timeOut string    // what GNU time writes
	addr    string
	log     string
	// fingerprint is the key an appserver logged ("" for rsync).
	fingerprint string
	done        chan struct{}
	cpuMark     time.Duration // CPU used (with reaped children) when the counted runs began
	once        sync.Once
}

func (s *server) wait() {
	s.cmd.Wait()
	close(s.done)
}

// stop asks the server to stop (SIGTERM) and waits; a server that has not
// stopped after 30 s is killed.
func (s *server) stop() {
	s.once.Do(func() {
		if s.pid > 0 {
			syscall.Kill(s.pid, syscall.SIGTERM)
		} else {
			s.cmd.Process.Signal(syscall.SIGTERM)
		}
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			if s.pid > 0 {
				syscall.Kill(s.pid, syscall.SIGKILL)
			}
			s.cmd.Process.Kill()
			<-s.done
		}
	})
}

// start starts the server under GNU time and learns the server's pid.
func (s *server) start(ctx context.Context) error {
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.done = make(chan struct{})
	go s.wait()
	pid, err := childOf(ctx, s.cmd.Process.Pid)
	if err != nil {
		s.stop()
		return fmt.Errorf("starting %s: %w", s.name, err)
	}
	s.pid = pid
	return nil
}

// procCPU reads the CPU time of a live process and of its children it has
// reaped (utime, stime, cutime, cstime of /proc/PID/stat).
func procCPU(pid int, clkTck int64) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields resume after its ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state); utime..cstime are fields 14..17.
	if len(f) < 15 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	var ticks int64
	for _, s := range f[11:15] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / time.Duration(clkTck), nil
}

func (s *server) markCPU(clkTck int64) error {
	c, err := procCPU(s.pid, clkTck)
	s.cpuMark = c
	return err
}

// usage is what the server used after the mark: CPU of the process and its
// reaped children, and its peak RSS in KiB (the largest of the process and
// of any child it reaped), as GNU time reports them at its exit.
func (s *server) usage() (cpu time.Duration, maxrssKiB int64, err error) {
	rss, total, err := readTimed(s.timeOut)
	if err != nil {
		return 0, 0, err
	}
	return total - s.cpuMark, rss, nil
}

var (
	listenRE      = regexp.MustCompile(`msg=listening.*?addr=("?)([^ "]+)`)
	listenLineRE  = regexp.MustCompile(`(?m)^.*msg=listening.*$`)
	fingerprintRE = regexp.MustCompile(`tls_fingerprint=("?)([^ "]+)`)
	plainAllowRE  = regexp.MustCompile(`plaintext_allowed=(\w+)`)
)

// startOurs starts an appserver serving tree on 127.0.0.1:0, with a state
// folder per tree kept between runs (its hash cache, and the TLS key it
// makes at its first start; the Go trees share one, goStateFolder), and
// waits until it logs its address and the fingerprint of its key. The
// release is published with publishRelease.
func (b *bench) startOurs(ctx context.Context, tree, tag string) (*server, error) {
	rel := release{tree: tree, dir: b.dirs[tree], build: newBuild, state: filepath.Join(b.work, "state", stateFolder(tree))}
	switch {
	case tree == "v1" || tree == "big1":
		rel.build = oldBuild
	case isGoTree(tree):
		for _, r := range goReleases {
			if r.tree == tree {
				rel.build = r.build
			}
		}
	}
	if rel.dir == "" {
		return nil, fmt.Errorf("no folder for the tree %s", tree)
	}
	rel.ini = filepath.Join(b.work, "AppServer-"+tree+".ini")
	var conf strings.Builder
	fmt.Fprintf(&conf, "; generated by scripts/bench\n[TCP]\nPort=1234\n\n[UPDATE]\nEnable=1\nMinClientBuild=%s\n", oldBuild)
	if err := b.publishRelease(ctx, &conf, nil, rel); err != nil {
		return nil, fmt.Errorf("publishing %s as %s (before the start): %w", tree, rel.build, err)
	}
	if b.plain {
		conf.WriteString("\n[SSL]\nAllowPlaintext=1\n")
	}
	if err := os.WriteFile(rel.ini, []byte(conf.String()), 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(b.runDir, "appserver-"+tag+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	timeOut := filepath.Join(b.runDir, "appserver-"+tag+".time")
	cmd := timed(context.Background(), timeOut, filepath.Join(b.root, "bin", "appserver"), "--config", rel.ini,
		"--state", rel.state, "--listen", "127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = logf, logf
	s := &server{name: "appserver", cmd: cmd, log: logPath, timeOut: timeOut}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		data, _ := os.ReadFile(logPath)
		if m := listenRE.FindSubmatch(data); m != nil {
			s.addr = string(m[2])
			line := listenLineRE.Find(data)
			if f := fingerprintRE.FindSubmatch(line); f != nil {
				s.fingerprint = string(f[2])
			}
			if p := plainAllowRE.FindSubmatch(line); b.plain && (p == nil || string(p[1]) != "true") {
				s.stop()
				return nil, fmt.Errorf("-plaintext, but the appserver for %s does not say plaintext_allowed=true:\n%s", tree, line)
			}
			if err := b.publishRelease(ctx, nil, s, rel); err != nil {
				s.stop()
				return nil, fmt.Errorf("publishing %s as %s: %w", tree, rel.build, err)
			}
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("appserver for %s exited before listening:\n%s", tree, tail(data, 2000))
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("appserver for %s did not log its address within 5 minutes:\n%s", tree, tail(data, 2000))
		}
	}
}

// startRsync starts an rsync daemon (in the foreground, as our child) on a
// free port of 127.0.0.1 with a module per tree.
func (b *bench) startRsync(ctx context.Context, tag string) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	logPath := filepath.Join(b.runDir, "rsyncd-"+tag+".log")
	os.Remove(logPath)
	timeOut := filepath.Join(b.runDir, "rsyncd-"+tag+".time")
	cmd := timed(context.Background(), timeOut, "rsync", "--daemon", "--no-detach", "--config="+b.rsyncD,
		"--address=127.0.0.1", fmt.Sprintf("--port=%d", port), "--log-file="+logPath)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	s := &server{name: "rsync daemon", cmd: cmd, log: logPath, timeOut: timeOut, addr: fmt.Sprintf("127.0.0.1:%d", port)}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			c.Close()
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("rsync daemon exited: %s", stderr.String())
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("rsync daemon not accepting on %s after 10 s", s.addr)
		}
	}
}

// oursCmd and rsyncCmd run a client under GNU time, which writes into
// dest+".time".
func (b *bench) oursCmd(ctx context.Context, addr, dest string, extra ...string) *exec.Cmd {
	args := append([]string{"sync", "--allow-unsigned", "--server", addr, "--dir", dest, "--os", "linux", "--yes", "--stats"}, extra...)
	return timed(ctx, dest+".time", filepath.Join(b.root, "bin", "smartclient"), args...)
}

func rsyncCmd(ctx context.Context, addr, mod, dest string, extra ...string) *exec.Cmd {
	args := append([]string{"-a", "--delete", "--stats"}, extra...)
	return timed(ctx, dest+".time", "rsync", append(args, "rsync://"+addr+"/"+mod+"/", dest+"/")...)
}

// sample is one client run, or one run of several clients at once.
type sample struct {
	wall       time.Duration
	wire       int64 // bytes on the wire, summed over the clients
	clientRSS  int64 // KiB, the largest client
	relayBytes int64 // bytes the relay forwarded, both ways (TCP payload: TLS's own bytes included)
}

type result struct {
	scenario  string
	tool      string
	clients   int
	samples   []sample
	serverRSS int64         // KiB
	serverCPU time.Duration // over the counted runs
	syncs     int           // client syncs in the counted runs
	relayed   bool          // through the relay
}

var (
	oursStatsRE  = regexp.MustCompile(`(?m)^stats: received=(\d+) sent=(\d+) `)
	rsyncSentRE  = regexp.MustCompile(`(?m)^Total bytes sent: ([\d,.]+)`)
	rsyncRecvRE  = regexp.MustCompile(`(?m)^Total bytes received: ([\d,.]+)`)
	digitsOnlyRE = regexp.MustCompile(`[^\d]`)
)

func parseCount(s string) int64 {
	n, _ := strconv.ParseInt(digitsOnlyRE.ReplaceAllString(s, ""), 10, 64)
	return n
}

// wireBytes reads the byte count a client printed.
func wireBytes(out []byte) (int64, error) {
	if m := oursStatsRE.FindSubmatch(out); m != nil {
		return parseCount(string(m[1])) + parseCount(string(m[2])), nil
	}
	s, r := rsyncSentRE.FindSubmatch(out), rsyncRecvRE.FindSubmatch(out)
	if s != nil && r != nil {
		return parseCount(string(s[1])) + parseCount(string(r[1])), nil
	}
	return 0, errors.New("no byte counts in the client's output")
}

// runOne runs one client process and times it.
func runOne(ctx context.Context, cmd *exec.Cmd, check func([]byte) error) (sample, error) {
	s, err := runMany(ctx, []*exec.Cmd{cmd}, check)
	return s, err
}

// runMany starts every client at once and times until the last one ends;
// check, when not nil, is then run on each client's output.
func runMany(ctx context.Context, cmds []*exec.Cmd, check func([]byte) error) (sample, error) {
	outs := make([]bytes.Buffer, len(cmds))
	for i, c := range cmds {
		c.Stdout, c.Stderr = &outs[i], &outs[i]
	}
	t0 := time.Now()
	for i, c := range cmds {
		if err := c.Start(); err != nil {
			for _, d := range cmds[:i] {
				d.Process.Kill()
				d.Wait()
			}
			return sample{}, err
		}
	}
	errs := make([]error, len(cmds))
	var wg sync.WaitGroup
	for i, c := range cmds {
		wg.Go(func() { errs[i] = c.Wait() })
	}
	wg.Wait()
	var s sample
	s.wall = time.Since(t0)
	for i, c := range cmds {
		if errs[i] != nil {
			return s, fmt.Errorf("client %d (%s): %w\n%s", i, strings.Join(c.Args, " "), errs[i], tail(outs[i].Bytes(), 3000))
		}
		n, err := wireBytes(outs[i].Bytes())
		if err != nil {
			return s, fmt.Errorf("client %d (%s): %w\n%s", i, strings.Join(c.Args, " "), err, tail(outs[i].Bytes(), 3000))
		}
		s.wire += n
		if check != nil {
			if err := check(outs[i].Bytes()); err != nil {
				return s, fmt.Errorf("client %d (%s): %w\n%s", i, strings.Join(c.Args, " "), err, tail(outs[i].Bytes(), 3000))
			}
		}
		rss, _, err := readTimed(c.Args[4])
		if err != nil {
			return s, fmt.Errorf("client %d: %w", i, err)
		}
		s.clientRSS = max(s.clientRSS, rss)
	}
	return s, ctx.Err()
}

// diffTrees fails unless the client folder holds exactly the served tree
// (the client's own .smartclient and backups aside, and the smartclient.ini
// the harness writes into ours' folders; no served tree holds one, see
// noClientINI).
func diffTrees(ctx context.Context, served, client string) error {
	cmd := exec.CommandContext(ctx, "diff", "-r", "-q", "--no-dereference",
		"--exclude=.smartclient", "--exclude=bkp_remote.*", "--exclude="+clientINI, served, client)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		return fmt.Errorf("client folder %s differs from the served tree %s (%v):\n%s", client, served, err, tail(out, 3000))
	}
	return nil
}

// prepare makes the starting state of one run: n fresh client folders, by
// cp -a for one client, by hard links for several (neither tool writes a
// file in place; the template fingerprints check it), with a real copy of
// ours' .smartclient, whose lock file must not be shared. It ends with a
// sync(2), so that the timed part never flushes the copy's dirty pages.
//
// A run's copies are left in place until the scenario ends, and the next
// run gets folders of its own: removing files just before a timed run made
// that run slow for either tool, because on this machine's ext4, which has
// no journal, the kernel then skips every recently freed inode one by one
// when it creates a file (ext4's recently_deleted(), a minute or more),
// and the tool that creates more files paid more. Only the copies of
// several no-op clients are removed before each run: they are hard links,
// whose removal frees no inode of the template's, the clients create no
// file, and 64 copies a run would fill the disk with folders.
//
// Each of ours' folders also gets the smartclient.ini of srv (see
// writeClientINI).
func (b *bench) prepare(ctx context.Context, tool string, sc scenario, srv *server) ([]string, error) {
	base := filepath.Join(b.runDir, "client")
	keep := sc.clients == 1 || sc.start != sc.serve
	if !keep {
		if err := os.RemoveAll(base); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, err
	}
	b.seq++
	dests := make([]string, sc.clients)
	var wg sync.WaitGroup
	errs := make([]error, sc.clients)
	sem := make(chan struct{}, max(2, runtime.NumCPU()))
	for i := range dests {
		switch {
		case sc.clients == 1:
			dests[i] = filepath.Join(base, fmt.Sprintf("%s-run%03d", tool, b.seq))
		case keep:
			dests[i] = filepath.Join(base, fmt.Sprintf("%s-run%03d-%02d", tool, b.seq, i))
		default:
			dests[i] = filepath.Join(base, fmt.Sprintf("%s-%02d", tool, i))
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = b.prepareOne(ctx, tool, sc, dests[i], srv)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	syscall.Sync()
	return dests, nil
}

func (b *bench) prepareOne(ctx context.Context, tool string, sc scenario, dest string, srv *server) error {
	if err := b.copyStart(ctx, tool, sc, dest); err != nil {
		return err
	}
	if tool == "ours" {
		return b.writeClientINI(dest, srv)
	}
	return nil
}

func (b *bench) copyStart(ctx context.Context, tool string, sc scenario, dest string) error {
	if sc.start == "" {
		return os.Mkdir(dest, 0o755)
	}
	src := filepath.Join(b.tmpl, tool+"-"+sc.start)
	if sc.clients == 1 {
		return command(ctx, "", "cp", "-a", src, dest)
	}
	if err := command(ctx, "", "cp", "-al", src, dest); err != nil {
		return err
	}
	if tool == "ours" {
		st := filepath.Join(dest, ".smartclient")
		if err := os.RemoveAll(st); err != nil {
			return err
		}
		return command(ctx, "", "cp", "-a", filepath.Join(src, ".smartclient"), st)
	}
	return nil
}

// clientINI is the file the harness writes into each of ours' folders.
const clientINI = "smartclient.ini"

// writeClientINI writes dest/smartclient.ini: with TLS, [SSL] Fingerprint
// pins the key srv logged, so the client neither trusts on first use nor
// records anything in .smartclient/known_servers.json (the templates hold
// none), and the key of another benchmark server once seen at the same
// port cannot refuse it; with -plaintext, [SSL] AllowPlaintext=1. The
// server comes from --server. A file left by a copy is removed first: one
// hard-linked to a template must not be written through.
func (b *bench) writeClientINI(dest string, srv *server) error {
	ini := "; generated by scripts/bench\n[SSL]\n"
	if b.plain {
		ini += "AllowPlaintext=1\n"
	} else {
		if srv.fingerprint == "" {
			return fmt.Errorf("the appserver at %s logged no tls_fingerprint (log %s)", srv.addr, srv.log)
		}
		ini += "Fingerprint=" + srv.fingerprint + "\n"
	}
	p := filepath.Join(dest, clientINI)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.WriteFile(p, []byte(ini), 0o644)
}

// noClientINI fails when a served tree holds a file named smartclient.ini,
// which diffTrees would not compare.
func noClientINI(tree string) error {
	return filepath.WalkDir(tree, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() == clientINI {
			return fmt.Errorf("%s: the served trees must not hold a %s, which the harness writes into ours' client folders and diff -r leaves out", path, clientINI)
		}
		return nil
	})
}

// checkTransport fails unless ours' output shows the transport of this
// run: the client warns on every sync over plain TCP, and only then.
func (b *bench) checkTransport(out []byte) error {
	warned := bytes.Contains(out, []byte("over plain TCP"))
	switch {
	case b.plain && !warned:
		return errors.New("-plaintext, but the client did not say it connected over plain TCP")
	case !b.plain && warned:
		return errors.New("the client connected over plain TCP, not TLS")
	}
	return nil
}

// transport names ours' transport for the header.
func (b *bench) transport() string {
	if b.plain {
		return "plain TCP (-plaintext: [SSL] AllowPlaintext=1 in the AppServer.ini the harness writes and in a smartclient.ini in each client folder)"
	}
	return "TLS 1.3 (the default; each client folder's smartclient.ini pins the key of its scenario's server with [SSL] Fingerprint, so no client trusts on first use or records a key in a timed run)"
}

// scenario runs one scenario: a fresh appserver and rsync daemon, then ours
// and rsync alternately, a warm-up and b.runs counted runs each.
func (b *bench) scenario(ctx context.Context, sc scenario) ([]*result, error) {
	row := b.rowName(sc)
	step("scenario %s (%s): %d client(s), server serves %s, client starts from %q", sc.name, row, sc.clients, sc.serve, sc.start)
	tag := strings.ReplaceAll(sc.name, " ", "-")
	ours, err := b.startOurs(ctx, sc.serve, tag)
	if err != nil {
		return nil, err
	}
	defer ours.stop()
	rs, err := b.startRsync(ctx, tag)
	if err != nil {
		return nil, err
	}
	defer rs.stop()
	// The addresses the clients dial: the servers', or the relays' in
	// front of them. A relay is transparent TCP, so ours' TLS, with the
	// server's key pinned, runs through it end to end.
	addr := map[string]string{"ours": ours.addr, "rsync": rs.addr}
	relays := map[string]*relay.Relay{}
	if sc.relay {
		rlog := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		for tool, target := range map[string]string{"ours": ours.addr, "rsync": rs.addr} {
			r, err := relay.Listen(ctx, rlog, "127.0.0.1:0", target, b.link)
			if err != nil {
				return nil, err
			}
			defer r.Close()
			relays[tool] = r
			addr[tool] = r.Addr()
		}
		step("  through relays at %s: ours via %s, rsync via %s", b.linkName(), addr["ours"], addr["rsync"])
	}
	served := b.dirs[sc.serve]
	res := map[string]*result{}
	for _, tool := range []string{"ours", "rsync"} {
		res[tool] = &result{scenario: row, tool: tool, clients: sc.clients, syncs: sc.clients * b.runs, relayed: sc.relay}
	}
	for i := 0; i <= b.runs; i++ {
		if i == 1 {
			// Let the daemon reap the warm-up's children, then mark the
			// CPU both servers have used so far.
			time.Sleep(300 * time.Millisecond)
			if err := ours.markCPU(b.clkTck); err != nil {
				return nil, err
			}
			if err := rs.markCPU(b.clkTck); err != nil {
				return nil, err
			}
		}
		order := []string{"ours", "rsync"}
		if i%2 == 1 {
			order = []string{"rsync", "ours"}
		}
		for _, tool := range order {
			dests, err := b.prepare(ctx, tool, sc, ours)
			if err != nil {
				return nil, fmt.Errorf("preparing the %s clients: %w", tool, err)
			}
			cmds := make([]*exec.Cmd, len(dests))
			var check func([]byte) error
			for k, d := range dests {
				if tool == "ours" {
					cmds[k] = b.oursCmd(ctx, addr[tool], d, sc.ours...)
					check = b.checkTransport
				} else {
					cmds[k] = rsyncCmd(ctx, addr[tool], sc.serve, d, b.rsyncExtra(sc)...)
				}
			}
			var up0, down0 int64
			if r := relays[tool]; r != nil {
				up0, down0 = r.Bytes()
			}
			s, err := runMany(ctx, cmds, check)
			if r := relays[tool]; r != nil {
				up, down := r.Bytes()
				s.relayBytes = up - up0 + down - down0
			}
			if err != nil {
				if tool == "ours" {
					data, _ := os.ReadFile(ours.log)
					err = fmt.Errorf("%w\nappserver log (%s):\n%s", err, ours.log, tail(data, 2000))
				}
				return nil, err
			}
			label := "warm-up"
			if i > 0 {
				label = fmt.Sprintf("run %d/%d", i, b.runs)
				res[tool].samples = append(res[tool].samples, s)
			}
			through := ""
			if sc.relay {
				through = "  through the relay " + fmtBytes(float64(s.relayBytes))
			}
			step("  %-5s %-9s %8.3f s  wire %s  client RSS %s%s", tool, label, s.wall.Seconds(), fmtBytes(float64(s.wire)), fmtKiB(s.clientRSS), through)
			if i == 0 || i == b.runs {
				check := []string{dests[0]}
				if len(dests) > 1 {
					check = append(check, dests[len(dests)-1])
				}
				for _, d := range check {
					if err := diffTrees(ctx, served, d); err != nil {
						return nil, fmt.Errorf("%s, %s: %w", tool, label, err)
					}
				}
			}
		}
	}
	if err := os.RemoveAll(filepath.Join(b.runDir, "client")); err != nil {
		return nil, err
	}
	syscall.Sync()
	time.Sleep(300 * time.Millisecond)
	ours.stop()
	rs.stop()
	for tool, s := range map[string]*server{"ours": ours, "rsync": rs} {
		var err error
		res[tool].serverCPU, res[tool].serverRSS, err = s.usage()
		if err != nil {
			return nil, err
		}
	}
	return []*result{res["ours"], res["rsync"]}, nil
}

func (b *bench) header(ctx context.Context, w io.Writer, args []string, specs []treeSpec, took time.Duration) {
	fmt.Fprintf(w, "## smartsync vs rsync, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "- command: `go run ./scripts/bench%s` (work folder %s)\n", strings.TrimRight(" "+strings.Join(args, " "), " "), b.work)
	fmt.Fprintf(w, "- commit: %s (read when the binaries were built; built with CGO_ENABLED=0)\n", b.commit)
	fmt.Fprintf(w, "- machine: nproc %s, memory %s, %s\n", strings.TrimSpace(outputOf(ctx, "", "nproc")), memTotal(), kernel())
	fmt.Fprintf(w, "- disk (df -h of the work folder): %s\n", dfLine(ctx, b.work))
	fmt.Fprintf(w, "- ours' transport: %s\n", b.transport())
	fmt.Fprintf(w, "- rsync: %s\n", firstLine(outputOf(ctx, "", "rsync", "--version")))
	fmt.Fprintf(w, "- %d counted runs per scenario and tool after 1 warm-up, ours and rsync alternately; whole harness %.0f s\n", b.runs, took.Seconds())
	fmt.Fprintf(w, "- trees from ../shared/benchdata, which is deterministic: the same flags and seed give a byte-identical tree (names, sizes, contents, mtimes) on any machine:\n")
	for _, s := range specs {
		if s.from == "" {
			fmt.Fprintf(w, "  - %s = `gen %s`\n", s.name, strings.Join(s.args, " "))
		} else {
			fmt.Fprintf(w, "  - %s = `next -in %s %s`\n", s.name, s.from, strings.Join(s.args, " "))
		}
	}
	if len(b.goDesc) > 0 {
		fmt.Fprintf(w, "- Go trees from the Go module proxy (GOPROXY=%s), `go mod download -json` and extracted once (module prefix stripped, the zip's modes and mtimes kept) into %s:\n", strings.TrimSpace(outputOf(ctx, "", goCmd(), "env", "GOPROXY")), b.top)
		for _, r := range goReleases {
			if d, ok := b.goDesc[r.tree]; ok {
				files, size := treeSize(b.dirs[r.tree])
				fmt.Fprintf(w, "  - %s = %s: %d files, %s\n", r.tree, d, files, fmtBytes(float64(size)))
			}
		}
	}
	if b.anyRelay {
		rz := "rsync without -z, as in every row"
		if b.relayZ {
			rz = "rsync with -z (-relay-rsync-z)"
		}
		fmt.Fprintf(w, "- relay (the rows \"via ...\"): %s, a token bucket per direction shared by the relay's connections, writes of %d KiB; ours with --compress yes there, %s\n", b.linkName(), relay.DefaultChunk>>10, rz)
	}
	fmt.Fprintln(w)
}

// rsyncExtra is what rsync gets on top of -a --delete --stats.
func (b *bench) rsyncExtra(sc scenario) []string {
	if sc.relay && b.relayZ {
		return []string{"-z"}
	}
	return nil
}

// rowName is a scenario's row in the table: its title (or name), and the
// link for a relayed one.
func (b *bench) rowName(sc scenario) string {
	n := sc.name
	if sc.title != "" {
		n = sc.title
	}
	if sc.relay {
		n += " via " + b.linkName()
	}
	return n
}

// linkName describes the relay's link: "20 Mbit/s, 10ms one way".
func (b *bench) linkName() string {
	n := strconv.FormatFloat(b.mbit, 'f', -1, 64) + " Mbit/s"
	if b.link.Latency > 0 {
		n += ", " + b.link.Latency.String() + " one way"
	}
	return n
}

// treeSize counts a tree's regular files and their bytes.
func treeSize(dir string) (files int, size int64) {
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				files++
				size += fi.Size()
			}
		}
		return nil
	})
	return files, size
}

// writeExtraNotes says how the go-upgrade and relayed rows were measured,
// when the table holds any, with the bytes that crossed the relay.
func (b *bench) writeExtraNotes(w io.Writer, results []*result) {
	var relayed []*result
	goRows := false
	for _, r := range results {
		if r.relayed {
			relayed = append(relayed, r)
		}
		if strings.HasPrefix(r.scenario, goUpgradeTitle) {
			goRows = true
		}
	}
	if goRows {
		fmt.Fprintf(w, "\ngo-upgrade: the server serves go1.25.1 (build %s), the client starts from go1.25.0: ours from a folder synced once from a server of go1.25.0 (build %s; the same state folder as the go1.25.1 server, as one server publishing both releases would have), rsync from a plain copy (cp -a) of go1.25.0. Every file's mtime differs between the two releases, so rsync's quick check passes no file and it runs its delta over all of them.\n", newBuild, oldBuild)
	}
	if len(relayed) > 0 {
		rz := "rsync runs without -z, as in every row"
		if b.relayZ {
			rz = "rsync runs with -z there (-relay-rsync-z)"
		}
		fmt.Fprintf(w, "\nvia %s: ours (smartclient --server RELAY) and rsync (rsync://RELAY/MODULE/) each through a relay of their own on 127.0.0.1 in front of the same servers (scripts/bench/relay: a token bucket per direction, %d KiB writes, each chunk delivered %v after it left); one tool runs at a time, so each has the link to itself. Ours runs with --compress yes there, which is what its --compress auto chooses on any link that is not loopback (through the relay it sees 127.0.0.1 and would not compress); %s. The wire column is the tools' own count as in every row; the relay's count, the TCP payload in both directions (ours' TLS handshake and records included), median of the counted runs:\n\n", b.linkName(), relay.DefaultChunk>>10, b.link.Latency, rz)
		for _, r := range relayed {
			var v []float64
			for _, s := range r.samples {
				v = append(v, float64(s.relayBytes))
			}
			fmt.Fprintf(w, "- %s, %s: %s\n", r.scenario, r.tool, fmtBytes(median(v)))
		}
	}
}

func outputOf(ctx context.Context, dir, name string, args ...string) string {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "(" + name + ": " + err.Error() + ")"
	}
	return string(out)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.Join(strings.Fields(s), " ")
}

func memTotal() string {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb := parseCount(v)
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

func dfLine(ctx context.Context, dir string) string {
	lines := strings.Split(strings.TrimSpace(outputOf(ctx, "", "df", "-h", dir)), "\n")
	if len(lines) < 2 {
		return strings.Join(lines, " ")
	}
	f := strings.Fields(lines[len(lines)-1])
	if len(f) < 6 {
		return lines[len(lines)-1]
	}
	return fmt.Sprintf("%s on %s, size %s, used %s, available %s", f[0], f[5], f[1], f[2], f[3])
}

func median(d []float64) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func (r *result) walls() []float64 {
	var v []float64
	for _, s := range r.samples {
		v = append(v, s.wall.Seconds())
	}
	return v
}

func (r *result) wires() []float64 {
	var v []float64
	for _, s := range r.samples {
		v = append(v, float64(s.wire))
	}
	return v
}

func (r *result) clientRSS() int64 {
	var m int64
	for _, s := range r.samples {
		m = max(m, s.clientRSS)
	}
	return m
}

func (r *result) cpuPerSync() float64 {
	return r.serverCPU.Seconds() / float64(r.syncs)
}

func fmtBytes(n float64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", n/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2f MB", n/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f KB", n/1e3)
	}
	return fmt.Sprintf("%.0f B", n)
}

func fmtKiB(k int64) string {
	return fmt.Sprintf("%.1f MiB", float64(k)/1024)
}

func fmtDur(s float64) string {
	switch {
	case s >= 10:
		return fmt.Sprintf("%.1f", s)
	case s >= 1:
		return fmt.Sprintf("%.2f", s)
	}
	return fmt.Sprintf("%.3f", s)
}

func fmtCPU(s float64) string {
	if s >= 1 {
		return fmt.Sprintf("%.2f s", s)
	}
	return fmt.Sprintf("%.1f ms", s*1000)
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func writeTable(w io.Writer, results []*result) {
	fmt.Fprintln(w, "| scenario | tool | wall median [min-max] | wire bytes (median) | client peak RSS | server peak RSS | server CPU per client sync | ours/rsync time | ours/rsync wire | ours/rsync server CPU |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	byKey := map[string]*result{}
	for _, r := range results {
		byKey[r.scenario+"/"+r.tool] = r
	}
	for _, r := range results {
		wall := r.walls()
		name := r.scenario
		if r.clients > 1 {
			name += " (time until the last finished; wire summed over clients)"
		}
		tr, wr, cr := "", "", ""
		if r.tool == "ours" {
			if o := byKey[r.scenario+"/rsync"]; o != nil {
				tm, otm := median(wall), median(o.walls())
				tr = ratio(tm, otm)
				if r.clients > 1 && tm > 0 {
					tr += fmt.Sprintf(" (throughput %.2fx)", otm/tm)
				}
				wr = ratio(median(r.wires()), median(o.wires()))
				cr = ratio(r.cpuPerSync(), o.cpuPerSync())
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s s [%s-%s] | %s | %s | %s | %s | %s | %s | %s |\n",
			name, r.tool, fmtDur(median(wall)), fmtDur(slices.Min(wall)), fmtDur(slices.Max(wall)),
			fmtBytes(median(r.wires())), fmtKiB(r.clientRSS()), fmtKiB(r.serverRSS), fmtCPU(r.cpuPerSync()), tr, wr, cr)
	}
	fmt.Fprintln(w)
}

func writeFootnotes(w io.Writer, runs int) {
	fmt.Fprintf(w, `Measured as follows. Wall: monotonic clock from starting the client process(es) to the end of the last one; median, min and max of %d counted runs. Each run starts from a fresh copy of the starting state made before the timed part and flushed with sync(2): cp -a for one client, hard links (cp -al, with a real copy of ours' .smartclient) for several, each run in folders of its own, removed when the scenario ends (those of several no-op clients before each run); the page cache is warm, both tools alike. Ours: bin/smartclient sync --server ADDR --dir DEST --os linux --yes --stats, against a client folder synced once from that tree's server (so with its .smartclient state; cold starts empty) into which the harness writes a smartclient.ini before the timed part: over TLS 1.3 (the default) its [SSL] Fingerprint pins the key the scenario's server logged, so no timed run trusts on first use or records a key; with -plaintext it says [SSL] AllowPlaintext=1, as the AppServer.ini does, and ours runs over plain TCP (the header says which); it verifies every byte with BLAKE3, syncs the file system before the switch and keeps a backup; rsync does none of these. rsync: rsync -a --delete --stats rsync://127.0.0.1:PORT/MODULE/ DEST/ against a plain copy. Wire: ours = received + sent of its stats line, which counts the protocol's bytes above TLS (the TLS handshake and record overhead are not in it, so it is the same with -plaintext); rsync = Total bytes sent + Total bytes received of --stats. Client peak RSS: GNU time's %%M of the client process (for rsync the largest of the client and the receiver it forks; for several clients the largest client); Go's own wait4 rusage is not used, because Go starts children with vfork and Linux then carries the harness's peak RSS into the child's. Server: one appserver and one rsync daemon (--no-detach), each under GNU time, started for each scenario and stopped after it (SIGTERM); ours keeps its hash cache in a state folder between scenarios. Server peak RSS: GNU time's %%M at the server's exit, which for the appserver (one process) covers its start-up indexing and every session, warm-up included, and for rsync is the largest single process, the daemon or one of the per-connection children it forks and reaps (not their sum: with 64 clients, 64 such children run at once). Server CPU per client sync: user+sys of the server process and of the children it reaped, from /proc/PID/stat (utime+stime+cutime+cstime) after the warm-up to GNU time's %%U+%%S at exit (10 ms resolution), divided by the counted client syncs; it includes whatever a server does while idle during the other tool's runs. Correctness: diff -r of the served tree and the client folder (without .smartclient, bkp_remote.* and the harness's smartclient.ini; no served tree holds a smartclient.ini) after the warm-up and the last run of each tool (first and last client when several), and the harness fails on any difference.
`, runs)
}
