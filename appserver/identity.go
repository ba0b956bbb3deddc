package appserver

import (
	"container/list"
	"log/slog"
	"sync"
)

// maxIdentities bounds the client ids the server remembers: 100,000
// workstations, each at most a few hundred bytes (an id, a host name of
// at most syncproto.MaxShortString bytes, an address). Beyond it the id
// seen longest ago is forgotten, so an estate larger than that catches
// a clone only among the ids it saw last. Issue 20 keeps client records
// in SQLite; this map is the in-memory stand-in until then.
const maxIdentities = 100_000

// identities remembers the host each client id was first seen from, to
// catch one id used by two workstations: both cloned from one disk image,
// install folder included. The zero value is ready to use.
type identities struct {
	mu   sync.Mutex
	max  int                      // 0: maxIdentities
	ll   *list.List               // of *identity, the most recently seen first
	byID map[string]*list.Element // by id
}

// identity is where one id was first seen from.
type identity struct {
	id, host, addr string
}

// see records that id said hello from host at addr, and returns where it
// was seen before when that was another host: a clone. The id keeps its
// first host, so that only the newcomer is told to make a new id. An id
// or host that is empty (an older client, the server's own health check)
// is not remembered.
func (ids *identities) see(id, host, addr string) (first identity, clash bool) {
	if id == "" || host == "" {
		return identity{}, false
	}
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if ids.byID == nil {
		ids.ll, ids.byID = list.New(), map[string]*list.Element{}
	}
	if e, ok := ids.byID[id]; ok {
		ids.ll.MoveToFront(e)
		known := e.Value.(*identity)
		if known.host != host {
			return *known, true
		}
		known.addr = addr
		return identity{}, false
	}
	ids.byID[id] = ids.ll.PushFront(&identity{id: id, host: host, addr: addr})
	max := ids.max
	if max <= 0 {
		max = maxIdentities
	}
	for ids.ll.Len() > max {
		oldest := ids.ll.Back()
		ids.ll.Remove(oldest)
		delete(ids.byID, oldest.Value.(*identity).id)
	}
	return identity{}, false
}

// checkIdentity looks up the session's id, and tells a client whose id
// was first seen from another host to make itself a new one.
func (s *Server) checkIdentity(ss *session) (renew bool) {
	addr := ss.conn.RemoteAddr().String()
	first, clash := s.ids.see(ss.hello.ClientID, ss.hello.Host, addr)
	if !clash {
		return false
	}
	s.log.Warn("one client id from two hosts (a cloned disk image?); the client is told to make a new id",
		slog.String("id", ss.hello.ClientID), slog.String("host", ss.hello.Host), slog.String("client", addr),
		slog.String("first_host", first.host), slog.String("first_client", first.addr))
	return true
}
