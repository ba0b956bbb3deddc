package manifest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"

	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/syncproto"
)

// Manifests by difference (syncproto's doc). The client keeps the last
// manifest it received, as its frames, in CacheFile. When it has one it
// asks with GetSketch, names each kept entry by its sketch, and the server
// sends only the entries that differ; the others come as runs of kept
// entries, read from the file front to back. The manifest rebuilt so is
// checked against the server's digest. The file is a cache: written
// without a sync, and a damaged one only costs the whole manifest.
const CacheFile = install.MetaDir + "/manifest.cache"

// Cache reads the kept manifest for a sketch and its runs, and writes the
// manifest being received (by Read) as the next kept one. Either side
// may be off: in is nil when nothing is kept, out when nothing may be
// written (a check only). It works on the folder's os.Root directly, not
// through install.Disk's fault hooks: a cache is never part of an update.
type Cache struct {
	root *os.Root
	log  *slog.Logger

	in    *os.File
	r     *syncproto.Reader
	named uint32 // entries the sketch named
	at    uint32 // the entry r gives next

	write   bool // the next kept manifest may be written
	written bool // and it was, whole: Commit renames it
	out     *os.File
	w       *bufio.Writer
	buf     []byte
}

// OpenCache opens the kept manifest of the install folder root, if any,
// and starts the next one unless write is false; Commit ends it.
func OpenCache(root *os.Root, write bool, log *slog.Logger) *Cache {
	c := &Cache{root: root, log: log, write: write}
	if f, err := root.Open(CacheFile); err == nil {
		c.in = f
	} else if !errors.Is(err, fs.ErrNotExist) {
		log.Info("reading the kept manifest", "err", err)
	}
	return c
}

// Sketching reports whether the client asks for the manifest by sketch
// (syncproto.GetSketch).
func (c *Cache) Sketching() bool { return c != nil && c.in != nil }

// sendSketch names the kept entries to the server. A kept manifest that
// cannot be read is named as far as it could be read: the server then
// sends the rest whole.
func (c *Cache) sendSketch(send func(...syncproto.Message) error) error {
	var sums []uint64
	r := syncproto.NewReader(bufio.NewReaderSize(c.in, 64<<10))
	m, err := r.Read()
	if _, ok := m.(syncproto.ManifestHeader); err == nil && ok {
		// An entry's sketch is that of its payload, as the file holds
		// it (keep wrote it): no entry is decoded here. One that would
		// not decode can only be named in a run if its sketch is a
		// valid entry's, and then reading the run fails.
		for len(sums) < syncproto.MaxFiles {
			t, p, err := r.ReadRaw()
			if err == io.EOF {
				break
			}
			if err == nil && t != syncproto.MsgManifestEntry {
				err = fmt.Errorf("a %v frame among the entries", t)
			}
			if err != nil {
				c.log.Info("the kept manifest is damaged; naming what could be read of it", "entries", len(sums), "err", err)
				break
			}
			sums = append(sums, syncproto.PayloadSketch(p))
		}
	} else {
		c.log.Info("the kept manifest is damaged; asking for the whole manifest", "err", err)
	}
	c.named = uint32(len(sums))
	for k := 0; k == 0 || k < len(sums); k += syncproto.MaxSketchSums {
		part := sums[k:min(k+syncproto.MaxSketchSums, len(sums))]
		more := k+syncproto.MaxSketchSums < len(sums)
		if err := send(syncproto.Sketch{More: more, Sums: part}); err != nil {
			return fmt.Errorf("sending the manifest sketch: %w", err)
		}
	}
	if len(sums) == 0 {
		return nil // no run can name a kept entry
	}
	// The runs are read from the start again.
	if _, err := c.in.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("reading the kept manifest: %w", err)
	}
	c.r = syncproto.NewReader(bufio.NewReaderSize(c.in, 64<<10))
	if _, err := c.r.Expect(syncproto.MsgManifestHeader); err != nil {
		return fmt.Errorf("reading the kept manifest: %w", err)
	}
	return nil
}

// run checks a ManifestSame against what was named and what came before,
// and skips the kept entries before it.
func (c *Cache) run(s syncproto.ManifestSame) error {
	if s.From < c.at || uint64(s.From)+uint64(s.Count) > uint64(c.named) {
		return fmt.Errorf("a run of %d kept entries from %d, with %d named and %d read: %w", s.Count, s.From, c.named, c.at, ErrBad)
	}
	for c.at < s.From {
		if _, err := c.entry(); err != nil {
			return err
		}
	}
	return nil
}

// entry reads the next kept entry.
func (c *Cache) entry() (syncproto.ManifestEntry, error) {
	m, err := c.r.Expect(syncproto.MsgManifestEntry)
	if err != nil {
		// It was read whole for the sketch a moment ago.
		return syncproto.ManifestEntry{}, fmt.Errorf("reading kept manifest entry %d: %w", c.at, err)
	}
	c.at++
	return m.(syncproto.ManifestEntry), nil
}

// keep writes the next frame of the manifest being received; the first
// starts the file.
func (c *Cache) keep(m syncproto.Message) {
	if c == nil || !c.write {
		return
	}
	if c.w == nil {
		err := c.root.MkdirAll(install.MetaDir, 0o755)
		if err == nil {
			c.out, err = c.root.OpenFile(CacheFile+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		}
		if err != nil {
			c.log.Info("keeping the manifest", "err", err)
			c.write = false
			return
		}
		c.w = bufio.NewWriterSize(c.out, 64<<10)
	}
	c.buf = syncproto.AppendFrame(c.buf[:0], m)
	if _, err := c.w.Write(c.buf); err != nil {
		c.log.Info("keeping the manifest", "err", err)
		c.abandon()
	}
}

// abandon stops writing the next kept manifest.
func (c *Cache) abandon() {
	c.write = false
	if c.out != nil {
		c.out.Close()
		c.root.Remove(CacheFile + ".tmp")
		c.out, c.w = nil, nil
	}
}

// Close ends both sides without keeping the manifest being received, as
// when the manifest could not be asked for.
func (c *Cache) Close() { c.close(false, false) }

// close ends both sides: the manifest received whole and checked (ok)
// is written out, to replace the kept one at Commit; otherwise the kept
// one stays, unless drop says it gave a wrong manifest.
func (c *Cache) close(ok, drop bool) {
	if c == nil {
		return
	}
	if c.in != nil {
		c.in.Close()
		c.in = nil
	}
	if drop {
		c.root.Remove(CacheFile)
	}
	if c.out == nil {
		return
	}
	if !ok {
		c.abandon()
		return
	}
	err := c.w.Flush()
	if cerr := c.out.Close(); err == nil {
		err = cerr
	}
	c.out, c.w = nil, nil
	if err != nil {
		c.log.Info("keeping the manifest", "err", err)
		c.root.Remove(CacheFile + ".tmp")
		return
	}
	c.written = true
}

// Commit makes the manifest that Read wrote out the kept one if ok (the
// sync succeeded), and removes it otherwise. A nil Cache does nothing.
func (c *Cache) Commit(ok bool) {
	if c == nil {
		return
	}
	c.close(false, false) // a manifest still being read is not kept
	if !c.written {
		return
	}
	c.written = false
	if !ok {
		c.root.Remove(CacheFile + ".tmp")
		return
	}
	if err := c.root.Rename(CacheFile+".tmp", CacheFile); err != nil {
		c.log.Info("keeping the manifest", "err", err)
		c.root.Remove(CacheFile + ".tmp")
	}
}
