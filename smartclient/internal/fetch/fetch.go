// Package fetch receives a release's files into the staging folder: the
// request (whole files, patches from the installed versions that the
// server offers from its history, or deltas from the installed versions
// by their content-defined chunks or rsync-style block sums), the
// receiving loop that verifies every file's size and BLAKE3 hash as it
// streams, the writers beside it, the links made in staging, and the
// files a failed transfer keeps for the next one.
//
// It imports the install, state, manifest and session packages, and
// nothing else of the client.
package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest"
	"github.com/erpupdate/smartsync/smartclient/internal/session"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"
)

// Request asks on c for the files to fetch, in order: whole files by
// their indices, those deltas holds (see PlanDeltas) with PatchRequest,
// DeltaRequest or BlockRequest; then RequestEnd.
func Request(c *session.Conn, indices []int, deltas map[int]*Delta) error {
	c.ExtendWrite()
	var batch []uint32
	flush := func() error {
		for len(batch) > 0 {
			n := min(len(batch), syncproto.MaxRequestBatch)
			if err := c.Write(syncproto.Request{Indices: batch[:n]}); err != nil {
				return err
			}
			batch = batch[n:]
		}
		batch = nil
		return nil
	}
	for _, i := range indices {
		d := deltas[i]
		if d == nil {
			batch = append(batch, uint32(i))
			continue
		}
		if err := flush(); err != nil {
			return err
		}
		if d.patch != nil {
			c.ExtendWrite()
			if err := c.Write(syncproto.PatchRequest{Index: uint32(i), Base: d.patch.Base}); err != nil {
				return err
			}
			continue
		}
		if d.sums != nil {
			c.ExtendWrite()
			req := syncproto.BlockRequest{Index: uint32(i), BlockSize: uint32(d.blockSize), BaseSize: uint64(d.baseSize), Sums: d.sums}
			if err := c.Write(req); err != nil {
				return err
			}
			continue
		}
		flags := uint8(0)
		if d.wantList {
			flags |= syncproto.DeltaWantList
		}
		for k := 0; k == 0 || k < len(d.base); k += syncproto.MaxChunkRefs {
			req := syncproto.DeltaRequest{Index: uint32(i), Bits: d.bits, Flags: flags,
				Chunks: d.base[k:min(k+syncproto.MaxChunkRefs, len(d.base))]}
			if k+syncproto.MaxChunkRefs < len(d.base) {
				req.Flags |= syncproto.DeltaMore
			}
			c.ExtendWrite()
			if err := c.Write(req); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if err := c.Write(syncproto.RequestEnd{}); err != nil {
		return err
	}
	return c.Flush()
}

// ErrVerify marks content that does not match the manifest.
var ErrVerify = errors.New("smartclient: received file does not match the manifest")

// ErrBlockMismatch marks, beside ErrVerify, a file built from the
// installed version by block sums: a false match of those sums, or a
// lie, which the same sync without block sums does not repeat.
var ErrBlockMismatch = errors.New("built from the installed version by block sums")

// Progress receives the progress of a transfer.
type Progress interface {
	Add(bytes int64)
	FileDone()
}

// Fetcher receives requested files into the staging folder.
type Fetcher struct {
	c        *session.Conn
	root     *install.Disk // the install folder
	man      *manifest.Manifest
	progress Progress
	dec      *zstd.Decoder
	buf      []byte
	wire     int64 // compressed bytes of file data received
	deltas   map[int]*Delta
	log      *slog.Logger
	copied   int64 // bytes taken from installed versions (deltas)
	patched  int   // files received as patches
	writers  *writers
	flush    *install.Flusher
}

// New returns the Fetcher of the files of man that were requested on c
// with deltas (see Request), into the staging folder of root.
func New(c *session.Conn, root *install.Disk, man *manifest.Manifest, deltas map[int]*Delta, progress Progress, log *slog.Logger) *Fetcher {
	return &Fetcher{c: c, root: root, man: man, deltas: deltas, progress: progress, log: log}
}

// Wire returns the compressed bytes of file data received.
func (f *Fetcher) Wire() int64 { return f.wire }

// Copied returns the bytes taken from installed versions (deltas).
func (f *Fetcher) Copied() int64 { return f.copied }

// Patched returns the files received as patches from their installed
// versions; their patches' bytes count in Wire.
func (f *Fetcher) Patched() int { return f.patched }

// Fetch receives every file of order, as requested, into staging,
// verifying each one's size and BLAKE3 hash as it streams. A file that
// fails its check is an error wrapping ErrVerify (and ErrBlockMismatch
// when it was built from block sums), and leaves nothing staged under its
// name: only whole, verified files stay staged.
func (f *Fetcher) Fetch(ctx context.Context, order []int) error {
	dec, err := syncproto.NewChunkDecoder()
	if err != nil {
		return fmt.Errorf("starting decompressor: %w", err)
	}
	defer dec.Close()
	f.dec = dec
	f.buf = make([]byte, 0, syncproto.MaxChunk)
	// A writer that fails stops the receiving, which may be waiting
	// for the server: its error, not the interrupted read's, is the
	// sync's.
	f.writers = startWriters(f.root, f.c.Interrupt)
	f.flush = install.NewFlusher(f.root)
	err = f.receive(ctx, order)
	// Whatever happened, no writer may still be at work when the caller
	// keeps or removes what is staged.
	if werr := f.writers.wait(); werr != nil {
		err = werr
	}
	f.c.Resume()
	if ferr := f.flush.Wait(); err == nil {
		err = ferr
	}
	// The buffers are garbage now, before the switch needs memory.
	f.writers, f.buf, f.dec, f.flush = nil, nil, nil, nil
	return err
}

func (f *Fetcher) receive(ctx context.Context, order []int) error {
	made := map[string]bool{}
	for _, i := range order {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("receiving files: %w", err)
		}
		rf := f.man.File(i)
		dir := path.Dir(install.StagingDir + "/" + rf.Path)
		if !made[dir] {
			if err := f.root.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("creating staging folder: %w", err)
			}
			made[dir] = true
		}
		if err := f.writers.failed(); err != nil {
			return err
		}
		if err := f.fetchOne(ctx, i, rf); err != nil {
			return err
		}
		f.flush.Wrote(rf.Size)
	}
	return nil
}

