// Package zpatch makes and applies patches that turn an old release of a
// file into the new one: zstd frames compressed with the old file as a raw
// dictionary, as `zstd --patch-from` makes them. A rebuilt executable
// differs from its previous build in addresses all over, so block and
// content-defined-chunk deltas find little in it, while zstd's matches
// (any length, at any offset into the old bytes) keep most of it. The
// server makes a patch once per release pair (Make) and serves it to every
// client; the client rebuilds the file from the one it has (Apply) and
// verifies the result's BLAKE3 as for any other transfer: Apply checks the
// patch's structure and each frame's checksum, not the whole result.
//
// # Memory
//
// A raw dictionary is held whole by encoder and decoder, and zstd's window
// must reach from the end of the new bytes back to the start of the
// dictionary, so one frame for a whole file would cost the client the old
// file plus the new (42 MB for the Go compiler) and the server twice that
// plus the match tables. The client must stay within 32 MiB and the server
// within 64 MiB, so a patch is cut instead: the new file is cut into
// segments of at most MaxSegment bytes, and each segment is one zstd frame
// whose dictionary is a window of at most MaxWindow bytes of the old file,
// placed where the segment's bytes most likely came from. Make finds that
// place by cutting both files into content-defined chunks (package cdc)
// and choosing, for each segment, the window of the old file that holds
// the most bytes of the segment's chunks found there; a segment none of
// whose chunks are found gets the window at its proportional position
// (for a rebuilt executable, whose parts keep their order).
//
// Apply holds one window, one segment and one segment's frame, at most
// MaxWindow + 2*MaxSegment = 10 MiB, and the decoder's few hundred KiB,
// whatever the file's size and whatever a patch claims: it checks every
// header against these bounds before it allocates. Make holds one window
// (6 MiB), the encoder's copy of it followed by the segment (8 MiB), its
// match tables
// (8 MiB at the default level), the frame, and chunk lists of at most
// 64 Ki chunks a file. Measured on the Go compiler (21.5 MB, 1.25.0 →
// 1.25.1; scripts/zpatchmeasure): Apply 9 MiB of heap at its peak and
// 13.6 MiB RSS, Make 25 MiB and 31 MiB.
//
// The cost of the bound is size: the 24 changed files of the Go 1.25.0 →
// 1.25.1 upgrade (70.7 MB, nine executables nearly all of it) come to
// 3.96 MB of patches, against 3.60 MB
// for one frame per file with all the old file as dictionary at
// zstd.SpeedBestCompression (whose tables alone take 68 MiB) and 3.12 MB
// from `zstd -19 --patch-from` (the reference encoder's optimal parser).
//
// A file of more than MaxFile bytes (old or new) gets no patch: memory
// would still be bounded, but the time to make the patch grows with the
// size (20-40 ms a MB of one core), so a 1 GiB file already takes
// the server most of a minute per release pair; the caller moves larger
// files with its other deltas.
//
// # Format
//
// All integers are big-endian.
//
//	patch   = magic oldSize newSize segment*
//	magic   = "SZP1"
//	oldSize = uint64   size of the old file the patch was made from
//	newSize = uint64   size of the file it rebuilds
//	segment = newLen dictOff dictLen frameLen frame
//	newLen  = uint32   bytes of the new file this segment rebuilds, 1..MaxSegment,
//	                   at least MinSegment but in the last segment
//	dictOff = uint64   offset in the old file of the segment's dictionary
//	dictLen = uint32   its length, 0..MaxWindow, dictOff+dictLen <= oldSize
//	frameLen= uint32   length of frame, at most FrameBound(newLen)
//	frame   = one zstd frame (with its checksum) of newLen bytes, whose
//	          raw dictionary (id 0) is old[dictOff:dictOff+dictLen]
//
// The segments rebuild the new file in order, their newLen adding up to
// newSize, and the patch ends after the last one. Apply checks every field
// against these bounds and against the sizes it was given before it reads
// the old file or allocates for the segment, so a hostile patch can make
// it allocate no more than the bound above and write no byte past the
// declared size.
package zpatch

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/erpupdate/smartsync/internal/cdc"
	"github.com/klauspost/compress/zstd"
)

