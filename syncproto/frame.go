package syncproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// BufferSize is the size of the buffers NewReader and NewWriter give a
// stream: enough for a run of small frames or a whole chunk at once.
const BufferSize = 64 << 10

// Reader reads frames from a stream. It is not safe for concurrent use.
type Reader struct {
	src io.Reader
	r   *bufio.Reader
	hdr [HeaderSize]byte
	buf []byte
	// N counts the bytes read, headers included.
	N int64
}

// NewReader returns a Reader on r with a buffer of BufferSize.
func NewReader(r io.Reader) *Reader { return NewReaderSize(r, BufferSize) }

// NewReaderSize returns a Reader on r with a buffer of size bytes (at
// least 16): a server reads a hello with a small one, so that a connection
// that never says hello costs little, and calls Grow once it is accepted.
func NewReaderSize(r io.Reader, size int) *Reader {
	return &Reader{src: r, r: bufio.NewReaderSize(r, size)}
}

// Grow gives the Reader a buffer of size bytes if its own is smaller. The
// bytes already buffered are read first: none is lost.
func (r *Reader) Grow(size int) {
	if r.r.Size() >= size {
		return
	}
	src := r.src
	if n := r.r.Buffered(); n > 0 {
		pending, _ := r.r.Peek(n)
		src = io.MultiReader(bytes.NewReader(bytes.Clone(pending)), r.src)
	}
	r.r = bufio.NewReaderSize(src, size)
}

// Shrink gives the Reader a buffer of size bytes if its own is larger, and
// drops its payload scratch space: for a connection that stays open for
// hours with little to read (a server keeps thousands). The bytes already
// buffered are read first: none is lost.
func (r *Reader) Shrink(size int) {
	if cap(r.buf) > size {
		r.buf = nil
	}
	if r.r.Size() <= size {
		return
	}
	src := r.src
	if n := r.r.Buffered(); n > 0 {
		pending, _ := r.r.Peek(n)
		src = io.MultiReader(bytes.NewReader(bytes.Clone(pending)), r.src)
	}
	r.r = bufio.NewReaderSize(src, size)
}

// ReadHeader reads and checks one frame header. It returns the type and
// payload length, both already checked against the protocol's limits.
func (r *Reader) readHeader() (MsgType, int, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, 0, fmt.Errorf("reading frame header: %w", err)
		}
		return 0, 0, err // io.EOF at a frame boundary is a clean close
	}
	r.N += HeaderSize
	if r.hdr[0] != Magic[0] || r.hdr[1] != Magic[1] {
		return 0, 0, fmt.Errorf("reading frame header: got % x: %w", r.hdr[:2], ErrBadMagic)
	}
	if r.hdr[2] != Version {
		return 0, 0, fmt.Errorf("reading frame header: peer speaks version %d, we speak %d: %w", r.hdr[2], Version, ErrVersion)
	}
	t := MsgType(r.hdr[3])
	limit, ok := MaxPayload(t)
	if !ok {
		return 0, 0, fmt.Errorf("reading frame header: type %d: %w", r.hdr[3], ErrUnknownType)
	}
	n := binary.BigEndian.Uint32(r.hdr[4:])
	if uint64(n) > uint64(limit) {
		return 0, 0, fmt.Errorf("reading frame header: %v of %d bytes, limit %d: %w", t, n, limit, ErrTooLarge)
	}
	return t, int(n), nil
}

// Read reads the next message. A received Error message is returned as a
// *Error error, so callers see the peer's final word as an error. io.EOF is
// returned only when the stream ends cleanly between frames.
func (r *Reader) Read() (Message, error) {
	t, p, err := r.ReadRaw()
	if err != nil {
		return nil, err
	}
	m, err := Decode(t, p)
	if err != nil {
		return nil, err
	}
	if e, ok := m.(*Error); ok {
		return nil, e
	}
	return m, nil
}

