package smartclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"time"

	"github.com/erpupdate/smartsync/syncproto"
	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"
)

// conn is the client's side of one session.
type conn struct {
	nc      net.Conn
	r       *syncproto.Reader
	w       *syncproto.Writer
	timeout time.Duration
}

func dial(ctx context.Context, addr string, timeout time.Duration) (*conn, error) {
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the update server %s: %w", addr, err)
	}
	c := &conn{nc: nc, r: syncproto.NewReader(nc), w: syncproto.NewWriter(nc), timeout: timeout}
	// Closing the connection is how a cancelled context interrupts a
	// blocked read or write.
	context.AfterFunc(ctx, func() { nc.Close() })
	return c, nil
}

func (c *conn) Close() error { return c.nc.Close() }

func (c *conn) send(msgs ...syncproto.Message) error {
	c.nc.SetWriteDeadline(time.Now().Add(c.timeout))
	for _, m := range msgs {
		if err := c.w.Write(m); err != nil {
			return err
		}
	}
	return c.w.Flush()
}

// Expect reads the next message, of type t, within the timeout.
func (c *conn) Expect(t syncproto.MsgType) (syncproto.Message, error) {
	c.nc.SetReadDeadline(time.Now().Add(c.timeout))
	return c.r.Expect(t)
}

// request sends the indices of the files to fetch, then RequestEnd.
func (c *conn) request(indices []int) error {
	c.nc.SetWriteDeadline(time.Now().Add(c.timeout))
	for len(indices) > 0 {
		n := min(len(indices), syncproto.MaxRequestBatch)
		req := syncproto.Request{Indices: make([]uint32, n)}
		for i := range n {
			req.Indices[i] = uint32(indices[i])
		}
		if err := c.w.Write(req); err != nil {
			return err
		}
		indices = indices[n:]
	}
	if err := c.w.Write(syncproto.RequestEnd{}); err != nil {
		return err
	}
	return c.w.Flush()
}

// ErrVerify marks content that does not match the manifest.
var ErrVerify = errors.New("smartclient: received file does not match the manifest")

// fetcher receives requested files into the staging folder.
type fetcher struct {
	c        *conn
	root     disk // the install folder
	man      *manifest
	progress Progress
	dec      *zstd.Decoder
	buf      []byte
	wire     int64 // compressed bytes of file data received
}

// fetchAll receives every file in order into staging, verifying each one's
// size and BLAKE3 hash as it streams. It returns the staged paths.
func (f *fetcher) fetchAll(ctx context.Context, order []int) error {
	dec, err := syncproto.NewChunkDecoder()
	if err != nil {
		return fmt.Errorf("starting decompressor: %w", err)
	}
	defer dec.Close()
	f.dec = dec
	f.buf = make([]byte, 0, syncproto.MaxChunk)
	made := map[string]bool{}
	for _, i := range order {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("receiving files: %w", err)
		}
		rf := f.man.Files[i]
		dir := path.Dir(stagingDir + "/" + rf.Path)
		if !made[dir] {
			if err := f.root.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("creating staging folder: %w", err)
			}
			made[dir] = true
		}
		if err := f.fetchOne(i, rf); err != nil {
			return err
		}
	}
	return nil
}

func (f *fetcher) fetchOne(index int, rf remoteFile) error {
	m, err := f.c.Expect(syncproto.MsgFileStart)
	if err != nil {
		return fmt.Errorf("receiving %s: %w", rf.Path, err)
	}
	start := m.(syncproto.FileStart)
	if int(start.Index) != index || int64(start.Size) != rf.Size {
		return fmt.Errorf("receiving %s: server sent file %d of %d bytes, expected file %d of %d bytes: %w",
			rf.Path, start.Index, start.Size, index, rf.Size, syncproto.ErrUnexpected)
	}
	staged := stagingDir + "/" + rf.Path
	out, err := f.root.OpenFile(staged, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("staging %s: %w", rf.Path, err)
	}
	done := false
	defer func() {
		out.Close()
		if !done {
			// Only whole, verified files stay staged (see keepForResume).
			f.root.Remove(staged)
		}
	}()
	h := blake3.New()
	var got int64
	for got < rf.Size {
		m, err := f.c.Expect(syncproto.MsgFileData)
		if err != nil {
			return fmt.Errorf("receiving %s: %w", rf.Path, err)
		}
		chunk := m.(syncproto.FileData)
		if got+int64(chunk.RawLen) > rf.Size {
			return fmt.Errorf("receiving %s: more bytes than the %d declared: %w", rf.Path, rf.Size, ErrVerify)
		}
		f.wire += int64(len(chunk.Data))
		raw, err := syncproto.DecodeChunk(f.dec, chunk, f.buf)
		if err != nil {
			return fmt.Errorf("receiving %s: %w", rf.Path, err)
		}
		f.buf = raw
		h.Write(raw)
		if err := writeStaged(out, staged, got, raw); err != nil {
			return fmt.Errorf("staging %s: %w", rf.Path, err)
		}
		got += int64(len(raw))
		f.progress.Add(int64(len(raw)))
	}
	m, err = f.c.Expect(syncproto.MsgFileEnd)
	if err != nil {
		return fmt.Errorf("receiving %s: %w", rf.Path, err)
	}
	end := m.(syncproto.FileEnd)
	sum := h.Sum(nil)
	if !bytes.Equal(sum, rf.Hash[:]) {
		return fmt.Errorf("receiving %s: content has BLAKE3 %x, the manifest says %x: %w", rf.Path, sum, rf.Hash, ErrVerify)
	}
	if end.Hash != rf.Hash {
		return fmt.Errorf("receiving %s: the server ended it with hash %x, the manifest says %x: %w", rf.Path, end.Hash, rf.Hash, ErrVerify)
	}
	if err := out.Chmod(stagedMode(rf.Mode)); err != nil {
		return fmt.Errorf("staging %s: %w", rf.Path, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("staging %s: %w", rf.Path, err)
	}
	mt := time.Unix(0, rf.MtimeNs)
	if err := f.root.Chtimes(staged, mt, mt); err != nil {
		return fmt.Errorf("staging %s: %w", rf.Path, err)
	}
	done = true
	f.progress.FileDone()
	return nil
}

// stagedMode keeps the server's permission bits but never drops the
// owner's read and write, which the client needs to replace the file later.
func stagedMode(m fs.FileMode) fs.FileMode {
	return (m & 0o777) | 0o600
}

// writeStaged writes a chunk of a staged file at offset off.
func writeStaged(out *os.File, name string, off int64, b []byte) error {
	if writeFault != nil {
		n, err := writeFault(name, off, len(b))
		if err != nil {
			out.Write(b[:n])
			return &fs.PathError{Op: "write", Path: name, Err: err}
		}
	}
	_, err := out.Write(b)
	return err
}

// Read reads the next message within the timeout.
func (c *conn) Read() (syncproto.Message, error) {
	c.nc.SetReadDeadline(time.Now().Add(c.timeout))
	return c.r.Read()
}