// receiveSmall receives a file of at most wholeMax bytes into memory and
// hands it to a writer, so that receiving the next file and writing this
// one overlap (on two cores the client's file system calls are most of a
// sync of many small files). A file asked for whole is checked here; one
// asked for as a delta (d not nil) arrives as its new bytes and the
// pieces of the installed version to copy, which a writer puts together
// and checks (reading the installed version is most of its cost).
func (f *Fetcher) receiveSmall(rf manifest.File, d *Delta) error {
	buf := f.writers.buffer()
	job := writeJob{rf: rf, d: d}
	var h *blake3.Hasher
	if d == nil {
		h = blake3.New()
	}
	fail := func(err error) error {
		f.writers.release(buf)
		return err
	}
	var got int64
	for got < rf.Size {
		m, err := f.c.Read()
		if err != nil {
			return fail(fmt.Errorf("receiving %s: %w", rf.Path, err))
		}
		switch m := m.(type) {
		case syncproto.FileData:
			if got+int64(m.RawLen) > rf.Size {
				return fail(fmt.Errorf("receiving %s: more bytes than the %d declared: %w", rf.Path, rf.Size, ErrVerify))
			}
			f.wire += int64(len(m.Data))
			// Decoded straight into the file's buffer, which has room
			// for the whole file: no copy through a chunk buffer.
			tail := buf[len(buf):]
			raw, err := syncproto.DecodeChunk(f.dec, m, tail)
			if err != nil {
				return fail(fmt.Errorf("receiving %s: %w", rf.Path, err))
			}
			if h != nil {
				h.Write(raw)
			}
			at := int64(len(buf))
			if len(raw) > 0 && cap(tail) >= len(raw) && &raw[0] == &tail[:1][0] {
				buf = buf[:len(buf)+len(raw)]
			} else {
				buf = append(buf, raw...) // the decoder moved it elsewhere
			}
			if d != nil {
				job.ops = addPiece(job.ops, piece{off: at, n: int64(len(raw))})
			}
			got += int64(len(raw))
			f.progress.Add(int64(len(raw)))
		case syncproto.FileCopy:
			switch {
			case d == nil:
				return fail(fmt.Errorf("receiving %s: the server sent a copy for a file asked for whole: %w", rf.Path, syncproto.ErrUnexpected))
			case m.Off > uint64(d.baseSize) || uint64(m.Len) > uint64(d.baseSize)-m.Off:
				return fail(fmt.Errorf("receiving %s: copy of %d bytes at %d from an installed version of %d: %w", rf.Path, m.Len, m.Off, d.baseSize, ErrVerify))
			case got+int64(m.Len) > rf.Size:
				return fail(fmt.Errorf("receiving %s: more bytes than the %d declared: %w", rf.Path, rf.Size, ErrVerify))
			}
			job.ops = addPiece(job.ops, piece{base: true, off: int64(m.Off), n: int64(m.Len)})
			got += int64(m.Len)
			f.copied += int64(m.Len)
			f.progress.Add(int64(m.Len))
		case syncproto.FilePatch:
			return fail(fmt.Errorf("receiving %s: the server sent a patch for a file not asked for as one: %w", rf.Path, syncproto.ErrUnexpected))
		default:
			return fail(fmt.Errorf("receiving %s: expected FileData or FileCopy, got %v: %w", rf.Path, m.Type(), syncproto.ErrUnexpected))
		}
	}
	m, err := f.c.Expect(syncproto.MsgFileEnd)
	if err != nil {
		return fail(fmt.Errorf("receiving %s: %w", rf.Path, err))
	}
	job.end = m.(syncproto.FileEnd)
	if h != nil {
		if err := checkEnd(rf, h.Sum(nil), job.end); err != nil {
			return fail(err)
		}
	}
	job.data = buf
	f.writers.submit(job)
	f.progress.FileDone()
	return nil
}

