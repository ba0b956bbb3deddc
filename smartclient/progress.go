package smartclient

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Progress receives the progress of a download.
type Progress interface {
	Start(files int, bytes int64)
	Add(bytes int64)
	FileDone()
	Finish()
}

type nopProgress struct{}

func (nopProgress) Start(int, int64) {}
func (nopProgress) Add(int64)        {}
func (nopProgress) FileDone()        {}
func (nopProgress) Finish()          {}

// textProgress draws a bar on a terminal (redrawn in place) or writes a
// plain line every few seconds when the output is a file or a pipe.
type textProgress struct {
	w        io.Writer
	terminal bool
	every    time.Duration

	mu               sync.Mutex
	files, doneFiles int
	bytes, doneBytes int64
	start, last      time.Time
	drawn            bool
}

// NewProgress returns a Progress writing to w; terminal selects the
// redrawn bar.
func NewProgress(w io.Writer, terminal bool) Progress {
	every := 2 * time.Second
	if terminal {
		every = 100 * time.Millisecond
	}
	return &textProgress{w: w, terminal: terminal, every: every}
}

func (p *textProgress) Start(files int, bytes int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.files, p.bytes, p.start, p.last = files, bytes, time.Now(), time.Now()
	if files > 0 {
		fmt.Fprintf(p.w, "Downloading %d files, %s\n", files, humanBytes(bytes))
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
	line := fmt.Sprintf("%d/%d files  %s/%s  %s/s  ETA %s", p.doneFiles, p.files,
		humanBytes(p.doneBytes), humanBytes(p.bytes), humanBytes(int64(rate)), eta)
	if p.terminal {
		const width = 30
		n := int(frac * width)
		fmt.Fprintf(p.w, "\r[%s%s] %3.0f%%  %s\033[K", strings.Repeat("#", n), strings.Repeat(".", width-n), frac*100, line)
		return
	}
	fmt.Fprintf(p.w, "progress: %3.0f%%  %s\n", frac*100, line)
}

// humanBytes formats n in binary units, as file managers show sizes.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