const (
	// MaxSegment is the largest number of bytes of the new file one frame
	// rebuilds, and the default segment.
	MaxSegment = 2 << 20
	// MinSegment is the smallest number of bytes every segment but the
	// last rebuilds: it bounds how much of the old file a patch can make
	// Apply read, MaxWindow/MinSegment = 24 bytes per byte it writes.
	MinSegment = 256 << 10
	// MaxWindow is the largest dictionary, in bytes of the old file, of
	// one frame, and the default window. MaxWindow+MaxSegment is a power
	// of two, zstd's window.
	MaxWindow = 6 << 20
	// MaxFile is the largest old or new file Make makes a patch for; see
	// the package comment.
	MaxFile = 1 << 30

	magic      = "SZP1"
	fileHeader = 4 + 8 + 8
	segHeader  = 4 + 8 + 4 + 4
	// window is zstd's window for every frame: the distance from the end
	// of a segment back to the start of its dictionary.
	window = MaxWindow + MaxSegment
)

// ErrCorrupt is wrapped by Apply's errors for a patch that is not well
// formed or does not fit the sizes Apply was given.
var ErrCorrupt = errors.New("corrupt patch")

// Options tune Make. The zero value gives the defaults.
type Options struct {
	// Level is the zstd encoder level; zero means
	// zstd.SpeedBetterCompression. zstd.SpeedBestCompression makes
	// patches about 10% smaller (3.56 MB instead of 3.96 MB on the Go
	// upgrade) in 2-3 times the time, but its match tables with a
	// dictionary take 68 MiB, and Make's heap 84 MiB (93 MiB RSS): above
	// the server's memory goal.
	Level zstd.EncoderLevel
	// Segment is the number of bytes of the new file per frame,
	// MinSegment to MaxSegment; zero means MaxSegment.
	Segment int
	// Window is the number of bytes of the old file each frame's
	// dictionary holds, at most MaxWindow; zero means MaxWindow. All the
	// old file is the dictionary when it is smaller.
	Window int
}

// FrameBound returns the largest frame Apply accepts for a segment of n
// bytes: the size of n bytes stored raw in zstd blocks, plus the frame
// header and checksum, with room to spare.
func FrameBound(n int) int { return n + n>>10 + 64 }