// ReadRaw reads the next frame, its header checked as Read checks it, and
// returns its type and payload undecoded. The payload is valid until the
// next read. io.EOF is returned only when the stream ends cleanly between
// frames.
func (r *Reader) ReadRaw() (MsgType, []byte, error) {
	t, n, err := r.readHeader()
	if err != nil {
		return 0, nil, err
	}
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	p := r.buf[:n]
	if _, err := io.ReadFull(r.r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, fmt.Errorf("reading %v payload: %w", t, err)
	}
	r.N += int64(n)
	return t, p, nil
}

// Writer writes frames to a buffered stream. Call Flush when the peer must
// see what was written. It is not safe for concurrent use.
type Writer struct {
	dst io.Writer
	w   *bufio.Writer
	buf []byte
	// N counts the bytes written, headers included.
	N int64
}

// NewWriter returns a Writer on w with a buffer of BufferSize.
func NewWriter(w io.Writer) *Writer { return NewWriterSize(w, BufferSize) }

// NewWriterSize returns a Writer on w with a buffer of size bytes (see
// NewReaderSize).
func NewWriterSize(w io.Writer, size int) *Writer {
	return &Writer{dst: w, w: bufio.NewWriterSize(w, size)}
}

// Grow gives the Writer a buffer of size bytes if its own is smaller,
// flushing what it holds first.
func (w *Writer) Grow(size int) error {
	if w.w.Size() >= size {
		return nil
	}
	if err := w.Flush(); err != nil {
		return err
	}
	w.w = bufio.NewWriterSize(w.dst, size)
	return nil
}

// Shrink gives the Writer a buffer of size bytes if its own is larger,
// flushing what it holds first, and drops its scratch space (see
// Reader.Shrink).
func (w *Writer) Shrink(size int) error {
	if cap(w.buf) > size {
		w.buf = nil
	}
	if w.w.Size() <= size {
		return nil
	}
	if err := w.Flush(); err != nil {
		return err
	}
	w.w = bufio.NewWriterSize(w.dst, size)
	return nil
}

// Write encodes and buffers one message.
func (w *Writer) Write(m Message) error {
	w.buf = append(w.buf[:0], Magic[0], Magic[1], Version, byte(m.Type()), 0, 0, 0, 0)
	w.buf = m.appendPayload(w.buf)
	return w.writeFrame(m.Type())
}

func (w *Writer) writeFrame(t MsgType) error {
	n := len(w.buf) - HeaderSize
	if limit, _ := MaxPayload(t); n > limit {
		return fmt.Errorf("writing %v: payload of %d bytes, limit %d: %w", t, n, limit, ErrTooLarge)
	}
	binary.BigEndian.PutUint32(w.buf[4:], uint32(n))
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("writing %v: %w", t, err)
	}
	w.N += int64(len(w.buf))
	return nil
}

// AppendFrame appends m, framed, to b: for a sender that encodes a message
// once and sends it to many peers with WriteEncoded.
func AppendFrame(b []byte, m Message) []byte {
	start := len(b)
	b = append(b, Magic[0], Magic[1], Version, byte(m.Type()), 0, 0, 0, 0)
	b = m.appendPayload(b)
	binary.BigEndian.PutUint32(b[start+4:], uint32(len(b)-start-HeaderSize))
	return b
}

// AppendErrorFrame appends e, framed with the protocol version given
// rather than ours: the one frame a server sends a client of an older
// version (2 and later share Error's encoding), so that it reads why it
// is turned away instead of failing on a version it does not speak.
func AppendErrorFrame(b []byte, version uint8, e *Error) []byte {
	start := len(b)
	b = AppendFrame(b, e)
	b[start+2] = version
	return b
}

// WriteEncoded buffers frames made by AppendFrame.
func (w *Writer) WriteEncoded(frames []byte) error {
	if _, err := w.w.Write(frames); err != nil {
		return fmt.Errorf("writing frames: %w", err)
	}
	w.N += int64(len(frames))
	return nil
}

// Flush sends everything buffered.
func (w *Writer) Flush() error {
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("flushing: %w", err)
	}
	return nil
}

