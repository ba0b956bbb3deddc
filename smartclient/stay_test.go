package smartclient

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/pki/pkitest"
	"github.com/erpupdate/smartsync/internal/testtree"
	"github.com/erpupdate/smartsync/smartclient/internal/servertrust"
	"github.com/erpupdate/smartsync/smartclient/internal/session"
	"github.com/erpupdate/smartsync/syncproto"
)

// staySession is a fake server's side of a staying session.
type staySession struct {
	t     *testing.T
	nc    net.Conn
	w     *syncproto.Writer
	ready func() // waits until the program has set its trap
}

func (s *staySession) send(ms ...syncproto.Message) {
	for _, m := range ms {
		if err := s.w.Write(m); err != nil {
			s.t.Errorf("fake server: %v", err)
		}
	}
	if err := s.w.Flush(); err != nil {
		s.t.Errorf("fake server: %v", err)
	}
}

// hold keeps the session open until the client closes it.
func (s *staySession) hold() { io.Copy(io.Discard, s.nc) }

// waitUntil waits, for a bounded time, until ok holds.
func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after 10 s for %s", what)
		}
	}
}

func heartbeat(s uint32) syncproto.Notice {
	return syncproto.Notice{Kind: syncproto.NoticeHeartbeat, Seconds: s}
}

func countdown(s uint32) syncproto.Notice {
	return syncproto.Notice{Kind: syncproto.NoticeCountdown, Seconds: s, Message: fmt.Sprintf("server restarts in %d s", s)}
}

