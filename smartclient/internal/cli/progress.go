package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/smartclient"
	"golang.org/x/term"
)

// textProgress draws a bar on a terminal, redrawn in place and fitted to
// the terminal's width at every redraw (a line one column too wide wraps,
// and every redraw then adds a line), or writes a plain line every few
// seconds when the output is a file or a pipe.
type textProgress struct {
	w        io.Writer
	terminal bool
	width    func() int // the terminal's columns; only when terminal
	every    time.Duration

	mu               sync.Mutex
	files, doneFiles int
	bytes, doneBytes int64
	start, last      time.Time
}

// newProgress returns the progress of a download written to w: a redrawn
// bar when w is a terminal, plain lines otherwise.
func newProgress(w io.Writer) smartclient.Progress {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return &textProgress{w: w, every: 2 * time.Second}
	}
	fd := int(f.Fd())
	width := func() int {
		if cols, _, err := term.GetSize(fd); err == nil && cols > 0 {
			return cols
		}
		return 80
	}
	return &textProgress{w: w, terminal: true, width: width, every: 100 * time.Millisecond}
}

func (p *textProgress) Start(files int, bytes int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.files, p.bytes, p.start, p.last = files, bytes, time.Now(), time.Now()
	if files > 0 {
		fmt.Fprintf(p.w, "Downloading %s, %s\n", plural(files, "file"), smartclient.HumanBytes(bytes))
	}
}

func (p *textProgress) Add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.doneBytes += n
	if time.Since(p.last) >= p.every {
		p.draw()
	}
}

func (p *textProgress) FileDone() {
	p.mu.Lock()
	p.doneFiles++
	p.mu.Unlock()
}

func (p *textProgress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.files == 0 {
		return
	}
	p.draw()
	if p.terminal {
		fmt.Fprintln(p.w)
	}
}

// draw writes files, bytes, rate and ETA; the caller holds p.mu.
func (p *textProgress) draw() {
	p.last = time.Now()
	elapsed := time.Since(p.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(p.doneBytes) / elapsed
	}
	eta := "--"
	if rate > 0 && p.doneBytes < p.bytes {
		eta = (time.Duration(float64(p.bytes-p.doneBytes)/rate) * time.Second).Round(time.Second).String()
	} else if p.doneBytes >= p.bytes {
		eta = "0s"
	}
	frac := 1.0
	if p.bytes > 0 {
		frac = float64(p.doneBytes) / float64(p.bytes)
	}
	hb := smartclient.HumanBytes
	files := fmt.Sprintf("%d/%d files", p.doneFiles, p.files)
	sizes := hb(p.doneBytes) + "/" + hb(p.bytes)
	line := fmt.Sprintf("%3.0f%%  %s  %s  %s/s  ETA %s", frac*100, files, sizes, hb(int64(rate)), eta)
	if !p.terminal {
		fmt.Fprintf(p.w, "progress: %s\n", line)
		return
	}
	fmt.Fprintf(p.w, "\r%s\033[K", fit(p.width(), frac, line, fmt.Sprintf("%3.0f%%  %s  %s", frac*100, files, sizes)))
}

// fit makes the redrawn line of a terminal cols wide: a bar of up to 30
// cells before the full line where they fit, the line alone, a shorter
// line, and at last that line cut. It stays one column short of the edge,
// where some terminals wrap as soon as a character lands.
func fit(cols int, frac float64, line, short string) string {
	room := cols - 1
	if room < 1 {
		return ""
	}
	frac = min(max(frac, 0), 1) // a file larger than announced must not break the bar
	const maxBar, minBar = 30, 10
	if bar := min(maxBar, room-len(line)-3); bar >= minBar {
		n := int(frac * float64(bar))
		return "[" + strings.Repeat("#", n) + strings.Repeat(".", bar-n) + "] " + line
	}
	for _, s := range []string{line, short} {
		if len(s) <= room {
			return s
		}
	}
	return short[:room]
}
