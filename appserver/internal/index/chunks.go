package index

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/erpupdate/smartsync/internal/cdc"
	"github.com/zeebo/blake3"
)

// ChunkCache keeps the content-defined chunk lists of the files the server
// sends as deltas, keyed by content hash and chunking parameter: in memory
// (bounded by maxMemChunks) and on disk under the state folder, so that
// each list is cut once per release, not once per client or per restart.
// A list is cut from the file in the update folder and kept only when the
// file's whole content matched the manifest's hash while it was cut.
type ChunkCache struct {
	dir string
	log *slog.Logger

	mu       sync.Mutex
	mem      map[chunkKey][]cdc.Chunk
	memSize  int
	inflight map[chunkKey]*chunkCall
}

type chunkKey struct {
	hash [32]byte
	bits uint8
}

type chunkCall struct {
	done   chan struct{}
	chunks []cdc.Chunk
	err    error
}

// maxMemChunks bounds the lists kept in memory: about 8 MiB, the lists of
// several GiB of large files.
const maxMemChunks = 256 << 10

// NewChunkCache returns the chunk-list cache kept in stateDir.
func NewChunkCache(stateDir string, log *slog.Logger) *ChunkCache {
	return &ChunkCache{dir: filepath.Join(stateDir, "chunks"), log: log,
		mem: map[chunkKey][]cdc.Chunk{}, inflight: map[chunkKey]*chunkCall{}}
}

// errContentChanged means the file no longer has the manifest's content.
var errContentChanged = errors.New("content no longer matches the manifest")

// Get returns the chunks of f, a file of man, cut with bits: from memory,
// from disk or cut now; concurrent callers for one list share the work.
func (c *ChunkCache) Get(ctx context.Context, man *Manifest, f File, bits uint8) ([]cdc.Chunk, error) {
	key := chunkKey{f.Hash, bits}
	c.mu.Lock()
	if l, ok := c.mem[key]; ok {
		c.mu.Unlock()
		return l, nil
	}
	if call, ok := c.inflight[key]; ok {
		c.mu.Unlock()
		select {
		case <-call.done:
			return call.chunks, call.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	call := &chunkCall{done: make(chan struct{})}
	c.inflight[key] = call
	c.mu.Unlock()

	call.chunks, call.err = c.load(ctx, man, f, bits)
	c.mu.Lock()
	delete(c.inflight, key)
	if call.err == nil {
		if c.memSize+len(call.chunks) > maxMemChunks {
			// Simple and bounded: start over rather than track use.
			clear(c.mem)
			c.memSize = 0
		}
		c.mem[key] = call.chunks
		c.memSize += len(call.chunks)
	}
	c.mu.Unlock()
	close(call.done)
	return call.chunks, call.err
}

func (c *ChunkCache) path(key chunkKey) string {
	return filepath.Join(c.dir, fmt.Sprintf("%s-%d", hex.EncodeToString(key.hash[:]), key.bits))
}

func (c *ChunkCache) load(ctx context.Context, man *Manifest, f File, bits uint8) ([]cdc.Chunk, error) {
	key := chunkKey{f.Hash, bits}
	if data, err := os.ReadFile(c.path(key)); err == nil {
		b, chunks, err := cdc.DecodeList(data)
		if err == nil && b == bits && listSize(chunks) == f.Size {
			return chunks, nil
		}
		// A damaged cache file costs a new cut, never a wrong list.
		c.log.Warn("ignoring a damaged chunk list", "file", c.path(key), "err", err)
	}
	fh, err := man.OpenFile(f)
	if err != nil {
		return nil, fmt.Errorf("cutting %s into chunks: %w", f.Path, err)
	}
	defer fh.Close()
	h := blake3.New()
	ck := cdc.NewChunker(bits)
	n, err := io.Copy(io.MultiWriter(h, ck), ctxReader{ctx, fh})
	if err != nil {
		return nil, fmt.Errorf("cutting %s into chunks: %w", f.Path, err)
	}
	if n != f.Size || !bytes.Equal(h.Sum(nil), f.Hash[:]) {
		return nil, fmt.Errorf("cutting %s into chunks: %w", f.Path, errContentChanged)
	}
	chunks := ck.Finish()
	if err := os.MkdirAll(c.dir, 0o755); err == nil {
		err = atomicfile.Write(c.path(key), cdc.AppendList(nil, bits, chunks), 0o644)
	}
	if err != nil {
		c.log.Warn("saving a chunk list", "path", f.Path, "err", err)
	}
	return chunks, nil
}

func listSize(chunks []cdc.Chunk) int64 {
	if len(chunks) == 0 {
		return 0
	}
	last := chunks[len(chunks)-1]
	return last.Off + int64(last.Len)
}

// ctxReader stops a long read when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
