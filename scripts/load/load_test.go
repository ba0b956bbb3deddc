//go:build linux

package main

import (
	"strings"
	"testing"
	"time"
)

// TestPlanClients checks that the stampede is the mix asked for: the
// shares scaled to the count, the processes spread over it, the starts
// evenly within the window.
func TestPlanClients(t *testing.T) {
	for _, tc := range []struct {
		clients, procs int
		mix            [3]int
		want           [3]int
	}{
		{500, 10, [3]int{50, 100, 350}, [3]int{50, 100, 350}},
		{50, 10, [3]int{50, 100, 350}, [3]int{5, 10, 35}},
		{7, 0, [3]int{1, 1, 1}, [3]int{2, 2, 3}},
		{3, 3, [3]int{0, 0, 1}, [3]int{0, 0, 3}},
	} {
		c := &config{clients: tc.clients, procs: tc.procs, mix: tc.mix, window: 10 * time.Second}
		cs := planClients(c, "/x")
		var got [3]int
		procs := 0
		for i, cl := range cs {
			got[cl.kind]++
			if cl.proc {
				procs++
			}
			if want := c.window * time.Duration(i) / time.Duration(tc.clients); cl.at != want {
				t.Errorf("%d clients: client %d starts at %v, want %v", tc.clients, i, cl.at, want)
			}
		}
		if got != tc.want || procs != tc.procs || len(cs) != tc.clients {
			t.Errorf("%d clients, mix %v: got %v with %d processes, want %v with %d", tc.clients, tc.mix, got, procs, tc.want, tc.procs)
		}
	}
}

func TestParseFlagsErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-mix", "1/2"}, "-mix"},
		{[]string{"-mix", "0/0/0"}, "-mix"},
		{[]string{"-clients", "0"}, "-clients"},
		{[]string{"-clients", "5", "-procs", "6"}, "-procs"},
		{[]string{"-only", "stampede,bogus"}, `unknown scenario "bogus"`},
		{[]string{"-fds-limit", "10"}, "-fds-limit"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"-update", "MaxTransfers"}, "-update"},
		{[]string{"-update", "A=1\n[TCP]"}, "-update"},
	} {
		_, err := parseFlags(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one naming %s", tc.args, err, tc.want)
		}
	}
	c, err := parseFlags([]string{"-update", " MaxClientBytesPerSecond = 10M ,MaxBytesPerSecond=1G"})
	if err != nil || strings.Join(c.update, ";") != "MaxClientBytesPerSecond=10M;MaxBytesPerSecond=1G" {
		t.Errorf("-update: %q, %v", c.update, err)
	}
	c, err = parseFlags([]string{"-revert=false"})
	if err != nil || c.only["revert"] || !c.only["stampede"] || c.fdsConns != c.fdsLimit+150 {
		t.Errorf("defaults with -revert=false: %+v, %v", c, err)
	}
}

func TestPcts(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if got, want := pcts(ds), "50 ms / 99 ms / 100 ms"; got != want {
		t.Errorf("pcts = %q, want %q", got, want)
	}
	if got := pcts(nil); got != "-" {
		t.Errorf("pcts(nil) = %q", got)
	}
}