// TestStayingSession runs a real program beside a session with a fake
// server that sends notices, and checks what the user is told and what
// happens to the program.
func TestStayingSession(t *testing.T) {
	const (
		// The programs note on $MARK that they have set their trap, and
		// that they got SIGTERM; those that end on their own do so when
		// $GO exists, with exit code 3.
		catchTERM  = `trap 'echo got TERM >> "$MARK"; exit 0' TERM; echo ready >> "$MARK"; while :; do sleep 0.1; done`
		ignoreTERM = `trap '' TERM; echo ready >> "$MARK"; while :; do sleep 0.1; done`
		untilGO    = `trap 'echo got TERM >> "$MARK"; exit 0' TERM; echo ready >> "$MARK"; while [ ! -e "$GO" ]; do sleep 0.05; done; exit 3`
	)
	countdownLine := func(s string) string {
		return "The server will restart for an update in " + s + ". Please save your work and quit.\n"
	}
	// On Windows the programs are the test binary as a helper, asked to
	// stop with CTRL_BREAK_EVENT (os.Interrupt to it) and killed with
	// exit code 1.
	program, killed := "sh", 128+9
	windowsProgram := map[string]func(mark, goFile string) []string{
		catchTERM: func(mark, _ string) []string {
			return []string{"oninterrupt", mark, "append", mark, "ready", "sleep", "1h"}
		},
		ignoreTERM: func(mark, _ string) []string {
			return []string{"ignoreinterrupt", "append", mark, "ready", "sleep", "1h"}
		},
		untilGO: func(mark, goFile string) []string {
			return []string{"oninterrupt", mark, "append", mark, "ready", "until", goFile, "exit", "3"}
		},
	}
	if runtime.GOOS == "windows" {
		program, killed = filepath.Base(HelperCommand(t)[0]), 1
	}
	closingLine := "The server is restarting now; closing " + program + ".\n"
	tests := []struct {
		name      string
		program   string
		serve     func(s *staySession)
		goWhen    string // untilGO: create $GO once the output holds this
		interrupt bool   // cancel the context once the program is ready
		wantCode  int
		wantOut   []string // in this order
		notOut    []string
		wantMark  string
		within    time.Duration // goWhen seen within this of the start; 0 for any time
	}{
		{
			name:    "closing stops the program with SIGTERM",
			program: catchTERM,
			serve: func(s *staySession) {
				s.ready()
				s.send(countdown(125), countdown(5), syncproto.Notice{Kind: syncproto.NoticeClosing, Message: "closing"})
				s.hold()
			},
			wantCode: 0,
			wantOut:  []string{countdownLine("2:05"), countdownLine("0:05"), closingLine},
			wantMark: "ready\ngot TERM\n",
		},
		{
			name:    "a program that ignores SIGTERM is killed after the grace",
			program: ignoreTERM,
			serve: func(s *staySession) {
				s.ready()
				s.send(syncproto.Notice{Kind: syncproto.NoticeClosing})
				s.hold()
			},
			wantCode: killed,
			wantOut:  []string{closingLine},
			wantMark: "ready\n",
		},
		{
			name:    "a dropped connection leaves the program running",
			program: untilGO,
			serve: func(s *staySession) {
				s.ready()
				s.send(countdown(3725))
			},
			goWhen:   "the session with the server ended",
			wantCode: 3,
			wantOut:  []string{countdownLine("1:02:05")},
			notOut:   []string{closingLine},
			wantMark: "ready\n",
		},
		{
			name:    "a cancelled restart",
			program: untilGO,
			serve: func(s *staySession) {
				s.ready()
				s.send(countdown(60), syncproto.Notice{Kind: syncproto.NoticeCancelled})
				s.hold()
			},
			goWhen:   "The server restart was cancelled.\n",
			wantCode: 3,
			wantOut:  []string{countdownLine("1:00"), "The server restart was cancelled.\n"},
			notOut:   []string{closingLine},
			wantMark: "ready\n",
		},
		{
			name:    "another message closes the session, not the program",
			program: untilGO,
			serve: func(s *staySession) {
				s.ready()
				s.send(syncproto.ReportAck{}, syncproto.Notice{Kind: syncproto.NoticeClosing})
				s.hold()
			},
			goWhen:   "got ReportAck instead of a notice",
			wantCode: 3,
			notOut:   []string{closingLine},
			wantMark: "ready\n",
		},
		{
			name:    "a malformed notice closes the session, not the program",
			program: untilGO,
			serve: func(s *staySession) {
				s.ready()
				// A notice of kind 9, which does not exist.
				s.nc.Write(syncproto.AppendFrame(nil, syncproto.Notice{Kind: 9}))
				s.hold()
			},
			goWhen:   "unknown notice kind 9",
			wantCode: 3,
			wantMark: "ready\n",
		},
		{
			name:    "heartbeats keep the session and are not shown",
			program: untilGO,
			serve: func(s *staySession) {
				s.ready()
				// Four seconds of heartbeats, longer than the three
				// intervals of one second the client waits for a word.
				for range 8 {
					s.send(heartbeat(1))
					time.Sleep(500 * time.Millisecond)
				}
				s.send(countdown(60), syncproto.Notice{Kind: syncproto.NoticeCancelled})
				s.hold()
			},
			goWhen:   "The server restart was cancelled.\n",
			wantCode: 3,
			wantOut:  []string{countdownLine("1:00"), "The server restart was cancelled.\n"},
			notOut:   []string{"taking it as gone", "kind=4", closingLine},
			wantMark: "ready\n",
		},
		{
			name:    "a silent server is taken as gone after three heartbeats, the program runs on",
			program: untilGO,
			serve: func(s *staySession) {
				s.ready()
				s.send(heartbeat(1))
				s.hold() // and never a word more
			},
			goWhen:   "taking it as gone",
			within:   4 * time.Second,
			wantCode: 3,
			notOut:   []string{closingLine},
			wantMark: "ready\n",
		},
		{
			name:    "a server over its cap of staying sessions, the program runs on",
			program: untilGO,
			serve: func(s *staySession) {
				s.ready()
				s.send(&syncproto.Error{Code: syncproto.CodeBusy, Message: "the server keeps no more than 2 sessions open"})
				s.hold()
			},
			goWhen:   "will not hear of a server restart",
			wantCode: 3,
			notOut:   []string{closingLine},
			wantMark: "ready\n",
		},
		{
			name:    "an interrupt stops the program with SIGTERM",
			program: catchTERM,
			serve: func(s *staySession) {
				s.hold()
			},
			interrupt: true,
			wantCode:  0,
			wantMark:  "ready\ngot TERM\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if runtime.GOOS == "windows" && tc.wantMark == "ready\ngot TERM\n" {
				testtree.SkipUnderWine(t, "wine64 run without a terminal gives the tests no console, and CTRL_BREAK_EVENT goes through the console (GenerateConsoleCtrlEvent: Invalid access)")
			}
			t.Parallel()
			tmp := t.TempDir()
			mark, goFile := filepath.Join(tmp, "mark"), filepath.Join(tmp, "go")
			readMark := func() string { b, _ := os.ReadFile(mark); return string(b) }
			ready := func() { waitUntil(t, "the program to set its trap", func() bool { return readMark() != "" }) }

			ln := pkitest.Listen(t)
			served := make(chan struct{})
			go func() {
				defer close(served)
				nc, err := ln.Accept()
				if err != nil {
					t.Errorf("fake server: %v", err)
					return
				}
				defer nc.Close()
				m, err := syncproto.NewReader(nc).Read()
				if err != nil || m.Type() != syncproto.MsgStay {
					t.Errorf("fake server: got %v, %v; want Stay", m, err)
					return
				}
				tc.serve(&staySession{t: t, nc: nc, w: syncproto.NewWriter(nc), ready: ready})
			}()

			start := time.Now()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c, err := session.Dial(ctx, ln.Addr().String(), 5*time.Second, servertrust.Config{Fingerprint: ln.Fingerprint})
			if err != nil {
				t.Fatal(err)
			}
			out := &testtree.Buffer{}
			log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelInfo}))
			if !c.Stay(log) {
				t.Fatal("could not send Stay")
			}
			o := Options{AllowUnsigned: true, Dir: tmp, Log: log, StopGrace: 300 * time.Millisecond}
			argv := []string{"sh", "-c", strings.NewReplacer(`"$MARK"`, "'"+mark+"'", `"$GO"`, "'"+goFile+"'").Replace(tc.program)}
			if runtime.GOOS == "windows" {
				argv = HelperCommand(t, windowsProgram[tc.program](mark, goFile)...)
			}
			done := make(chan int, 1)
			go func() {
				code, err := runProgram(ctx, o, c, argv, strings.NewReader(""), io.Discard, out)
				if err != nil {
					t.Errorf("runProgram: %v", err)
				}
				done <- code
			}()

			if tc.interrupt {
				ready()
				cancel()
			}
			if tc.goWhen != "" {
				waitUntil(t, fmt.Sprintf("%q in the output", tc.goWhen), func() bool { return strings.Contains(out.String(), tc.goWhen) })
				if took := time.Since(start); tc.within > 0 && took > tc.within {
					t.Errorf("%q after %v, want within %v", tc.goWhen, took, tc.within)
				}
				if err := os.WriteFile(goFile, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var code int
			select {
			case code = <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("the program still runs after 20 s; output:\n%s", out)
			}
			<-served
			got := out.String()
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tc.wantCode, got)
			}
			if m := readMark(); m != tc.wantMark {
				t.Errorf("the program noted %q, want %q", m, tc.wantMark)
			}
			rest := got
			for _, want := range tc.wantOut {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Errorf("output lacks %q (in this order); output:\n%s", want, got)
					break
				}
				rest = rest[i+len(want):]
			}
			for _, not := range tc.notOut {
				if strings.Contains(got, not) {
					t.Errorf("output has %q; output:\n%s", not, got)
				}
			}
		})
	}
}

