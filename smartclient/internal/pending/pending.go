// Package pending keeps the reports of syncs that could not tell the
// server how they ended (the server unreachable, the connection lost, the
// user's Ctrl-C before the report went, no ReportAck): the last Max of
// them, in one small file of the install's .smartclient folder, written
// atomically, and sent at the next session (see syncproto's "Reports
// delivered late").
//
// The file is bookkeeping, never a reason to fail a sync: a damaged one is
// logged and dropped, and a crash while it is written leaves the old file
// or the new (internal/atomicfile); a temporary file such a crash leaves
// is removed at the next Load.
package pending

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/erpupdate/smartsync/syncproto"
)

// Name is the file's name in the install's .smartclient folder.
const Name = "pending-reports.json"

// Max is how many reports are kept: the newest, oldest first.
const Max = 8

// maxFile bounds the file read: Max reports of the largest message, with
// room for JSON's escapes.
const maxFile = Max * (6*syncproto.MaxMessage + 4*syncproto.MaxShortString + 256)

// formatVersion is the version of the file's format.
const formatVersion = 1

type fileReport struct {
	Outcome  uint8  `json:"outcome"`
	Build    string `json:"build,omitempty"`
	Step     string `json:"step,omitempty"`
	Message  string `json:"message,omitempty"`
	Files    uint32 `json:"files,omitempty"`
	Bytes    uint64 `json:"bytes,omitempty"`
	Duration uint32 `json:"duration_ms,omitempty"`
	At       int64  `json:"at"`
	ID       uint64 `json:"id,omitempty"`
}

type file struct {
	Version int          `json:"version"`
	Reports []fileReport `json:"reports"`
}

// Encode returns the file's content for reports, of which it keeps the
// last Max.
func Encode(reports []syncproto.Report) []byte {
	if len(reports) > Max {
		reports = reports[len(reports)-Max:]
	}
	f := file{Version: formatVersion, Reports: make([]fileReport, len(reports))}
	for i, r := range reports {
		f.Reports[i] = fileReport{Outcome: uint8(r.Outcome), Build: r.Build, Step: r.Step, Message: r.Message,
			Files: r.Files, Bytes: r.Bytes, Duration: r.Duration, At: r.At, ID: r.ID}
	}
	data, err := json.Marshal(f)
	if err != nil {
		panic(err) // plain fields only
	}
	return append(data, '\n')
}

// Decode reads the file's content. Every report it returns is one the
// server would accept: a known outcome, fields within the protocol's
// limits, and a time.
func Decode(data []byte) ([]syncproto.Report, error) {
	if len(data) > maxFile {
		return nil, fmt.Errorf("%d bytes, limit %d", len(data), maxFile)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f file
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the reports")
	}
	switch {
	case f.Version != formatVersion:
		return nil, fmt.Errorf("format version %d, want %d", f.Version, formatVersion)
	case len(f.Reports) > Max:
		return nil, fmt.Errorf("%d reports, limit %d", len(f.Reports), Max)
	}
	out := make([]syncproto.Report, 0, len(f.Reports))
	for i, r := range f.Reports {
		rep := syncproto.Report{Outcome: syncproto.Outcome(r.Outcome), Build: r.Build, Step: r.Step, Message: r.Message,
			Files: r.Files, Bytes: r.Bytes, Duration: r.Duration, At: r.At, ID: r.ID}
		if err := check(rep); err != nil {
			return nil, fmt.Errorf("report %d: %w", i+1, err)
		}
		out = append(out, rep)
	}
	return out, nil
}

func check(r syncproto.Report) error {
	switch {
	case !r.Outcome.Valid():
		return fmt.Errorf("unknown outcome %d", r.Outcome)
	case r.At <= 0:
		return fmt.Errorf("time %d is not a time", r.At)
	}
	for _, s := range []struct {
		what  string
		v     string
		limit int
	}{{"build", r.Build, syncproto.MaxShortString}, {"step", r.Step, syncproto.MaxShortString}, {"message", r.Message, syncproto.MaxMessage}} {
		if len(s.v) > s.limit {
			return fmt.Errorf("%s of %d bytes, limit %d", s.what, len(s.v), s.limit)
		}
		if !utf8.ValidString(s.v) {
			return fmt.Errorf("%s is not valid UTF-8", s.what)
		}
	}
	return nil
}

// Store is the pending reports of one install's .smartclient folder.
type Store struct {
	dir string // the .smartclient folder
	log *slog.Logger
}

// At returns the store of the .smartclient folder metaDir.
func At(metaDir string, log *slog.Logger) *Store { return &Store{dir: metaDir, log: log} }

func (s *Store) path() string { return filepath.Join(s.dir, Name) }

// Load returns the kept reports, oldest first; none when there are none
// or the file is damaged, which is logged and removed.
func (s *Store) Load() []syncproto.Report {
	s.removeTemps()
	data, err := os.ReadFile(s.path())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var reports []syncproto.Report
	if err == nil {
		reports, err = Decode(data)
	}
	if err != nil {
		s.log.Warn("dropping the damaged file of reports not yet delivered", "file", s.path(), "err", err)
		if rerr := os.Remove(s.path()); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			s.log.Warn("removing the damaged file of reports not yet delivered", "file", s.path(), "err", rerr)
		}
		return nil
	}
	return reports
}

// Add keeps r, after the reports kept already; the oldest go past Max.
func (s *Store) Add(r syncproto.Report) error {
	if err := check(r); err != nil {
		return fmt.Errorf("keeping the report to send later: %w", err)
	}
	return s.Save(append(s.Load(), r))
}

// Save replaces the kept reports with reports (the last Max of them); no
// reports removes the file.
func (s *Store) Save(reports []syncproto.Report) error {
	if len(reports) == 0 {
		if err := os.Remove(s.path()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", s.path(), err)
		}
		return nil
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("keeping the report to send later: %w", err)
	}
	return atomicfile.Write(s.path(), Encode(reports), 0o644)
}

// removeTemps removes what a crash while writing the file left (see
// atomicfile.Write).
func (s *Store) removeTemps() {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "."+Name+".tmp-") {
			os.Remove(filepath.Join(s.dir, e.Name()))
		}
	}
}
