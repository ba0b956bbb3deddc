//go:build ignore

// gotest-summary reads `go test -json` on standard input, prints one line a
// package as results arrive, and at the end a summary: the count of
// top-level tests passed, failed and skipped, every failing test by package
// with its first error line, and every skipped test with its reason. It exits
// 1 when a test or a package failed (a build failure, a panic, a timeout),
// else 0.
//
// It is a helper of scripts/ci-windows, run on the host with
//
//	go run scripts/ci-windows.d/gotest-summary.go < test.json
//
// The build tag keeps it out of ./... (it is not part of the module's code).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action      string
	Package     string
	Test        string
	Elapsed     float64
	Output      string
	ImportPath  string // build-output and build-fail
	FailedBuild string // on a package's fail when its build failed
}

type test struct {
	name   string
	result string   // pass, fail, skip, or "" when it never finished
	lines  []string // its own output and its subtests'
	// frozen keeps the output of a failed run when the test runs again
	// (go test -count=N): its failure, not a later pass, is the result.
	frozen bool
}

type pkg struct {
	name    string
	result  string // pass, fail, skip ("no test files")
	elapsed float64
	tests   map[string]*test
	order   []string
	lines   []string // package-level output (panics, timeouts, FAIL lines)
	build   []string // compiler output when the build failed
}

func main() {
	pkgs := map[string]*pkg{}
	var porder []string
	builds := map[string][]string{} // ImportPath -> build output
	get := func(name string) *pkg {
		p := pkgs[name]
		if p == nil {
			p = &pkg{name: name, tests: map[string]*test{}}
			pkgs[name] = p
			porder = append(porder, name)
		}
		return p
	}

	r := bufio.NewReader(os.Stdin)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			var e event
			if json.Unmarshal(line, &e) != nil || e.Action == "" {
				// Not an event (go test prints some errors as plain text).
				fmt.Print(string(line))
			} else {
				handle(e, get, builds)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "gotest-summary:", err)
			os.Exit(2)
		}
	}
	for name, out := range builds {
		// The build output names the package under test, sometimes with a
		// " [pkg.test]" suffix.
		name = strings.SplitN(name, " ", 2)[0]
		if p := pkgs[name]; p != nil {
			p.build = append(p.build, out...)
		}
	}
	if summary(pkgs, porder) {
		os.Exit(1)
	}
}

func handle(e event, get func(string) *pkg, builds map[string][]string) {
	switch e.Action {
	case "build-output":
		builds[e.ImportPath] = append(builds[e.ImportPath], strings.TrimRight(e.Output, "\n"))
		return
	case "build-fail":
		return
	}
	if e.Package == "" {
		return
	}
	p := get(e.Package)
	if e.Test == "" {
		switch e.Action {
		case "output":
			p.lines = append(p.lines, strings.TrimRight(e.Output, "\n"))
		case "pass", "fail", "skip":
			p.result, p.elapsed = e.Action, e.Elapsed
			progress(p)
		}
		return
	}
	top, _, sub := strings.Cut(e.Test, "/")
	t := p.tests[top]
	if t == nil {
		t = &test{name: top}
		p.tests[top] = t
		p.order = append(p.order, top)
	}
	switch e.Action {
	case "run":
		if !sub {
			if t.result == "fail" {
				t.frozen = true
			} else if !t.frozen {
				t.lines, t.result = nil, ""
			}
		}
	case "output":
		if !t.frozen {
			t.lines = append(t.lines, strings.TrimRight(e.Output, "\n"))
		}
	case "pass", "fail", "skip":
		if !sub && t.result != "fail" {
			t.result = e.Action
		}
	}
}

func progress(p *pkg) {
	var pass, fail, skip int
	for _, t := range p.tests {
		switch t.result {
		case "pass":
			pass++
		case "skip":
			skip++
		default:
			fail++
		}
	}
	switch {
	case p.result == "skip" && len(p.tests) == 0:
		fmt.Printf("?     %s [no test files]\n", p.name)
	case p.result == "fail":
		fmt.Printf("FAIL  %s (%.1fs) %d passed, %d failed, %d skipped\n", p.name, p.elapsed, pass, fail, skip)
	default:
		fmt.Printf("ok    %s (%.1fs) %d passed, %d skipped\n", p.name, p.elapsed, pass, skip)
	}
}

// tailLines is how much of a failing test's output CI_WINDOWS_FAILURES keeps.
const tailLines = 40

// tail is the end of a failing test's output, headed by its name.
func tail(pkg, name string, lines []string) []string {
	if len(lines) > tailLines {
		lines = lines[len(lines)-tailLines:]
	}
	return append([]string{"", "---- " + pkg + " " + name + " (its last lines):"}, lines...)
}

// message is the first line of output that says something: not a
// === RUN/PAUSE/CONT/NAME line, not a --- PASS/FAIL/SKIP line.
func message(lines []string) string {
	for _, l := range lines {
		s := strings.TrimSpace(l)
		if s == "" || strings.HasPrefix(s, "=== ") || strings.HasPrefix(s, "--- ") {
			continue
		}
		return s
	}
	return ""
}