func TestMinSec(t *testing.T) {
	for s, want := range map[uint32]string{0: "0:00", 5: "0:05", 119: "1:59", 125: "2:05", 3599: "59:59", 3600: "1:00:00", 3725: "1:02:05"} {
		if got := minSec(s); got != want {
			t.Errorf("minSec(%d) = %q, want %q", s, got, want)
		}
	}
}

// TestRunKeepsOnlyTheLastSession: a sync tried again (after a block
// mismatch) may keep a session for each attempt; run reads only the last,
// so the one kept before is closed, and keeping the same one twice
// closes nothing.
func TestRunKeepsOnlyTheLastSession(t *testing.T) {
	open := func() (*conn, net.Conn) {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return session.New(a, 5*time.Second), b
	}
	alive := func(c *conn, peer net.Conn) bool {
		go io.Copy(io.Discard, peer)
		return c.Send(syncproto.Stay{}) == nil
	}
	first, firstPeer := open()
	second, secondPeer := open()
	kept := keepSession(nil, first)
	kept = keepSession(kept, first)
	if kept != first || !alive(first, firstPeer) {
		t.Fatal("keeping the same session again closed it")
	}
	kept = keepSession(kept, second)
	if kept != second {
		t.Fatal("the last session is not the one kept")
	}
	if alive(first, firstPeer) {
		t.Error("the session kept before is still open")
	}
	if !alive(second, secondPeer) {
		t.Error("the last session was closed")
	}
}
