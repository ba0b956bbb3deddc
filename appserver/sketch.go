package appserver

import (
	"fmt"
	"time"

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

// sendBySketch sends man to a client that keeps an earlier manifest's
// entries (syncproto's doc, "Manifests by difference"): the header, then,
// once the client has named what it keeps, each entry whole or within a
// run of the client's own, then the digest.
func (s *Server) sendBySketch(ss *session, man *Manifest) error {
	if err := s.sendEncoded(ss, man.wire[:man.hdrEnd]); err != nil {
		return err
	}
	if err := ss.w.Flush(); err != nil {
		return err
	}
	have, err := s.readSketch(ss, man)
	if err != nil {
		return err
	}
	var run syncproto.ManifestSame
	flush := func() error {
		if run.Count == 0 {
			return nil
		}
		ss.conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
		err := ss.w.Write(run)
		run = syncproto.ManifestSame{}
		return err
	}
	next := uint32(0) // the runs name increasing entries of the sketch
	for i, sk := range man.sketches {
		if c, ok := have[sk]; ok && c >= next {
			if run.Count == 0 || c != run.From+run.Count {
				if err := flush(); err != nil {
					return err
				}
				run.From = c
			}
			run.Count++
			next = c + 1
			continue
		}
		if err := flush(); err != nil {
			return err
		}
		start := man.hdrEnd
		if i > 0 {
			start = man.ends[i-1]
		}
		ss.conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
		if err := ss.w.WriteEncoded(man.wire[start:man.ends[i]]); err != nil {
			return err
		}
	}
	if err := flush(); err != nil {
		return err
	}
	ss.conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
	return ss.w.Write(syncproto.ManifestEnd{Digest: man.digest})
}

// readSketch reads the client's Sketch frames and returns each sum's first
// place in the client's order. A sketch names at most MaxFiles entries;
// only the first sketchLimit(man) are looked up, so that a client's sketch
// costs the server no more memory than its own manifest does (the entries
// past them are sent whole).
func (s *Server) readSketch(ss *session, man *Manifest) (map[uint64]uint32, error) {
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
func sketchLimit(man *Manifest) int { return 2*len(man.Files) + 1024 }
