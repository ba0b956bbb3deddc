package console

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// memSource is a Source over fixed data, for the tests: it filters,
// sorts and pages as a records store does.
type memSource struct {
	now      time.Time
	clients  []ClientDetail
	rollouts []Rollout
	releases []Release
	self     SelfUpdate
	log      []LogLine

	mu     sync.Mutex
	err    error  // returned by every method when set
	panic  bool   // every method panics when set
	behind string // the overview's Behind
}

// Hostile strings: they must reach the page as text, never as markup.
const (
	hostileHost   = `<script>alert("host")</script>`
	hostileUser   = `"><img src=x onerror=alert(1)>`
	hostileReason = `<b>disk</b> & "quota" full`
	readOnly      = "the file lib/libtotvs.so is read-only"
)

func newMemSource() *memSource {
	now := time.Now().Truncate(time.Second)
	h := func(d time.Duration) time.Time { return now.Add(-d) }
	row := func(id, host, user, osName, build string, rel uint64, ring string, seen time.Duration, outcome, step, reason string) ClientDetail {
		failed := outcome == "failed"
		return ClientDetail{
			ClientRow:   ClientRow{ID: id, Host: host, User: user, OS: osName, Build: build, Release: rel, Ring: ring, LastSeen: h(seen), Outcome: outcome, Failed: failed, Step: step, Reason: reason},
			InstallPath: "/opt/erp/" + id, FirstSeen: h(90 * 24 * time.Hour),
			History: []SyncRecord{
				{When: h(seen), Outcome: outcome, Failed: failed, Step: step, Reason: reason, Build: build, Release: rel, Files: 12, Bytes: 3 << 20, Duration: 2500 * time.Millisecond},
				{When: h(seen + 24*time.Hour), Outcome: "updated", Build: "1.9.0", Release: 1, Files: 40, Bytes: 50 << 20, Duration: 9 * time.Second},
			},
		}
	}
	return &memSource{
		now: now,
		clients: []ClientDetail{
			row("aaaa0001", "ws-ana", "ana", "linux", "2.1.0", 3, "pilot", time.Hour, "updated", "", ""),
			row("aaaa0002", "ws-bob", "bob", "windows", "2.0.0", 2, "main", 2*time.Hour, "failed", "install", readOnly),
			row("aaaa0003", hostileHost, hostileUser, "windows", "2.1.0", 3, "main", 3*time.Hour, "failed", "download", hostileReason),
			row("aaaa0004", "ws-dan", "dan", "darwin", "1.9.0", 1, "main", 20*24*time.Hour, "up to date", "", ""),
			row("aaaa0005", "ws-eve", "eve", "linux", "2.1.0", 3, "pilot", 10*time.Minute, "up to date", "", ""),
		},
		rollouts: []Rollout{
			{OS: "linux", Ring: "pilot", Release: 3, Build: "2.1.0", Successes: 2, Failures: 0, Pending: 0, State: RolloutPromoted},
			{OS: "windows", Ring: "main", Release: 3, Build: "2.1.0", Successes: 1, Failures: 2, Pending: 7, State: RolloutHalted},
		},
		releases: []Release{
			{OS: "windows", Number: 3, Build: "2.1.0", Date: h(48 * time.Hour), Files: 120, Bytes: 80 << 20, Signed: true, Expires: now.Add(300 * 24 * time.Hour), Clients: 1, Served: true},
			{OS: "windows", Number: 2, Build: "2.0.0", Date: h(30 * 24 * time.Hour), Files: 118, Bytes: 79 << 20, Signed: true, Clients: 1},
			{OS: "linux", Number: 3, Build: "2.1.0", Date: h(48 * time.Hour), Files: 90, Bytes: 60 << 20, Signed: true, Clients: 2, Served: true},
		},
		self: SelfUpdate{Build: "appserver 7.4.2", Started: h(5 * time.Hour), LastResult: "updated from 7.4.1 to 7.4.2", LastWhen: h(5 * time.Hour)},
		log: []LogLine{
			{Time: h(time.Minute), Level: "WARN", Message: "sync failed", Attrs: `host=ws-bob reason="` + readOnly + `"`},
			{Time: h(2 * time.Minute), Level: "INFO", Message: "session ended", Attrs: "host=<i>x</i>"},
		},
	}
}