// piece is part of a file received as a delta: bytes of the installed
// version (base) or of those received, n of them from off.
type piece struct {
	base bool
	off  int64
	n    int64
}

// addPiece appends p, merged with the last piece where one continues the
// other, so that a run of copies is read at once.
func addPiece(ps []piece, p piece) []piece {
	if k := len(ps) - 1; k >= 0 && ps[k].base == p.base && ps[k].off+ps[k].n == p.off {
		ps[k].n += p.n
		return ps
	}
	return append(ps, p)
}

// buildDelta puts a small file received as a delta together in its
// buffer, which holds the received bytes packed at its start: the pieces
// are placed from the last to the first, so that each lands at or after
// where its received bytes are and overwrites none not yet placed. It
// then checks the result against the manifest.
func buildDelta(root *install.Disk, j writeJob) ([]byte, error) {
	rf, d := j.rf, j.d
	if int64(cap(j.data)) < rf.Size {
		return nil, fmt.Errorf("receiving %s: %d bytes do not fit the buffer of %d", rf.Path, rf.Size, cap(j.data))
	}
	out := j.data[:rf.Size]
	var base *os.File
	for _, p := range j.ops {
		if p.base && base == nil {
			var err error
			if base, err = openBase(root, rf, d); err != nil {
				return nil, err
			}
			defer base.Close()
		}
	}
	end := rf.Size
	for _, p := range slices.Backward(j.ops) {
		at := end - p.n
		if p.base {
			if _, err := base.ReadAt(out[at:end], p.off); err != nil {
				return nil, fmt.Errorf("receiving %s: reading the installed version: %w", rf.Path, err)
			}
		} else {
			copy(out[at:end], j.data[p.off:p.off+p.n])
		}
		end = at
	}
	sum := blake3.Sum256(out)
	if err := checkEnd(rf, sum[:], j.end); err != nil {
		if len(d.sums) > 0 {
			err = fmt.Errorf("%w (%w)", err, ErrBlockMismatch)
		}
		return nil, err
	}
	return out, nil
}

// checkEnd checks a received file's hash and the server's FileEnd against
// the manifest.
func checkEnd(rf manifest.File, sum []byte, end syncproto.FileEnd) error {
	if !bytes.Equal(sum, rf.Hash[:]) {
		return fmt.Errorf("receiving %s: content has BLAKE3 %x, the manifest says %x: %w", rf.Path, sum, rf.Hash, ErrVerify)
	}
	if end.Hash != rf.Hash {
		return fmt.Errorf("receiving %s: the server ended it with hash %x, the manifest says %x: %w", rf.Path, end.Hash, rf.Hash, ErrVerify)
	}
	return nil
}

// writers write received files into staging, beside the receiving loop.
// The memory they hold is bounded: writeBuffers buffers of wholeMax bytes.
type writers struct {
	root   *install.Disk
	onFail func() // called once, when the first writer fails
	jobs   chan writeJob
	free   chan []byte
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error
}

