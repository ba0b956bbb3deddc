//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/erpupdate/smartsync/smartclient"
)

// idle runs the second goal's scenario: c.idle sessions kept open as
// 'smartclient run' keeps them, each the session of a no-op sync that
// stayed (Hello, GetManifest, Report, Stay), from c.idleFolders installed
// folders in turn (a sync locks its folder; the session it keeps does
// not). The server's [LIMITS] are raised to hold them all: the defaults
// (MaxConnections 4000, MaxStaySessions 2000) are below the goal's count.
func (l *load) idle(ctx context.Context) ([]row, []string, error) {
	c := l.c
	dir := filepath.Join(l.run, "idle")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	folders := min(c.idleFolders, max(c.idle, 1))
	step("idle: preparing %d install folders", folders)
	dirs := make([]string, folders)
	for i := range dirs {
		dirs[i] = filepath.Join(dir, fmt.Sprintf("w%03d", i))
		if err := copyInstall(ctx, l.tmplNew, dirs[i]); err != nil {
			return nil, nil, err
		}
	}
	limits := fmt.Sprintf("\n[LIMITS]\nMaxConnections=%d\nMaxPerAddress=%d\nMaxStaySessions=%d\n", c.idle+1000, c.idle+1000, c.idle+100)
	if c.idleMemoryLimit > 0 {
		limits += fmt.Sprintf("MemoryLimitMB=%d\n", c.idleMemoryLimit)
	}
	ini, err := l.writeINI("idle", l.newDir, newBuild, limits)
	if err != nil {
		return nil, nil, err
	}
	srv, err := l.startServer(ctx, "idle", ini)
	if err != nil {
		return nil, nil, err
	}
	defer srv.stop()
	time.Sleep(time.Second)
	before, err := readProc(srv.pid)
	if err != nil {
		return nil, nil, err
	}
	smp := sample(srv.pid, 250*time.Millisecond)
	step("idle: opening %d 'run' sessions (server before: %s)", c.idle, before)

	hold, release := context.WithCancel(ctx)
	defer release()
	var kept atomic.Int64
	var failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	apps := make([][]*smartclient.Application, folders)
	t0 := time.Now()
	var wg sync.WaitGroup
	for f := range folders {
		share := c.idle / folders
		if f < c.idle%folders {
			share++
		}
		wg.Go(func() {
			for i := range share {
				if ctx.Err() != nil {
					return
				}
				app := &smartclient.Application{}
				o := l.options(dirs[f], srv.addr, fmt.Sprintf("idle-%03d", f))
				app.Keep(&o)
				// The session lives as long as the context it was opened
				// with (as 'run' has its program's): the scenario's, not
				// one cancelled when the sync returns. The library's own
				// timeouts bound each step.
				_, err := smartclient.Sync(hold, o)
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = fmt.Errorf("folder %d, session %d: %w", f, i, err) })
					app.Close()
					continue
				}
				apps[f] = append(apps[f], app)
				if n := kept.Add(1); n%1000 == 0 {
					step("idle: %d sessions open", n)
				}
			}
		})
	}
	wg.Wait()
	opened := time.Since(t0)
	closeAll := func() {
		for _, as := range apps {
			for _, a := range as {
				a.Close()
			}
		}
		apps = nil
	}
	defer closeAll()
	if c.idleHold > 0 {
		step("idle: holding the sessions for %s (-idle-hold)", c.idleHold)
	}
	select {
	case <-time.After(2*time.Second + c.idleHold):
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	held, err := readProc(srv.pid)
	if err != nil {
		return nil, nil, fmt.Errorf("the server is gone with the sessions open: %w\n%s", err, srv.logTail())
	}
	heldHeap := srv.heapLine()
	step("idle: %d sessions kept (%d failed) in %.1f s; server: %s", kept.Load(), failed.Load(), opened.Seconds(), held)

	// One sync of each kind, started with the sessions open, one after
	// the other.
	times := map[int]time.Duration{}
	var syncErrs []error
	for _, k := range []int{incremental, cold, noop} {
		d := filepath.Join(dir, "meanwhile-"+kindNames[k])
		switch k {
		case incremental:
			err = copyInstall(ctx, l.tmplOld, d)
		case noop:
			err = copyInstall(ctx, l.tmplNew, d)
		}
		if err != nil {
			return nil, nil, err
		}
		p := newProbe()
		o := l.options(d, srv.addr, "meanwhile-"+kindNames[k])
		o.Log, o.Progress, o.Out = slogNew(p), p, p
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		res, err := smartclient.Sync(sctx, o)
		cancel()
		r := p.result(res, err)
		if err == nil {
			err = newHasher().compare(d, l.want)
		}
		if err != nil {
			syncErrs = append(syncErrs, fmt.Errorf("%s sync: %w", kindNames[k], err))
			continue
		}
		times[k] = r.done
	}
	peak := smp.end()
	alive := srv.running()
	// A staying session is logged when it ends: close them, then count.
	closeAll()
	time.Sleep(3 * time.Second)
	stayed := srv.logCount("outcome=stayed")
	refusedStay := srv.logCount("stay refused")
	after, _ := readProc(srv.pid)
	step("idle: syncs meanwhile: incremental %s, cold %s, no-op %s", secs(times[incremental]), secs(times[cold]), secs(times[noop]))

	holdFor := ""
	if c.idleHold > 0 {
		holdFor = " for " + c.idleHold.String()
	}
	memory := ""
	if c.idleMemoryLimit > 0 {
		memory = fmt.Sprintf(", MemoryLimitMB=%d", c.idleMemoryLimit)
	}
	sc := fmt.Sprintf("idle: %d 'run' sessions held open%s ([LIMITS] raised to hold them%s)", c.idle, holdFor, memory)
	sessionsOK := kept.Load() == int64(c.idle) && stayed >= c.idle
	perSession := 0.0
	if kept.Load() > 0 {
		perSession = float64(held.rssKiB-before.rssKiB) / float64(kept.Load())
	}
	syncOK := len(syncErrs) == 0 && times[incremental] < time.Second && times[cold] < time.Second && times[noop] < time.Second
	rows := []row{
		{sc, "every session kept open", fmt.Sprintf("%d of %d kept (server logged %d stayed, %d stay refused; %d failed)", kept.Load(), c.idle, stayed, refusedStay, failed.Load()), sessionsOK},
		{sc, "server RSS ≤ 200 MiB", fmt.Sprintf("%s with the sessions open (%s before them, %.1f KiB per session); peak %s", mib(held.rssKiB), mib(before.rssKiB), perSession, mib(peak.hwmKiB)), held.rssKiB <= 200*1024 && alive},
		{sc, "a sync started meanwhile finishes in under 1 s", fmt.Sprintf("incremental %s, cold %s, no-op %s (one after the other)", secs(times[incremental]), secs(times[cold]), secs(times[noop])), syncOK},
	}
	var d []string
	d = append(d, fmt.Sprintf("**idle**: %d sessions opened in %.1f s (%.0f per second; each a no-op sync whose session stays, from %d folders in turn); server before: %s; with them open: %s; peak: RSS %s, %d threads, %d open files",
		kept.Load(), opened.Seconds(), float64(kept.Load())/opened.Seconds(), folders, before, held, mib(peak.rssKiB), peak.threads, peak.fds))
	if heldHeap != "" {
		d = append(d, "- with the sessions open: "+heldHeap)
	}
	d = append(d, fmt.Sprintf("- after the sessions closed (3 s later): %s", after))
	if firstErr != nil {
		d = append(d, fmt.Sprintf("- first failed session: %v", firstErr))
	}
	if len(syncErrs) > 0 {
		d = append(d, fmt.Sprintf("- syncs meanwhile failed: %v", errors.Join(syncErrs...)))
	}
	return rows, d, nil
}