// WriteChunk writes raw (at most MaxChunk bytes) as one FileData message,
// zstd-compressed by enc when that makes it smaller, raw otherwise. enc may
// be nil to always send raw bytes.
func (w *Writer) WriteChunk(enc *zstd.Encoder, raw []byte) error {
	if len(raw) == 0 || len(raw) > MaxChunk {
		return fmt.Errorf("writing FileData: chunk of %d bytes, must be 1..%d", len(raw), MaxChunk)
	}
	w.startFileData(EncodingZstd, len(raw))
	body := len(w.buf)
	if enc != nil {
		w.buf = enc.EncodeAll(raw, w.buf)
	}
	if enc == nil || len(w.buf)-body >= len(raw) {
		w.buf[HeaderSize] = EncodingRaw
		w.buf = append(w.buf[:body], raw...)
	}
	return w.writeFrame(MsgFileData)
}

// WriteFileData writes the next n bytes of r (1..MaxChunk) as one raw
// FileData message. What is buffered goes first; then the bytes go from r
// to the connection through the writer's ReadFrom, which for a file and a
// TCP connection is sendfile(2): they never pass through the process.
//
// An r that ends before n bytes leaves a message shorter than its header
// says, which the peer cannot read past: the connection must be closed
// after that error, which wraps io.ErrUnexpectedEOF.
func (w *Writer) WriteFileData(r io.Reader, n int) error {
	if n <= 0 || n > MaxChunk {
		return fmt.Errorf("writing FileData: chunk of %d bytes, must be 1..%d", n, MaxChunk)
	}
	w.startFileData(EncodingRaw, n)
	binary.BigEndian.PutUint32(w.buf[4:], uint32(len(w.buf)-HeaderSize+n))
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("writing FileData: %w", err)
	}
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("writing FileData: %w", err)
	}
	w.N += int64(len(w.buf))
	m, err := io.CopyN(w.w, r, int64(n))
	w.N += m
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return fmt.Errorf("writing FileData: %d of %d bytes: %w", m, n, err)
	}
	return nil
}

// startFileData puts in w.buf the header of a FileData frame, its length
// left to fill in, and the fields before its data.
func (w *Writer) startFileData(encoding uint8, rawLen int) {
	w.buf = append(w.buf[:0], Magic[0], Magic[1], Version, byte(MsgFileData), 0, 0, 0, 0, encoding)
	w.buf = binary.BigEndian.AppendUint32(w.buf, uint32(rawLen))
}

// NewChunkDecoder returns a zstd decoder whose memory and window are
// bounded by MaxChunk, for use with DecodeChunk. Close it when done.
func NewChunkDecoder() (*zstd.Decoder, error) {
	return zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(MaxChunk),
		zstd.WithDecoderMaxWindow(MaxChunk),
		zstd.WithDecoderLowmem(true),
	)
}

// DecodeChunk returns the raw bytes of c, appended to dst[:0]. It fails
// unless the chunk decodes to exactly c.RawLen bytes.
func DecodeChunk(dec *zstd.Decoder, c FileData, dst []byte) ([]byte, error) {
	switch c.Encoding {
	case EncodingRaw:
		if len(c.Data) != int(c.RawLen) {
			return nil, fmt.Errorf("decoding chunk: raw chunk declares %d bytes, carries %d: %w", c.RawLen, len(c.Data), ErrMalformed)
		}
		return append(dst[:0], c.Data...), nil
	case EncodingZstd:
		out, err := dec.DecodeAll(c.Data, dst[:0])
		if err != nil {
			return nil, fmt.Errorf("decoding chunk: %w: %w", ErrMalformed, err)
		}
		if len(out) != int(c.RawLen) {
			return nil, fmt.Errorf("decoding chunk: declares %d bytes, decodes to %d: %w", c.RawLen, len(out), ErrMalformed)
		}
		return out, nil
	}
	return nil, fmt.Errorf("decoding chunk: unknown encoding %d: %w", c.Encoding, ErrMalformed)
}

// Expect reads the next message and checks that it has type want.
func (r *Reader) Expect(want MsgType) (Message, error) {
	m, err := r.Read()
	if err != nil {
		return nil, err
	}
	if m.Type() != want {
		return nil, fmt.Errorf("expected %v, got %v: %w", want, m.Type(), ErrUnexpected)
	}
	return m, nil
}