// Make writes to w the patch that turns old (oldSize bytes) into new
// (newSize bytes). Files of more than MaxFile bytes are refused.
func Make(ctx context.Context, w io.Writer, old io.ReaderAt, oldSize int64, new io.ReaderAt, newSize int64, o Options) error {
	if oldSize < 0 || newSize < 0 || oldSize > MaxFile || newSize > MaxFile {
		return fmt.Errorf("zpatch: make: sizes old %d, new %d bytes: outside 0..%d (MaxFile)", oldSize, newSize, MaxFile)
	}
	seg, win := o.Segment, o.Window
	if seg == 0 {
		seg = MaxSegment
	}
	if win == 0 {
		win = MaxWindow
	}
	if seg < MinSegment || seg > MaxSegment || win < 1 || win > MaxWindow {
		return fmt.Errorf("zpatch: make: options segment %d, window %d: outside %d..%d and 1..%d", o.Segment, o.Window, MinSegment, MaxSegment, MaxWindow)
	}
	level := o.Level
	if level == 0 {
		level = zstd.SpeedBetterCompression
	}
	win = int(min(int64(win), oldSize))

	var places []int64
	if oldSize > int64(win) && newSize > 0 {
		var err error
		if places, err = place(ctx, old, oldSize, new, newSize, seg, win); err != nil {
			return err
		}
	}

	hdr := make([]byte, fileHeader, max(fileHeader, segHeader))
	copy(hdr, magic)
	binary.BigEndian.PutUint64(hdr[4:], uint64(oldSize))
	binary.BigEndian.PutUint64(hdr[12:], uint64(newSize))
	if _, err := w.Write(hdr); err != nil {
		return fmt.Errorf("zpatch: make: writing the header: %w", err)
	}
	if newSize == 0 {
		return nil
	}
	// One encoder for all segments, used as a stream so that it keeps one
	// set of match tables and one history (EncodeAll would keep a second
	// of each beside the stream's): ResetWithOptions keeps them.
	// The encoder, its tables and the buffers serve the next Make too: a
	// server makes hundreds of patches after a publish, and a new
	// encoder each time was 20 MB of garbage a patch.
	ms, _ := makePool.Get().(*makeState)
	if ms != nil && ms.level != level {
		ms.enc.Close()
		ms = nil
	}
	if ms == nil {
		enc, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(level),
			zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(window),
			zstd.WithLowerEncoderMem(true),
			zstd.WithEncoderCRC(true),
			zstd.WithEncoderDictRaw(0, nil))
		if err != nil {
			return fmt.Errorf("zpatch: make: starting the encoder: %w", err)
		}
		ms = &makeState{level: level, enc: enc}
	}
	defer makePool.Put(ms)
	enc := ms.enc
	if cap(ms.dict) < win {
		ms.dict = make([]byte, win)
	}
	dict := ms.dict[:win]
	frame := &ms.frame
	for i, s := 0, int64(0); s < newSize; i, s = i+1, s+int64(seg) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("zpatch: make: segment %d: %w", i, err)
		}
		n := min(int64(seg), newSize-s)
		var off int64
		if places != nil {
			off = places[i]
		}
		d := dict[:win]
		if err := readAt(old, d, off); err != nil {
			return fmt.Errorf("zpatch: make: segment %d: reading old bytes %d-%d: %w", i, off, off+int64(len(d)), err)
		}
		frame.Reset()
		if err := enc.ResetWithOptions(frame, zstd.WithEncoderDictRaw(0, d)); err != nil {
			return fmt.Errorf("zpatch: make: segment %d: dictionary: %w", i, err)
		}
		got, err := enc.ReadFrom(io.NewSectionReader(new, s, n))
		if err == nil && got != n {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return fmt.Errorf("zpatch: make: segment %d: reading new bytes %d-%d: %w", i, s, s+n, err)
		}
		if err := enc.Close(); err != nil {
			return fmt.Errorf("zpatch: make: segment %d: compressing: %w", i, err)
		}
		if frame.Len() > FrameBound(int(n)) {
			return fmt.Errorf("zpatch: make: segment %d: frame of %d bytes for %d", i, frame.Len(), n)
		}
		h := hdr[:segHeader]
		binary.BigEndian.PutUint32(h[0:], uint32(n))
		binary.BigEndian.PutUint64(h[4:], uint64(off))
		binary.BigEndian.PutUint32(h[12:], uint32(len(d)))
		binary.BigEndian.PutUint32(h[16:], uint32(frame.Len()))
		if _, err := w.Write(h); err != nil {
			return fmt.Errorf("zpatch: make: segment %d: writing: %w", i, err)
		}
		if _, err := w.Write(frame.Bytes()); err != nil {
			return fmt.Errorf("zpatch: make: segment %d: writing: %w", i, err)
		}
	}
	return nil
}

// match is a chunk of the new file found in the old one.
type match struct {
	newOff, oldOff int64
	n              int64
}

