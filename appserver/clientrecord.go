package appserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/internal/atomicfile"
)

// Which published release each client is on, for the CLIENTS column of
// `appserver releases`. The running server confirms a client on a
// release when the client reports that it installed it, or is answered
// "up to date" for it; the record of each OS, client id -> release
// number, is kept in STATE/releases/<os>/clients.json, written at most
// every clientsSaveEvery while it has changes, and at the server's stop.
// The counts are therefore up to clientsSaveEvery old, and a client
// counts for the last release it was confirmed on until it confirms
// another (a workstation retired keeps counting for its last release).

// clientsSaveEvery is how often, at most, a changed record is written.
const clientsSaveEvery = 30 * time.Second

// maxClientRecords bounds the clients recorded per OS (memory and file
// size: about 60 bytes each); past it, new client ids are not recorded,
// and `appserver releases` undercounts.
const maxClientRecords = 100_000

// clientsFormat is the version of clients.json.
const clientsFormat = 1

// clientsFile is the record of osName's clients under a state folder.
func clientsFile(state, osName string) string {
	return filepath.Join(state, "releases", osName, "clients.json")
}

// clientsRecord is clients.json.
type clientsRecord struct {
	Format  int               `json:"format"`
	Clients map[string]uint64 `json:"clients"` // client id -> release number
}

// clientReleases is the record of every OS, kept by the running server.
// It is safe for concurrent use.
type clientReleases struct {
	state string
	log   *slog.Logger

	saveMu sync.Mutex // one save at a time

	mu   sync.Mutex
	byOS map[string]*osClients
	full map[string]bool // OSes whose bound was reached and logged
}

// osClients is one OS's record.
type osClients struct {
	clients map[string]uint64
	dirty   bool
}

func newClientReleases(state string, log *slog.Logger) *clientReleases {
	return &clientReleases{state: state, log: log, byOS: map[string]*osClients{}, full: map[string]bool{}}
}

// confirm records that the client clientID of osName is on published
// release number: it reported that it installed it, or it was answered
// "up to date" for it. Number 0 (the update folder is served, not a
// release) forgets the client. A client with no id is not recorded.
func (c *clientReleases) confirm(osName, clientID string, number uint64) {
	if !canonicalID(clientID) || osName == "" {
		// Only the ids smartclient makes (32 lower-case hex digits):
		// any client may name itself, and long made-up ids would cost
		// the server memory and crowd the real ones out of the record.
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	oc := c.byOS[osName]
	if oc == nil {
		// Read once, at the OS's first confirmation: the counts go on
		// from the last run's.
		clients, err := readClientsRecord(clientsFile(c.state, osName))
		if err != nil {
			c.log.Warn("reading which release each client is on; starting a new record", "os", osName, "err", err)
		}
		if clients == nil {
			clients = map[string]uint64{}
		}
		oc = &osClients{clients: clients}
		c.byOS[osName] = oc
	}
	old, had := oc.clients[clientID]
	switch {
	case number == 0:
		if had {
			delete(oc.clients, clientID)
			oc.dirty = true
		}
	case had && old == number:
	case !had && len(oc.clients) >= maxClientRecords:
		if !c.full[osName] {
			c.full[osName] = true
			c.log.Warn("too many clients to record which release each is on; newer ones are not counted", "os", osName, "max", maxClientRecords)
		}
	default:
		oc.clients[clientID] = number
		oc.dirty = true
	}
}

// run writes the changed records every clientsSaveEvery until ctx is
// done, and then once more.
func (c *clientReleases) run(ctx context.Context) {
	t := time.NewTicker(clientsSaveEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.flush()
			return
		case <-t.C:
			c.flush()
		}
	}
}

// flush writes every record that changed since it was last written; a
// record that cannot be written is logged and tried again at the next.
func (c *clientReleases) flush() {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	type todo struct {
		osName  string
		clients map[string]uint64
	}
	var work []todo
	c.mu.Lock()
	for o, oc := range c.byOS {
		if oc.dirty {
			work = append(work, todo{o, maps.Clone(oc.clients)})
			oc.dirty = false
		}
	}
	c.mu.Unlock()
	for _, w := range work {
		path := clientsFile(c.state, w.osName)
		if err := atomicfile.WriteJSON(path, clientsRecord{Format: clientsFormat, Clients: w.clients}, 0o644); err != nil {
			c.log.Warn("saving which release each client is on", "file", path, "err", err)
			c.mu.Lock()
			c.byOS[w.osName].dirty = true
			c.mu.Unlock()
		}
	}
}

// readClientsRecord reads a clients.json; a missing file is no clients.
func readClientsRecord(path string) (map[string]uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	clients, err := decodeClientsRecord(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return clients, nil
}

// decodeClientsRecord decodes clients.json's content.
func decodeClientsRecord(b []byte) (map[string]uint64, error) {
	var r clientsRecord
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&r); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, errors.New("data after the record")
	}
	switch {
	case r.Format != clientsFormat:
		return nil, fmt.Errorf("format %d, this server reads %d", r.Format, clientsFormat)
	case len(r.Clients) > maxClientRecords:
		return nil, fmt.Errorf("%d clients, more than %d", len(r.Clients), maxClientRecords)
	}
	for id, n := range r.Clients {
		if id == "" || n == 0 {
			return nil, fmt.Errorf("client %q on release %d", id, n)
		}
	}
	return r.Clients, nil
}

// countClients returns how many clients of osName each release number
// has, from its record in state: nil when there is no record, an error
// naming the file when it cannot be read.
func countClients(state, osName string) (map[uint64]int, error) {
	clients, err := readClientsRecord(clientsFile(state, osName))
	if err != nil || clients == nil {
		return nil, err
	}
	counts := map[uint64]int{}
	for _, n := range clients {
		counts[n]++
	}
	return counts, nil
}

// canonicalID reports whether id is a client id as smartclient makes
// them: 32 lower-case hexadecimal digits.
func canonicalID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := range len(id) {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
