package smartclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/erpupdate/smartsync/internal/atomicfile"
)

// journal is the intent of one switch from staged files to the install.
// It is written, durably, before the first rename; every step it lists is
// idempotent, so recovery can replay it from the start after a crash.
type journal struct {
	Version int         `json:"version"`
	Remove  []string    `json:"remove"`  // installed files to delete
	Install []string    `json:"install"` // staged paths to rename into place
	Touch   []touchStep `json:"touch"`   // mtime-only fixes
	State   *State      `json:"state"`   // the state to record once done
}

type touchStep struct {
	Path    string `json:"path"`
	MtimeNs int64  `json:"mtime"`
}

const journalVersion = 1

// commit makes the staged files durable, writes the journal and plays it.
func commit(root *os.Root, dir string, j *journal, log *slog.Logger) error {
	// One sync of the file system makes every staged file durable before
	// the journal commits to using them; no fsync per file.
	if len(j.Install) > 0 {
		if err := syncFS(root, stagingDir, j.Install); err != nil {
			return fmt.Errorf("syncing staged files: %w", err)
		}
	}
	j.Version = journalVersion
	data, err := json.Marshal(j)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, filepath.FromSlash(journalFile)), data, 0o644); err != nil {
		return fmt.Errorf("writing journal: %w", err)
	}
	return play(root, dir, j, log)
}

// play carries out a journal: removals, renames, mtime fixes, then the
// new state; and removes the journal and staging folder.
func play(root *os.Root, dir string, j *journal, log *slog.Logger) error {
	for _, p := range j.Remove {
		if err := root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", p, err)
		}
		pruneEmpty(root, path.Dir(p))
	}
	made := map[string]bool{}
	for _, p := range j.Install {
		if d := path.Dir(p); d != "." && !made[d] {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("installing %s: %w", p, err)
			}
			made[d] = true
		}
		err := root.Rename(stagingDir+"/"+p, p)
		if errors.Is(err, fs.ErrNotExist) {
			// Renamed before a crash: the journal was written only
			// once every file was staged.
			if _, serr := root.Lstat(p); serr == nil {
				continue
			}
		}
		if err != nil {
			return fmt.Errorf("installing %s: %w", p, err)
		}
	}
	for _, t := range j.Touch {
		mt := time.Unix(0, t.MtimeNs)
		if err := root.Chtimes(t.Path, mt, mt); err != nil {
			return fmt.Errorf("setting the time of %s: %w", t.Path, err)
		}
	}
	if err := j.State.save(dir); err != nil {
		return err
	}
	if err := root.Remove(journalFile); err != nil {
		return fmt.Errorf("removing journal: %w", err)
	}
	if err := root.RemoveAll(stagingDir); err != nil {
		log.Warn("removing staging folder", "err", err)
	}
	return nil
}

// pruneEmpty removes dir and its parents while they are empty, so that
// removing the last file a sync installed in a folder removes the folder.
func pruneEmpty(root *os.Root, dir string) {
	for ; dir != "." && dir != "/"; dir = path.Dir(dir) {
		if root.Remove(dir) != nil {
			return
		}
	}
}

// recoverJournal finishes a switch that a crash interrupted. Every command
// calls it before it looks at the install folder.
func recoverJournal(root *os.Root, dir string, log *slog.Logger) error {
	data, err := root.ReadFile(journalFile)
	if errors.Is(err, fs.ErrNotExist) {
		// No switch was under way: whatever staging holds is from a
		// sync that failed or was killed before committing.
		if err := root.RemoveAll(stagingDir); err != nil {
			return fmt.Errorf("clearing staging folder: %w", err)
		}
		return root.RemoveAll(newBackupDir)
	}
	if err != nil {
		return fmt.Errorf("reading journal: %w", err)
	}
	var j journal
	if err := json.Unmarshal(data, &j); err != nil || j.Version != journalVersion || j.State == nil {
		return fmt.Errorf("journal %s is damaged (%v); the install may be incomplete: restore a backup with 'smartclient restore'",
			filepath.Join(dir, journalFile), err)
	}
	log.Warn("finishing an update that was interrupted", "files", len(j.Install), "removals", len(j.Remove))
	return play(root, dir, &j, log)
}
