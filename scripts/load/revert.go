//go:build linux

package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// revertTest is the end-to-end test that measures the revert: a new server
// that exits at start, and the time from its exit to the old build
// answering a hello again (HealthTimeout 60 s, so a revert that waited for
// the timeout could not pass).
const revertTest = "TestSelfUpdateReverts/exits_at_start$"

var revertRE = regexp.MustCompile(`answered again (\S+) later`)

// revert runs that test and reports its figure.
func (l *load) revert(ctx context.Context) ([]row, []string) {
	sc := "revert: a new server that exits at once (" + strings.TrimSuffix(revertTest, "$") + ", HealthTimeout 60 s)"
	goal := "back on the old build within 5 s of the exit"
	step("revert: go test -count=1 -run '%s' -v ./appserver/", revertTest)
	out, err := command(ctx, l.root, goCmd(), "test", "-count=1", "-run", revertTest, "-v", "./appserver/")
	m := revertRE.FindStringSubmatch(out)
	if err != nil || m == nil {
		msg := "the test printed no figure"
		if err != nil {
			msg = "the test failed: " + firstLine(err.Error())
		}
		return []row{{sc, goal, msg, false}}, []string{"**revert**: go test output:\n\n" + indent(tail([]byte(out), 2000))}
	}
	d, perr := time.ParseDuration(m[1])
	if perr != nil {
		return []row{{sc, goal, "unreadable figure " + m[1], false}}, nil
	}
	return []row{{sc, goal, fmt.Sprintf("%s from the exit to a hello answered by the old build", secs(d)), d <= 5*time.Second}},
		[]string{fmt.Sprintf("**revert**: `go test -count=1 -run '%s' -v ./appserver/` passed; its log: %q", revertTest, strings.TrimSpace(m[0]))}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