// writeJob is a file for a writer: data is its content, or, for a delta
// (d not nil), the bytes received, which ops and the installed version
// complete (see buildDelta).
type writeJob struct {
	rf   manifest.File
	data []byte
	d    *Delta
	ops  []piece
	end  syncproto.FileEnd
}

const (
	wholeMax     = 1 << 20 // files up to this size are received whole, then written
	writeBuffers = 4
	writerCount  = 2
)

func startWriters(root *install.Disk, onFail func()) *writers {
	w := &writers{root: root, onFail: onFail, jobs: make(chan writeJob, writeBuffers), free: make(chan []byte, writeBuffers)}
	for range writeBuffers {
		w.free <- nil // allocated when first used
	}
	for range writerCount {
		w.wg.Go(func() {
			for j := range w.jobs {
				if w.failed() == nil {
					if err := w.write(j); err != nil {
						w.mu.Lock()
						first := w.err == nil
						if first {
							w.err = err
						}
						w.mu.Unlock()
						if first && w.onFail != nil {
							w.onFail()
						}
					}
				}
				w.release(j.data)
			}
		})
	}
	return w
}

// write writes one job's file into staging.
func (w *writers) write(j writeJob) error {
	data := j.data
	if j.d != nil {
		var err error
		if data, err = buildDelta(w.root, j); err != nil {
			return err
		}
	}
	return writeWhole(w.root, j.rf, data)
}

// buffer waits for a free buffer.
func (w *writers) buffer() []byte {
	b := <-w.free
	if b == nil {
		b = make([]byte, 0, wholeMax)
	}
	return b[:0]
}

func (w *writers) release(b []byte) { w.free <- b[:0] }

func (w *writers) submit(j writeJob) { w.jobs <- j }

// failed returns the first error a writer met.
func (w *writers) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// wait lets the writers finish what they were given and returns the first
// error any of them met.
func (w *writers) wait() error {
	close(w.jobs)
	w.wg.Wait()
	return w.failed()
}

// writeWhole writes a received and verified file into staging; on failure
// it leaves nothing staged under that name.
func writeWhole(root *install.Disk, rf manifest.File, data []byte) (err error) {
	staged := install.StagingDir + "/" + rf.Path
	out, err := root.OpenFile(staged, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("staging %s: %w", rf.Path, err)
	}
	defer func() {
		if err != nil && out != nil {
			out.Close()
			root.Remove(staged)
		}
	}()
	if len(data) > 0 {
		if err := root.WriteStaged(out, staged, 0, data); err != nil {
			return fmt.Errorf("staging %s: %w", rf.Path, err)
		}
	}
	if err := out.Chmod(stagedMode(rf.Mode)); err != nil {
		return fmt.Errorf("staging %s: %w", rf.Path, err)
	}
	closed := root.CloseStaged(out, staged, time.Unix(0, rf.MtimeNs))
	out = nil // closed, whatever CloseStaged says
	if closed != nil {
		root.Remove(staged)
		return fmt.Errorf("staging %s: %w", rf.Path, closed)
	}
	return nil
}