// place returns, for each segment of seg bytes of the new file, the offset
// of its window of win bytes in the old file (win < oldSize).
func place(ctx context.Context, old io.ReaderAt, oldSize int64, new io.ReaderAt, newSize int64, seg, win int) ([]int64, error) {
	// The smallest chunks (1 KiB, so that a rebuilt executable still
	// has some in common with its previous build), but at most about 64 Ki
	// of them in the old file: a table of a few MiB for the largest file.
	bits := uint8(cdc.MinBits)
	for bits < cdc.MaxBits && oldSize>>bits > 64<<10 {
		bits++
	}
	oldChunks, err := cdc.Split(io.NewSectionReader(old, 0, oldSize), bits)
	if err != nil {
		return nil, fmt.Errorf("zpatch: make: reading the old file: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("zpatch: make: %w", err)
	}
	// Where each chunk is in the old file; -1 for a chunk found more than
	// once (runs of zeros, repeated tables), which says nothing of where
	// a segment came from.
	at := make(map[[cdc.HashSize]byte]int64, len(oldChunks))
	for _, c := range oldChunks {
		if _, ok := at[c.Hash]; ok {
			at[c.Hash] = -1
		} else {
			at[c.Hash] = c.Off
		}
	}
	oldChunks = nil
	newChunks, err := cdc.Split(io.NewSectionReader(new, 0, newSize), bits)
	if err != nil {
		return nil, fmt.Errorf("zpatch: make: reading the new file: %w", err)
	}
	var found []match
	for _, c := range newChunks {
		if o, ok := at[c.Hash]; ok && o >= 0 {
			found = append(found, match{newOff: c.Off, oldOff: o, n: int64(c.Len)})
		}
	}
	newChunks, at = nil, nil

	nseg := (newSize + int64(seg) - 1) / int64(seg)
	places := make([]int64, nseg)
	var in []match
	for i := range places {
		s, e := int64(i)*int64(seg), min(int64(i+1)*int64(seg), newSize)
		in = in[:0]
		for _, m := range found {
			if m.newOff < e && m.newOff+m.n > s {
				in = append(in, m)
			}
		}
		places[i] = bestWindow(in, s, e, oldSize, newSize, int64(win))
	}
	return places, nil
}

// bestWindow returns the start of the window of win bytes of the old file
// holding the most bytes of the segment [s, e)'s matches, the slack split
// evenly around them; or, with no match, the window centred on the
// segment's proportional position.
func bestWindow(in []match, s, e, oldSize, newSize, win int64) int64 {
	clamp := func(o int64) int64 { return max(0, min(o, oldSize-win)) }
	if len(in) == 0 {
		mid := int64(float64(s+e) / 2 * float64(oldSize) / float64(newSize))
		return clamp(mid - win/2)
	}
	sort.Slice(in, func(a, b int) bool { return in[a].oldOff < in[b].oldOff })
	var best, sum int64
	bi, bj := 0, 0
	j := 0
	for i := range in {
		if j < i {
			j, sum = i, 0
		}
		for j < len(in) && in[j].oldOff+in[j].n <= in[i].oldOff+win {
			sum += in[j].n
			j++
		}
		if sum > best {
			best, bi, bj = sum, i, j
		}
		if j > i {
			sum -= in[i].n
		}
	}
	if best == 0 {
		return clamp(in[0].oldOff)
	}
	lo, hi := in[bi].oldOff, int64(0)
	for _, m := range in[bi:bj] {
		hi = max(hi, m.oldOff+m.n)
	}
	return clamp(lo - (win-(hi-lo))/2)
}

// Apply writes to w exactly size bytes: the file the patch rebuilds from
// old (oldSize bytes). A patch that is not well formed, was made for an
// old file of another size, rebuilds more or fewer bytes or refers past
// the old file gives an error wrapping ErrCorrupt that says where; w never
// receives a byte past size. Errors reading old or writing w are returned
// wrapped as they are. On an error w may have received part of the file.
func Apply(ctx context.Context, w io.Writer, old io.ReaderAt, oldSize int64, patch io.Reader, size int64) error {
	if oldSize < 0 || size < 0 {
		return fmt.Errorf("zpatch: apply: sizes old %d, new %d bytes: negative", oldSize, size)
	}
	var hdr [max(fileHeader, segHeader)]byte
	pos := int64(0) // offset in the patch, for errors
	read := func(b []byte, what string) error {
		n, err := io.ReadFull(patch, b)
		pos += int64(n)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("zpatch: apply: %w: ends at byte %d, within %s", ErrCorrupt, pos, what)
		}
		if err != nil {
			return fmt.Errorf("zpatch: apply: reading %s at patch byte %d: %w", what, pos, err)
		}
		return nil
	}
	if err := read(hdr[:fileHeader], "the header"); err != nil {
		return err
	}
	if string(hdr[:4]) != magic {
		return fmt.Errorf("zpatch: apply: %w: header: magic %q, want %q", ErrCorrupt, hdr[:4], magic)
	}
	po, pn := binary.BigEndian.Uint64(hdr[4:]), binary.BigEndian.Uint64(hdr[12:])
	if po != uint64(oldSize) || pn != uint64(size) {
		return fmt.Errorf("zpatch: apply: %w: header: made for old %d, new %d bytes; have old %d, want new %d", ErrCorrupt, po, pn, oldSize, size)
	}
	// The buffers and the decoder of one Apply serve the next: a sync
	// patches one file after another, and would otherwise leave up to
	// 10 MiB of garbage a file for the collector.
	st, _ := applyPool.Get().(*applyState)
	if st == nil {
		st = &applyState{}
	}
	dict, out, frame, dec := st.dict, st.out, st.frame, st.dec
	ok := false
	defer func() {
		st.dict, st.out, st.frame = dict, out, frame
		if !ok && dec != nil {
			// A decoder that failed is not trusted with the next
			// patch.
			dec.Close()
			dec = nil
		}
		st.dec = dec
		applyPool.Put(st)
	}()
	for i, done := 0, int64(0); done < size; i++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("zpatch: apply: segment %d: %w", i, err)
		}
		where := fmt.Sprintf("segment %d (new bytes from %d, patch byte %d)", i, done, pos)
		if err := read(hdr[:segHeader], where+" header"); err != nil {
			return err
		}
		n := int64(binary.BigEndian.Uint32(hdr[0:]))
		off := binary.BigEndian.Uint64(hdr[4:])
		dl := int64(binary.BigEndian.Uint32(hdr[12:]))
		fl := int64(binary.BigEndian.Uint32(hdr[16:]))
		switch {
		case n < 1 || n > MaxSegment:
			return fmt.Errorf("zpatch: apply: %w: %s: length %d outside 1..%d", ErrCorrupt, where, n, MaxSegment)
		case n > size-done:
			return fmt.Errorf("zpatch: apply: %w: %s: length %d past the %d bytes of the file", ErrCorrupt, where, n, size)
		case n < MinSegment && n < size-done:
			return fmt.Errorf("zpatch: apply: %w: %s: length %d, less than %d and not the last", ErrCorrupt, where, n, MinSegment)
		case dl > MaxWindow:
			return fmt.Errorf("zpatch: apply: %w: %s: dictionary of %d bytes, more than %d", ErrCorrupt, where, dl, MaxWindow)
		case off > uint64(oldSize) || dl > oldSize-int64(off):
			return fmt.Errorf("zpatch: apply: %w: %s: dictionary %d+%d past the old file's %d bytes", ErrCorrupt, where, off, dl, oldSize)
		case fl > int64(FrameBound(int(n))):
			return fmt.Errorf("zpatch: apply: %w: %s: frame of %d bytes for %d", ErrCorrupt, where, fl, n)
		}
		frame = grow(frame, int(fl))
		if err := read(frame, where+" frame"); err != nil {
			return err
		}
		dict = grow(dict, int(dl))
		if err := readAt(old, dict, int64(off)); err != nil {
			return fmt.Errorf("zpatch: apply: %s: reading old bytes %d-%d: %w", where, off, int64(off)+dl, err)
		}
		opts := []zstd.DOption{
			zstd.WithDecoderDictRaw(0, dict),
		}
		var err error
		if dec == nil {
			dec, err = zstd.NewReader(nil, append(opts,
				zstd.WithDecoderConcurrency(1),
				zstd.WithDecoderLowmem(true),
				// A frame may declare zstd's window; what it
				// rebuilds is bounded by out's capacity, n.
				zstd.WithDecoderMaxWindow(window),
				zstd.WithDecoderMaxMemory(window),
				zstd.WithDecodeAllCapLimit(true))...)
		} else {
			err = dec.ResetWithOptions(nil, opts...)
		}
		if err != nil {
			return fmt.Errorf("zpatch: apply: %s: starting the decoder: %w", where, err)
		}
		out = grow(out, int(n))
		got, err := dec.DecodeAll(frame, out[:0:n])
		if err != nil {
			return fmt.Errorf("zpatch: apply: %w: %s: %v", ErrCorrupt, where, err)
		}
		if int64(len(got)) != n || (len(got) > 0 && &got[0] != &out[0]) {
			return fmt.Errorf("zpatch: apply: %w: %s: frame gives %d bytes, header says %d", ErrCorrupt, where, len(got), n)
		}
		if _, err := w.Write(got); err != nil {
			return fmt.Errorf("zpatch: apply: %s: writing: %w", where, err)
		}
		done += n
	}
	// The patch must end here.
	if k, err := io.ReadFull(patch, hdr[:1]); k > 0 {
		return fmt.Errorf("zpatch: apply: %w: bytes after the last segment, at patch byte %d", ErrCorrupt, pos)
	} else if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("zpatch: apply: reading the end of the patch at byte %d: %w", pos, err)
	}
	ok = true
	return nil
}

// makeState is what one Make leaves to the next (see makePool): an
// encoder of one level, a dictionary buffer and a frame buffer.
type makeState struct {
	level zstd.EncoderLevel
	enc   *zstd.Encoder
	dict  []byte
	frame bytes.Buffer
}

// makePool keeps the encoder and buffers of Make between calls.
var makePool sync.Pool

// applyState is what one Apply leaves to the next (see applyPool).
type applyState struct {
	dict, out, frame []byte
	dec              *zstd.Decoder
}

// applyPool keeps the buffers and decoder of Apply between calls; the
// collector may drop them, which costs a new allocation, nothing more.
var applyPool sync.Pool

// grow returns b resized to n bytes, reusing its array when it is large
// enough.
func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// readAt fills b from r at off, or says why not.
func readAt(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}
