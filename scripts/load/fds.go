//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/erpupdate/smartsync/smartclient"
)

// fds runs the third goal's scenario: a server whose RLIMIT_NOFILE is
// c.fdsLimit, c.fdsConns silent TCP connections held open (more than it
// has descriptors: the kernel queues those it cannot accept), and, with
// them still open, a good client's incremental sync. The server closes
// the silent ones after [LIMITS] HelloTimeout (its default, 10 s), which
// gives descriptors back; the client on this build does not retry a
// connection that failed, so the harness tries it again, for up to 2
// minutes, as a user (or the client's own retry) would.
func (l *load) fds(ctx context.Context) ([]row, []string, error) {
	c := l.c
	ini, err := l.writeINI("fds", l.newDir, newBuild, "")
	if err != nil {
		return nil, nil, err
	}
	srv, err := l.startServerLimited(ctx, "fds", ini, uint64(c.fdsLimit))
	if err != nil {
		return nil, nil, err
	}
	defer srv.stop()
	time.Sleep(500 * time.Millisecond)
	before, err := readProc(srv.pid)
	if err != nil {
		return nil, nil, err
	}
	smp := sample(srv.pid, 100*time.Millisecond)
	step("fds: server limited to %d descriptors (%s); opening %d silent connections", c.fdsLimit, before, c.fdsConns)
	var held []net.Conn
	for range c.fdsConns {
		conn, err := net.DialTimeout("tcp", srv.addr, 2*time.Second)
		if err != nil {
			break // the listen queue is full too
		}
		held = append(held, conn)
	}
	opened := len(held)
	defer func() {
		for _, conn := range held {
			conn.Close()
		}
	}()
	time.Sleep(time.Second) // the server meets EMFILE meanwhile

	d := filepath.Join(l.run, "fds-client")
	if err := copyInstall(ctx, l.tmplOld, d); err != nil {
		return nil, nil, err
	}
	t0 := time.Now()
	attempts := 0
	var lastErr error
	served := false
	for time.Since(t0) < 2*time.Minute && ctx.Err() == nil {
		attempts++
		o := l.options(d, srv.addr, "fds-good-client")
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		_, lastErr = smartclient.Sync(sctx, o)
		cancel()
		if lastErr == nil {
			lastErr = newHasher().compare(d, l.want)
			served = lastErr == nil
			break
		}
		step("fds: attempt %d: %v", attempts, lastErr)
		time.Sleep(time.Second)
	}
	took := time.Since(t0)
	peak := smp.end()
	alive := srv.running()
	emfile := srv.logCount("too many open files")
	step("fds: good client served %v after %d attempt(s) in %.1f s; server running %v; %d log lines with \"too many open files\"", served, attempts, took.Seconds(), alive, emfile)
	// Still serving after it all: a no-op check, once the silent
	// connections are gone.
	for _, conn := range held {
		conn.Close()
	}
	held = nil
	time.Sleep(500 * time.Millisecond)
	o := l.options(d, srv.addr, "fds-after")
	o.CheckOnly = true
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	_, afterErr := smartclient.Sync(sctx, o)
	cancel()
	alive = alive && srv.running()

	sc := fmt.Sprintf("fds: server RLIMIT_NOFILE %d, %d silent connections held, then a good client", c.fdsLimit, c.fdsConns)
	measured := fmt.Sprintf("served: %v (%d attempt(s), %.1f s, tree identical); server running: %v; ran out: %v (%d log lines); a check afterwards: %v",
		served, attempts, took.Seconds(), alive, emfile > 0, emfile, errOr(afterErr, "answered"))
	rows := []row{{sc, "the server keeps running and serves the next good client", measured, served && alive && afterErr == nil && emfile > 0}}
	det := []string{fmt.Sprintf("**fds**: %d connections opened of %d tried; server before: %s; peak: %d open files, %d threads, RSS %s", opened, c.fdsConns, before, peak.fds, peak.threads, mib(peak.rssKiB))}
	if !served {
		det = append(det, fmt.Sprintf("- the good client's last error: %v", lastErr))
	}
	if emfile == 0 {
		det = append(det, "- the server's log never says \"too many open files\": the limit was not reached, so the row does not test anything (raise -fds-conns)")
	}
	if !alive {
		det = append(det, "- server log:\n\n"+indent(srv.logTail()))
	}
	return rows, det, nil
}

func errOr(err error, ok string) string {
	if err != nil {
		return err.Error()
	}
	return ok
}

func indent(s string) string {
	out := "    "
	for _, r := range s {
		out += string(r)
		if r == '\n' {
			out += "    "
		}
	}
	return out
}