func (f *Fetcher) fetchOne(ctx context.Context, index int, rf manifest.File) error {
	m, err := f.c.Expect(syncproto.MsgFileStart)
	if err != nil {
		return fmt.Errorf("receiving %s: %w", rf.Path, err)
	}
	start := m.(syncproto.FileStart)
	if int(start.Index) != index || int64(start.Size) != rf.Size {
		return fmt.Errorf("receiving %s: server sent file %d of %d bytes, expected file %d of %d bytes: %w",
			rf.Path, start.Index, start.Size, index, rf.Size, syncproto.ErrUnexpected)
	}
	d := f.deltas[index]
	if d != nil && d.patch != nil {
		return f.receivePatch(ctx, rf, d)
	}
	if rf.Size <= wholeMax && (d == nil || (d.hasBase() && !d.wantList)) {
		return f.receiveSmall(rf, d)
	}
	var base *os.File
	if d != nil {
		if d.wantList {
			if err := f.readList(rf, d); err != nil {
				return err
			}
		}
		if d.hasBase() {
			if base, err = openBase(f.root, rf, d); err != nil {
				return err
			}
			defer base.Close()
		}
	}
	staged := install.StagingDir + "/" + rf.Path
	out, err := f.root.OpenFile(staged, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("staging %s: %w", rf.Path, err)
	}
	done := false
	defer func() {
		out.Close()
		if !done {
			// Only whole, verified files stay staged (see KeepForResume).
			f.root.Remove(staged)
		}
	}()
	h := blake3.New()
	var got int64
	// A chunk list to keep is checked against the content it describes:
	// a list that lied would spoil every later delta of the file.
	var lc *listCheck
	if d != nil && d.wantList {
		lc = newListCheck(d)
	}
	write := func(b []byte) error {
		h.Write(b)
		if err := f.root.WriteStaged(out, staged, got, b); err != nil {
			return fmt.Errorf("staging %s: %w", rf.Path, err)
		}
		got += int64(len(b))
		f.progress.Add(int64(len(b)))
		return nil
	}
	for got < rf.Size {
		m, err := f.c.Read()
		if err != nil {
			return fmt.Errorf("receiving %s: %w", rf.Path, err)
		}
		switch m := m.(type) {
		case syncproto.FileData:
			if got+int64(m.RawLen) > rf.Size {
				return fmt.Errorf("receiving %s: more bytes than the %d declared: %w", rf.Path, rf.Size, ErrVerify)
			}
			f.wire += int64(len(m.Data))
			raw, err := syncproto.DecodeChunk(f.dec, m, f.buf)
			if err != nil {
				return fmt.Errorf("receiving %s: %w", rf.Path, err)
			}
			f.buf = raw
			if lc != nil {
				lc.write(raw, -1, 0)
			}
			if err := write(raw); err != nil {
				return err
			}
		case syncproto.FileCopy:
			switch {
			case base == nil:
				return fmt.Errorf("receiving %s: the server sent a copy for a file asked for whole: %w", rf.Path, syncproto.ErrUnexpected)
			case m.Off > uint64(d.baseSize) || uint64(m.Len) > uint64(d.baseSize)-m.Off:
				return fmt.Errorf("receiving %s: copy of %d bytes at %d from an installed version of %d: %w", rf.Path, m.Len, m.Off, d.baseSize, ErrVerify)
			case got+int64(m.Len) > rf.Size:
				return fmt.Errorf("receiving %s: more bytes than the %d declared: %w", rf.Path, rf.Size, ErrVerify)
			}
			err := f.copyBase(base, int64(m.Off), int64(m.Len), func(b []byte, src, left int64) error {
				if lc != nil {
					lc.write(b, src, left)
				}
				return write(b)
			})
			if err != nil {
				return err
			}
			f.copied += int64(m.Len)
		case syncproto.FilePatch:
			return fmt.Errorf("receiving %s: the server sent a patch for a file not asked for as one: %w", rf.Path, syncproto.ErrUnexpected)
		default:
			return fmt.Errorf("receiving %s: expected FileData or FileCopy, got %v: %w", rf.Path, m.Type(), syncproto.ErrUnexpected)
		}
	}
	m, err = f.c.Expect(syncproto.MsgFileEnd)
	if err != nil {
		return fmt.Errorf("receiving %s: %w", rf.Path, err)
	}
	if err := checkEnd(rf, h.Sum(nil), m.(syncproto.FileEnd)); err != nil {
		if d != nil && len(d.sums) > 0 {
			err = fmt.Errorf("%w (%w)", err, ErrBlockMismatch)
		}
		return err
	}
	if err := out.Chmod(stagedMode(rf.Mode)); err != nil {
		return fmt.Errorf("staging %s: %w", rf.Path, err)
	}
	if err := f.root.CloseStaged(out, staged, time.Unix(0, rf.MtimeNs)); err != nil {
		return fmt.Errorf("staging %s: %w", rf.Path, err)
	}
	done = true
	if lc != nil {
		if lc.ok() {
			keepList(f.root, rf.Hash, d, f.log)
		} else {
			f.log.Warn("the server's chunk list does not describe the file it came with; not keeping it", "path", rf.Path)
		}
	}
	f.progress.FileDone()
	return nil
}

// stagedMode keeps the server's permission bits but never drops the
// owner's read and write, which the client needs to replace the file later.
func stagedMode(m fs.FileMode) fs.FileMode {
	return (m & 0o777) | 0o600
}
