package syncproto

import (
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Manifests compressed (see the package documentation, "Manifests
// compressed"): with GetZManifest, the frames that follow ManifestHeader
// travel as one zstd stream cut into ManifestZ frames.

// MsgManifestZ is the message type of ManifestZ.
const MsgManifestZ MsgType = 33

// GetZManifest, a GetManifest flag, asks for the frames after the
// ManifestHeader compressed, in ManifestZ frames.
const GetZManifest uint8 = 1 << 3

// ManifestZ carries 1 to MaxChunk bytes of the zstd stream of a
// manifest's frames. All frames but the last have More set.
type ManifestZ struct {
	More bool
	Data []byte
}

func (ManifestZ) Type() MsgType { return MsgManifestZ }

func (m ManifestZ) appendPayload(b []byte) []byte {
	b = appendBool(b, m.More)
	return append(b, m.Data...)
}

// ZWindow is the largest zstd window of a compressed manifest: the sender
// compresses with it, and the receiver refuses a stream that asks for a
// larger one. A manifest's entries are sorted by path, so a larger window
// finds little more: 0.3% on the Go toolchain's manifest at 1 MiB.
const ZWindow = MaxChunk

// zEntryFixed is the bytes of a ManifestEntry frame besides its path and
// link target.
const zEntryFixed = HeaderSize + 2 + 8 + 8 + 4 + 1 + HashSize + 2

// MaxManifestZ is the most bytes the compressed frames of a manifest of
// count entries may decompress to: count frames of an entry without its
// path and target (a ManifestSame frame is smaller), the paths and the
// link targets, each at most MaxManifestPathBytes together, and a
// ManifestEnd frame.
func MaxManifestZ(count uint32) int64 {
	return int64(count)*zEntryFixed + 2*MaxManifestPathBytes + HeaderSize + HashSize
}

// NewZEncoder returns a zstd encoder for compressed manifests, at level,
// with a window of ZWindow and one goroutine; Close it when done.
func NewZEncoder(level zstd.EncoderLevel) (*zstd.Encoder, error) {
	return zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithWindowSize(ZWindow),
		zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
}

// ZWriter writes frames, through its Writer, into one zstd stream that
// it sends in ManifestZ frames of at most MaxChunk bytes: the sender's
// side of a compressed manifest. Close ends the stream.
type ZWriter struct {
	// Writer takes the frames to compress.
	*Writer
	enc *zstd.Encoder
	out zChunker
}

// NewZWriter starts a compressed stream with enc (see NewZEncoder), which
// it resets and which must not be used by another until Close; send
// sends each ManifestZ frame, as it fills.
func NewZWriter(enc *zstd.Encoder, send func(ManifestZ) error) *ZWriter {
	z := &ZWriter{enc: enc, out: zChunker{send: send}}
	enc.Reset(&z.out)
	z.Writer = NewWriter(enc)
	return z
}

// Close compresses what is buffered, ends the zstd stream and sends its
// last ManifestZ frame, without More.
func (z *ZWriter) Close() error {
	if err := z.Writer.Flush(); err != nil {
		return fmt.Errorf("compressing the manifest: %w", err)
	}
	if err := z.enc.Close(); err != nil {
		return fmt.Errorf("compressing the manifest: %w", err)
	}
	if err := z.out.err; err != nil {
		return err
	}
	// A zstd stream is never empty: the last frame has 1..MaxChunk bytes.
	return z.out.send(ManifestZ{Data: z.out.buf})
}

// zChunker cuts the compressed stream into ManifestZ frames. It keeps up
// to MaxChunk bytes, so that the last frame is never empty.
type zChunker struct {
	send func(ManifestZ) error
	buf  []byte
	err  error
}

func (c *zChunker) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n := len(p)
	for len(c.buf)+len(p) > MaxChunk {
		k := MaxChunk - len(c.buf)
		c.buf = append(c.buf, p[:k]...)
		p = p[k:]
		if c.err = c.send(ManifestZ{More: true, Data: c.buf}); c.err != nil {
			return 0, c.err
		}
		c.buf = c.buf[:0]
	}
	c.buf = append(c.buf, p...)
	return n, nil
}

// ZReader reads the frames of a compressed manifest: the ManifestZ frames
// that src gives, up to the one without More, decompressed with a window
// of at most ZWindow, and at most a bound of bytes. Its Reader reads the
// frames; End checks that they ended exactly where the stream did. Close
// it when done.
type ZReader struct {
	// Reader reads the decompressed frames.
	*Reader
	in  zChunks
	dec *zstd.Decoder
	lim zLimit
}

// FrameSource gives the frames a compressed manifest arrives in.
type FrameSource interface {
	Read() (Message, error)
}

// NewZReader returns a ZReader of the ManifestZ frames of src, whose
// frames decompress to at most limit bytes (MaxManifestZ of the header's
// count).
func NewZReader(src FrameSource, limit int64) (*ZReader, error) {
	z := &ZReader{in: zChunks{src: src}}
	z.lim = zLimit{in: &z.in, left: limit, limit: limit}
	dec, err := zstd.NewReader(&z.in,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(ZWindow),
		zstd.WithDecoderMaxWindow(ZWindow),
		zstd.WithDecoderLowmem(true),
	)
	if err != nil {
		return nil, fmt.Errorf("starting the manifest's decompressor: %w", err)
	}
	z.dec = dec
	z.lim.r = dec
	z.Reader = NewReader(&z.lim)
	return z, nil
}

// End checks that the stream ends right after the last frame read: its
// last ManifestZ frame read and no byte after that frame.
func (z *ZReader) End() error {
	t, p, err := z.Reader.ReadRaw()
	switch {
	case err == io.EOF:
		return nil
	case z.in.err != nil:
		return z.in.err
	case err == nil:
		return fmt.Errorf("compressed manifest: a %v frame of %d bytes after its last frame: %w", t, len(p), ErrMalformed)
	}
	return fmt.Errorf("compressed manifest: more bytes after its last frame: %w", err)
}

// Close releases the decompressor.
func (z *ZReader) Close() { z.dec.Close() }

// zChunks reads the data of ManifestZ frames, up to the one without More.
type zChunks struct {
	src  FrameSource
	data []byte
	done bool
	err  error
}

func (c *zChunks) Read(p []byte) (int, error) {
	for len(c.data) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		if c.done {
			return 0, io.EOF
		}
		m, err := c.src.Read()
		if err == nil && m.Type() != MsgManifestZ {
			err = fmt.Errorf("expected ManifestZ, got %v: %w", m.Type(), ErrUnexpected)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			// The decompressor may not pass it on whole: ZReader's errors
			// name it.
			c.err = fmt.Errorf("compressed manifest: %w", err)
			return 0, c.err
		}
		z := m.(ManifestZ)
		c.data, c.done = z.Data, !z.More
	}
	n := copy(p, c.data)
	c.data = c.data[n:]
	return n, nil
}

// zLimit reads at most limit bytes from r, the decompressor of in, and
// fails past them. An error of in is returned as it is, one of the
// decompressor as ErrMalformed.
type zLimit struct {
	r           io.Reader
	in          *zChunks
	left, limit int64
}

func (l *zLimit) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, l.tooLarge()
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n - int(-l.left), l.tooLarge()
	}
	switch {
	case err == nil || err == io.EOF:
	case l.in.err != nil:
		err = l.in.err
	default:
		err = fmt.Errorf("compressed manifest: %w: %w", ErrMalformed, err)
	}
	return n, err
}

func (l *zLimit) tooLarge() error {
	return fmt.Errorf("compressed manifest: decompresses to more than %d bytes: %w", l.limit, ErrTooLarge)
}
