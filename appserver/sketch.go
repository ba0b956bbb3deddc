package appserver

import (
	"fmt"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/index"
	"github.com/erpupdate/smartsync/syncproto"
)

// sendEncoded writes frames already encoded, in pieces, so that a slow
// client gets a fresh write deadline for each.
func (s *Server) sendEncoded(ss *session, wire []byte) error {
	for len(wire) > 0 {
		n := min(len(wire), 256<<10)
		ss.conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
		if err := ss.w.WriteEncoded(wire[:n]); err != nil {
			return err
		}
		wire = wire[n:]
	}
	return nil
}

// sendWhole sends man whole: its frames, or with z (the client set
// GetZManifest) its header and then its entries compressed once per
// manifest (index.Manifest.WireZ).
func (s *Server) sendWhole(ss *session, man *index.Manifest, z bool) error {
	wire := man.Wire()
	if !z {
		return s.sendEncoded(ss, wire.Frames)
	}
	entries, err := man.WireZ()
	if err != nil {
		return err
	}
	if err := s.sendEncoded(ss, wire.Header()); err != nil {
		return err
	}
	return s.sendEncoded(ss, entries)
}

// sendBySketch sends man to a client that keeps an earlier manifest's
// entries (syncproto's doc, "Manifests by difference"): the header, then,
// once the client has named what it keeps, each entry whole or within a
// run of the client's own, then the digest. With z (the client set
// GetZManifest) the frames after the header go through a zstd stream of
// the session's, in ManifestZ frames as they fill.
func (s *Server) sendBySketch(ss *session, man *index.Manifest, z bool) error {
	wire := man.Wire()
	if err := s.sendEncoded(ss, wire.Header()); err != nil {
		return err
	}
	if err := ss.w.Flush(); err != nil {
		return err
	}
	have, err := s.readSketch(ss, man)
	if err != nil {
		return err
	}
	out := ss.w
	var zw *syncproto.ZWriter
	if z {
		enc, err := syncproto.NewZEncoder(index.WireZLevel)
		if err != nil {
			return fmt.Errorf("starting the manifest's compressor: %w", err)
		}
		defer enc.Close()
		zw = syncproto.NewZWriter(enc, func(c syncproto.ManifestZ) error {
			ss.conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
			return ss.w.Write(c)
		})
		out = zw.Writer
	}
	run := s.runs(ss, 1<<32-1, func(from, n uint64) syncproto.Message {
		return syncproto.ManifestSame{From: uint32(from), Count: uint32(n)}
	})
	run.w = out
	next := uint32(0) // the runs name increasing entries of the sketch
	for i, sk := range wire.Sketches {
		if c, ok := have[sk]; ok && c >= next {
			if err := run.add(uint64(c), 1); err != nil {
				return err
			}
			next = c + 1
			continue
		}
		if err := run.flush(); err != nil {
			return err
		}
		ss.conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
		if err := out.WriteEncoded(wire.Entry(i)); err != nil {
			return err
		}
	}
	if err := run.flush(); err != nil {
		return err
	}
	ss.conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
	if err := out.Write(syncproto.ManifestEnd{Digest: wire.Digest}); err != nil || zw == nil {
		return err
	}
	return zw.Close()
}

// runWriter merges ranges that follow each other (entries the client
// keeps, bytes of the base) into one message, sent when a range does not
// follow, when the run would pass its limit, or at flush.
type runWriter struct {
	s       *Server
	ss      *session
	w       *syncproto.Writer // ss.w, unless set
	limit   uint64
	msg     func(from, n uint64) syncproto.Message
	from, n uint64
}

// runs returns a runWriter of session ss whose runs hold at most limit,
// sent as msg makes them.
func (s *Server) runs(ss *session, limit uint64, msg func(from, n uint64) syncproto.Message) *runWriter {
	return &runWriter{s: s, ss: ss, w: ss.w, limit: limit, msg: msg}
}

// add appends the range of n from from, sending the run before it unless
// it follows.
func (r *runWriter) add(from, n uint64) error {
	if r.n > 0 && r.from+r.n == from && r.n+n <= r.limit {
		r.n += n
		return nil
	}
	if err := r.flush(); err != nil {
		return err
	}
	r.from, r.n = from, n
	return nil
}

// flush sends the run, if any.
func (r *runWriter) flush() error {
	if r.n == 0 {
		return nil
	}
	r.ss.conn.SetWriteDeadline(time.Now().Add(r.s.WriteTimeout))
	err := r.w.Write(r.msg(r.from, r.n))
	r.n = 0
	return err
}

// readSketch reads the client's Sketch frames and returns each sum's first
// place in the client's order. A sketch names at most MaxFiles entries;
// only the first sketchLimit(man) are looked up, so that a client's sketch
// costs the server no more memory than its own manifest does (the entries
// past them are sent whole).
func (s *Server) readSketch(ss *session, man *index.Manifest) (map[uint64]uint32, error) {
	limit := sketchLimit(man)
	have := make(map[uint64]uint32, min(limit, len(man.Files)))
	n := 0
	for {
		m, err := s.next(ss, s.IdleTimeout, "manifest sketch")
		if err != nil {
			return nil, err
		}
		k, ok := m.(syncproto.Sketch)
		if !ok {
			return nil, fmt.Errorf("got %v while reading the manifest sketch: %w", m.Type(), syncproto.ErrUnexpected)
		}
		if n+len(k.Sums) > syncproto.MaxFiles {
			return nil, &syncproto.Error{Code: syncproto.CodeBadRequest, Message: fmt.Sprintf("a sketch of more than %d entries", syncproto.MaxFiles)}
		}
		for _, v := range k.Sums {
			if _, dup := have[v]; !dup && n < limit {
				have[v] = uint32(n)
			}
			n++
		}
		if !k.More {
			return have, nil
		}
	}
}

// sketchLimit is how many of a sketch's sums are looked up against man:
// twice its entries and some, which a release that shrank by half still
// fits.
func sketchLimit(man *index.Manifest) int { return 2*len(man.Files) + 1024 }