func (m *memSource) check() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.panic {
		panic("memSource: told to panic")
	}
	return m.err
}

func (m *memSource) setErr(err error) {
	m.mu.Lock()
	m.err = err
	m.mu.Unlock()
}

const staleDays = 7

func (m *memSource) Overview(ctx context.Context) (Overview, error) {
	if err := m.check(); err != nil {
		return Overview{}, fmt.Errorf("overview: %w", err)
	}
	m.mu.Lock()
	behind := m.behind
	m.mu.Unlock()
	ov := Overview{Clients: len(m.clients), Rollouts: m.rollouts, StaleDays: staleDays, Behind: behind}
	counts := map[[2]string]int{}
	for _, c := range m.clients {
		counts[[2]string{c.Build, c.OS}]++
		if c.Failed {
			ov.Failures = append(ov.Failures, Failure{ClientID: c.ID, Host: c.Host, User: c.User, OS: c.OS, Build: c.Build, Step: c.Step, Reason: c.Reason, When: c.LastSeen})
		}
		if m.now.Sub(c.LastSeen) > staleDays*24*time.Hour {
			ov.Stale = append(ov.Stale, StaleClient{ClientID: c.ID, Host: c.Host, User: c.User, OS: c.OS, Build: c.Build, LastSeen: c.LastSeen})
		}
	}
	for k, n := range counts {
		ov.Builds = append(ov.Builds, BuildCount{Build: k[0], OS: k[1], Clients: n})
	}
	slices.SortFunc(ov.Builds, func(a, b BuildCount) int { return cmp.Or(-cmp.Compare(a.Build, b.Build), cmp.Compare(a.OS, b.OS)) })
	slices.SortFunc(ov.Failures, func(a, b Failure) int { return b.When.Compare(a.When) })
	return ov, nil
}

func (m *memSource) Clients(ctx context.Context, f ClientFilter) (ClientList, error) {
	if err := m.check(); err != nil {
		return ClientList{}, err
	}
	var rows []ClientRow
	for _, c := range m.clients {
		s := strings.ToLower(f.Search)
		switch {
		case s != "" && !strings.Contains(strings.ToLower(c.ID+" "+c.Host+" "+c.User), s),
			f.FailedOnly && !c.Failed,
			f.Build != "" && c.Build != f.Build,
			f.OS != "" && c.OS != f.OS,
			f.StaleDays > 0 && m.now.Sub(c.LastSeen) < time.Duration(f.StaleDays)*24*time.Hour:
			continue
		}
		rows = append(rows, c.ClientRow)
	}
	key := func(r ClientRow) string {
		switch f.Sort {
		case SortUser:
			return r.User
		case SortOS:
			return r.OS
		case SortBuild:
			return r.Build
		case SortRelease:
			return fmt.Sprintf("%020d", r.Release)
		case SortRing:
			return r.Ring
		case SortLastSeen:
			return r.LastSeen.UTC().Format(time.RFC3339)
		case SortOutcome:
			return r.Outcome
		}
		return r.Host
	}
	slices.SortStableFunc(rows, func(a, b ClientRow) int {
		c := cmp.Or(cmp.Compare(key(a), key(b)), cmp.Compare(a.ID, b.ID))
		if f.Desc {
			return -c
		}
		return c
	})
	list := ClientList{Total: len(rows)}
	rows = rows[min(f.Offset, len(rows)):]
	list.Clients = rows[:min(f.Limit, len(rows))]
	return list, nil
}

func (m *memSource) Client(ctx context.Context, id string) (ClientDetail, error) {
	if err := m.check(); err != nil {
		return ClientDetail{}, err
	}
	for _, c := range m.clients {
		if c.ID == id {
			return c, nil
		}
	}
	return ClientDetail{}, fmt.Errorf("client %q: %w", id, ErrNotFound)
}

func (m *memSource) Releases(ctx context.Context) ([]Release, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	return m.releases, nil
}

func (m *memSource) SelfUpdate(ctx context.Context) (SelfUpdate, error) {
	if err := m.check(); err != nil {
		return SelfUpdate{}, err
	}
	return m.self, nil
}

func (m *memSource) RecentLog(ctx context.Context, n int) ([]LogLine, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	return m.log[:min(n, len(m.log))], nil
}

var errDatabaseLocked = errors.New("records: database is locked")
