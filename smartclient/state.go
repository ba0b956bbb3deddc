package smartclient

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The client's own bookkeeping lives in one hidden folder of the install
// folder, beside the bkp_remote.00N backups.
const (
	metaDir      = ".smartclient"
	stateFile    = metaDir + "/state.json"
	journalFile  = metaDir + "/journal.json"
	stagingDir   = metaDir + "/staging"
	oldDir       = metaDir + "/old"
	newBackupDir = metaDir + "/bkp_new"
	dropBackup   = metaDir + "/bkp_drop"
	lockFile     = metaDir + "/lock"
	backupPrefix = "bkp_remote."
	maxBackups   = 3
)

// reserved reports whether a relative slash path belongs to the client's
// bookkeeping, which no manifest may name and no backup copies.
func reserved(rel string) bool {
	first, _, _ := strings.Cut(rel, "/")
	first = strings.ToLower(first)
	return first == metaDir || strings.HasPrefix(first, backupPrefix)
}

// FileState is what the client knows of a file it installed: the size and
// mtime the file has on disk (which the file system may have rounded), the
// hash of its content, and the server's mtime it was installed for.
type FileState struct {
	Size          int64  `json:"size"`
	MtimeNs       int64  `json:"mtime"`
	Hash          string `json:"blake3"`
	ServerMtimeNs int64  `json:"server_mtime"`
	Preserve      bool   `json:"preserve,omitempty"`
}

// State is the client's persistent record, .smartclient/state.json.
type State struct {
	Version     int                  `json:"version"`
	ClientID    string               `json:"client_id"`
	Build       string               `json:"build,omitempty"`
	OS          string               `json:"os,omitempty"`
	Server      string               `json:"server,omitempty"`
	LastSync    time.Time            `json:"last_sync,omitzero"`
	LastOutcome string               `json:"last_outcome,omitempty"`
	LastMessage string               `json:"last_message,omitempty"`
	Files       map[string]FileState `json:"files"`
	// Journal is the checksum of the journal whose switch wrote this
	// state: with it, recovery knows that switch was committed.
	Journal string `json:"journal,omitempty"`
	// Manifest is the digest of the server's manifest that every file
	// listed in Files came from (hex); "" when some listed file is not
	// recorded. See quick.go.
	Manifest string `json:"manifest,omitempty"`

	exists bool // read from disk, as opposed to new
}

const stateVersion = 1

// loadState reads the state of the install folder dir; a folder with none
// yet gets a fresh state with a new client id.
func loadState(dir string) (*State, error) {
	path := filepath.Join(dir, filepath.FromSlash(stateFile))
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		id := make([]byte, 16)
		rand.Read(id)
		return &State{Version: stateVersion, ClientID: hex.EncodeToString(id), Files: map[string]FileState{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading client state: %w", err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("reading client state %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("reading client state %s: version %d, this smartclient knows %d", path, st.Version, stateVersion)
	}
	if st.Files == nil {
		st.Files = map[string]FileState{}
	}
	st.exists = true
	return &st, nil
}

func (st *State) save(d disk) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding client state: %w", err)
	}
	if err := d.writeFile(stateFile, data); err != nil {
		return fmt.Errorf("saving client state: %w", err)
	}
	st.exists = true
	return nil
}