// packageMessage says why a package failed when no test did.
func packageMessage(p *pkg) string {
	if p.build != nil {
		for _, l := range p.build {
			if s := strings.TrimSpace(l); s != "" && !strings.HasPrefix(s, "#") {
				return "build failed: " + s
			}
		}
		return "build failed"
	}
	for _, l := range p.lines {
		s := strings.TrimSpace(l)
		if strings.HasPrefix(s, "panic:") || strings.Contains(s, "timed out") || strings.HasPrefix(s, "fatal error:") {
			return s
		}
	}
	for _, l := range p.lines {
		s := strings.TrimSpace(l)
		if s == "" || s == "FAIL" || strings.HasPrefix(s, "FAIL\t") || strings.HasPrefix(s, "exit status") || s == "PASS" {
			continue
		}
		return s
	}
	return "failed (no output)"
}

func summary(pkgs map[string]*pkg, porder []string) (failed bool) {
	sort.Strings(porder)
	var pass, fail, skip, pkgFail int
	var failures, skips []string
	// died lists the packages whose test binary ended without a word
	// while tests ran (no failure, panic or timeout of its own), or with
	// a crash of the Go runtime the running test's output shows (Wine
	// once faulted in runtime.wirep, in the scheduler): under a loaded
	// Wine that happened to the smartclient and appserver packages,
	// whose tests pass when run again. CI_WINDOWS_DIED names a file to list them in,
	// "PACKAGE REGEXP" a line (REGEXP ".": all its tests, since those
	// after the crash never ran), when they are the only failures.
	var died, diedPkgs []string
	// tails holds the last lines of every failing test's output, for
	// CI_WINDOWS_FAILURES (the end of a CI log is what a reader sees).
	var tails []string
	others := false
	for _, name := range porder {
		p := pkgs[name]
		var pf []string
		for _, tn := range p.order {
			t := p.tests[tn]
			switch t.result {
			case "pass":
				pass++
			case "skip":
				skip++
				reason := message(t.lines)
				if reason == "" {
					reason = "(no reason given)"
				}
				skips = append(skips, fmt.Sprintf("  %s %s: %s", name, tn, reason))
			case "fail":
				fail++
				others = true
				pf = append(pf, fmt.Sprintf("    %s: %s", tn, message(t.lines)))
				tails = append(tails, tail(name, tn, t.lines)...)
			default:
				fail++
				msg := packageMessage(p)
				if msg == "failed (no output)" {
					// A crash of the Go runtime is printed as the
					// test's output. A signal in the runtime's own code
					// (Wine faulted in its scheduler) is Wine's; any
					// other (concurrent map writes, a deadlock, out of
					// memory) is the test's, and final.
					wine := true
					for _, l := range t.lines {
						if s := strings.TrimSpace(l); strings.HasPrefix(s, "fatal error:") {
							msg = "the test binary ended: " + s
							wine = s == "fatal error: unexpected signal during runtime execution"
							break
						}
					}
					if wine {
						died = append(died, tn)
					} else {
						others = true
					}
				} else {
					others = true
				}
				pf = append(pf, fmt.Sprintf("    %s: did not finish: %s", tn, msg))
			}
		}
		if len(died) > 0 {
			// The whole package: the tests after the one that was
			// running when the binary ended never ran.
			diedPkgs = append(diedPkgs, name+" .")
			died = nil
		}
		if p.result == "fail" && len(pf) == 0 {
			others = true
			pkgFail++
			pf = append(pf, "    (package) "+packageMessage(p))
		}
		if len(pf) > 0 {
			failures = append(failures, "  "+name)
			failures = append(failures, pf...)
		}
	}
	fmt.Println()
	fmt.Println("==== Windows test summary (top-level tests) ====")
	fmt.Printf("passed %d, failed %d, skipped %d", pass, fail, skip)
	if pkgFail > 0 {
		fmt.Printf("; %d package(s) failed outside any test", pkgFail)
	}
	fmt.Println()
	if len(failures) > 0 {
		fmt.Println("\nFailing, by package (first error line):")
		for _, l := range failures {
			fmt.Println(l)
		}
	}
	if len(skips) > 0 {
		fmt.Println("\nSkipped, with reason:")
		for _, l := range skips {
			fmt.Println(l)
		}
	}
	if f := os.Getenv("CI_WINDOWS_FAILURES"); f != "" && len(failures) > 0 {
		out := append([]string{"Failing, by package (first error line):"}, failures...)
		out = append(out, tails...)
		os.WriteFile(f, []byte(strings.Join(out, "\n")+"\n"), 0o644)
	}
	if f := os.Getenv("CI_WINDOWS_DIED"); f != "" && len(diedPkgs) > 0 && !others {
		os.WriteFile(f, []byte(strings.Join(diedPkgs, "\n")+"\n"), 0o644)
	}
	return fail > 0 || pkgFail > 0
}
