package console

import (
	"context"
	"errors"
	"time"
)

// Source is where the console reads what it shows: the client records,
// the releases and the server's own state. The appserver adapts its
// records store to it; the console never writes through it. Every method
// may be called concurrently; an error is shown on the page (or in the
// JSON answer), never a blank page.
type Source interface {
	// Overview is the estate at a glance: clients per build and OS, the
	// failed clients, rollout progress and stale clients.
	Overview(ctx context.Context) (Overview, error)
	// Clients lists the clients that match f, sorted and paged as f says.
	Clients(ctx context.Context, f ClientFilter) (ClientList, error)
	// Client is one client with its sync history, newest first; an
	// unknown id is an error that wraps ErrNotFound.
	Client(ctx context.Context, id string) (ClientDetail, error)
	// Releases lists the published releases of every OS.
	Releases(ctx context.Context) ([]Release, error)
	// SelfUpdate is the server's own build and self-update state.
	SelfUpdate(ctx context.Context) (SelfUpdate, error)
	// RecentLog is the last n log lines, newest first.
	RecentLog(ctx context.Context, n int) ([]LogLine, error)
}

// ErrNotFound is wrapped by Source.Client for an unknown client id.
var ErrNotFound = errors.New("not found")

// Overview is the estate at a glance.
type Overview struct {
	Clients  int          `json:"clients"`  // clients known
	Builds   []BuildCount `json:"builds"`   // clients per build and OS
	Failures []Failure    `json:"failures"` // clients whose last sync failed, newest first
	Rollouts []Rollout    `json:"rollouts"` // staged rollouts, per OS and ring
	// StaleDays is how long a client may go unseen before it is stale
	// (0: the source keeps no such threshold).
	StaleDays int           `json:"stale_days"`
	Stale     []StaleClient `json:"stale"` // clients not seen for StaleDays, oldest first
	// Behind, when not "", says why what is shown may be behind: the
	// records cannot be written now, and reports wait in memory.
	Behind string `json:"behind,omitempty"`
}

// BuildCount is how many clients of an OS run a build.
type BuildCount struct {
	Build   string `json:"build"`
	OS      string `json:"os"`
	Clients int    `json:"clients"`
}

// Failure is a client whose last sync failed.
type Failure struct {
	ClientID string    `json:"client_id"`
	Host     string    `json:"host"`
	User     string    `json:"user"`
	OS       string    `json:"os"`
	Build    string    `json:"build"`  // the build the client runs
	Step     string    `json:"step"`   // the step that failed
	Reason   string    `json:"reason"` // why, as the client said it
	When     time.Time `json:"when"`
}

// Rollout is the progress of a staged rollout on one OS's ring.
type Rollout struct {
	OS        string `json:"os"`
	Ring      string `json:"ring"`
	Release   uint64 `json:"release"`
	Build     string `json:"build"`
	Successes int    `json:"successes"`
	Failures  int    `json:"failures"`
	Pending   int    `json:"pending"`
	State     string `json:"state"` // running, halted or promoted
}

// Rollout states.
const (
	RolloutRunning  = "running"
	RolloutHalted   = "halted"
	RolloutPromoted = "promoted"
)

// StaleClient is a client not seen for a while.
type StaleClient struct {
	ClientID string    `json:"client_id"`
	Host     string    `json:"host"`
	User     string    `json:"user"`
	OS       string    `json:"os"`
	Build    string    `json:"build"`
	LastSeen time.Time `json:"last_seen"`
}

// Sort columns of ClientFilter.Sort.
const (
	SortHost     = "host"
	SortUser     = "user"
	SortOS       = "os"
	SortBuild    = "build"
	SortRelease  = "release"
	SortRing     = "ring"
	SortLastSeen = "last_seen"
	SortOutcome  = "outcome"
)

// SortColumns are the valid values of ClientFilter.Sort, in the order of
// the clients table.
var SortColumns = []string{SortHost, SortUser, SortOS, SortBuild, SortRelease, SortRing, SortLastSeen, SortOutcome}

// ClientFilter selects, sorts and pages the clients of Source.Clients.
// A zero field does not filter.
type ClientFilter struct {
	Search     string // a substring of the id, host or user (case-insensitive)
	FailedOnly bool   // only the clients whose last sync failed
	Build      string // only this build
	OS         string // only this OS
	StaleDays  int    // only the clients not seen for this many days
	Sort       string // one of SortColumns; "" is SortHost
	Desc       bool   // descending
	Limit      int    // at most this many rows (the console always sets it)
	Offset     int    // rows skipped
}

// ClientList is one page of clients.
type ClientList struct {
	Total   int         `json:"total"` // the clients that match, ignoring Limit and Offset
	Clients []ClientRow `json:"clients"`
}

// ClientRow is a client as its last sync left it.
type ClientRow struct {
	ID       string    `json:"id"`
	Host     string    `json:"host"`
	User     string    `json:"user"`
	OS       string    `json:"os"`
	Build    string    `json:"build"`
	Release  uint64    `json:"release"` // the release number installed, 0 if none
	Ring     string    `json:"ring"`
	LastSeen time.Time `json:"last_seen"`
	Outcome  string    `json:"outcome"` // the last sync's outcome
	Failed   bool      `json:"failed"`  // the last sync failed
	Step     string    `json:"step,omitempty"`
	Reason   string    `json:"reason,omitempty"`
}

// ClientDetail is one client with its history.
type ClientDetail struct {
	ClientRow
	InstallPath string       `json:"install_path,omitempty"`
	FirstSeen   time.Time    `json:"first_seen"`
	History     []SyncRecord `json:"history"` // newest first
}

// SyncRecord is one sync of a client.
type SyncRecord struct {
	When     time.Time     `json:"when"`
	Outcome  string        `json:"outcome"`
	Failed   bool          `json:"failed"`
	Step     string        `json:"step,omitempty"`
	Reason   string        `json:"reason,omitempty"`
	Build    string        `json:"build"`
	Release  uint64        `json:"release"`
	Files    int           `json:"files"`
	Bytes    int64         `json:"bytes"`
	Duration time.Duration `json:"duration_ns"`
}

// Release is one published release of an OS.
type Release struct {
	OS      string    `json:"os"`
	Number  uint64    `json:"number"`
	Build   string    `json:"build"`
	Date    time.Time `json:"date"`
	Files   int       `json:"files"`
	Bytes   int64     `json:"bytes"`
	Signed  bool      `json:"signed"`
	Expires time.Time `json:"expires,omitzero"` // the signature's expiry
	Clients int       `json:"clients"`          // clients on it
	Served  bool      `json:"served"`           // the release served now
}

// SelfUpdate is the server's own build and self-update state.
type SelfUpdate struct {
	Build      string    `json:"build"`                 // the running server's build
	Started    time.Time `json:"started,omitzero"`      // when the running server started
	InProgress string    `json:"in_progress,omitempty"` // the update under way, "" if none
	LastResult string    `json:"last_result,omitempty"` // the last self-update's result, "" if none
	LastWhen   time.Time `json:"last_when,omitzero"`    // when it ended
}

// LogLine is one line of the server's log.
type LogLine struct {
	Time    time.Time `json:"time"`
	Level   string    `json:"level"`
	Message string    `json:"message"`
	Attrs   string    `json:"attrs,omitempty"` // the attributes, as key=value text
}
