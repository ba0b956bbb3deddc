package smartclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"time"

	"github.com/erpupdate/smartsync/internal/atomicfile"
)

// journal is the intent of one switch from staged files to the install.
// It is written, durably, before the first rename. Every step can tell
// from the files alone whether it was done (a staged file that is gone was
// renamed into place; an old file under .smartclient/old was moved aside),
// so a switch can be replayed after a crash, or undone after a failure.
type journal struct {
	Version int         `json:"version"`
	Remove  []string    `json:"remove"`  // installed files to take out
	Install []string    `json:"install"` // staged paths to rename into place
	Touch   []touchStep `json:"touch"`   // mtime-only fixes
	Backup  bool        `json:"backup"`  // a new backup waits in .smartclient/bkp_new
	State   *State      `json:"state"`   // the state to record once done
}

type touchStep struct {
	Path    string `json:"path"`
	MtimeNs int64  `json:"mtime"`
}

const journalVersion = 1

// ErrRolledBack marks a switch that failed and was undone: the install is
// the old release again.
var ErrRolledBack = errors.New("smartclient: the update was rolled back")

// commit makes the staged files durable, writes the journal and plays it;
// if a step fails, it undoes what was done.
func commit(ctx context.Context, root *os.Root, dir string, j *journal, log *slog.Logger) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := writeJournal(root, dir, j); err != nil {
		return err
	}
	return playOrUndo(root, dir, j, log)
}

// writeJournal makes the staged files durable, then the journal.
func writeJournal(root *os.Root, dir string, j *journal) error {
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
		return fmt.Errorf("encoding journal: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, filepath.FromSlash(journalFile)), data, 0o644); err != nil {
		return fmt.Errorf("writing journal: %w", err)
	}
	return nil
}

func playOrUndo(root *os.Root, dir string, j *journal, log *slog.Logger) error {
	err := play(root, dir, j, log)
	if err == nil {
		return nil
	}
	if uerr := undo(root, j); uerr != nil {
		return fmt.Errorf("%w; undoing it failed too: %w (the journal %s is kept for the next start)",
			err, uerr, filepath.Join(dir, filepath.FromSlash(journalFile)))
	}
	return fmt.Errorf("%w: %w", ErrRolledBack, err)
}

// testHookStep, when set by a test, runs before every rename of a switch;
// an error from it stands for a crash or a failure at that point.
var testHookStep func(op, path string) error

func step(op, p string) error {
	if testHookStep != nil {
		return testHookStep(op, p)
	}
	return nil
}

func exists(root *os.Root, name string) bool {
	_, err := root.Lstat(name)
	return err == nil
}

// moveAside moves an install file under .smartclient/old, from where undo
// can put it back.
func moveAside(root *os.Root, p string) error {
	if err := root.MkdirAll(path.Dir(oldDir+"/"+p), 0o755); err != nil {
		return err
	}
	return root.Rename(p, oldDir+"/"+p)
}

// play carries out a journal, from the start or from wherever a crash
// stopped it.
func play(root *os.Root, dir string, j *journal, log *slog.Logger) error {
	for _, p := range j.Remove {
		if exists(root, p) {
			if err := step("remove", p); err != nil {
				return err
			}
			if err := moveAside(root, p); err != nil {
				return fmt.Errorf("removing %s: %w", p, err)
			}
		}
	}
	made := map[string]bool{}
	for _, p := range j.Install {
		staged := stagingDir + "/" + p
		if !exists(root, staged) {
			continue // renamed into place before a crash
		}
		if exists(root, p) {
			if err := step("aside", p); err != nil {
				return err
			}
			if err := moveAside(root, p); err != nil {
				return fmt.Errorf("replacing %s: %w", p, err)
			}
		}
		if d := path.Dir(p); d != "." && !made[d] {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("installing %s: %w", p, err)
			}
			made[d] = true
		}
		if err := step("install", p); err != nil {
			return err
		}
		if err := root.Rename(staged, p); err != nil {
			return fmt.Errorf("installing %s: %w", p, err)
		}
	}
	for _, t := range j.Touch {
		if err := step("touch", t.Path); err != nil {
			return err
		}
		mt := time.Unix(0, t.MtimeNs)
		if err := root.Chtimes(t.Path, mt, mt); err != nil {
			return fmt.Errorf("setting the time of %s: %w", t.Path, err)
		}
	}
	// Record the mtimes as the file system keeps them: NTFS, HFS+ and FAT
	// round the server's nanoseconds, and the next plan compares with
	// what is on disk.
	for _, p := range slices.Concat(j.Install, touchPaths(j.Touch)) {
		fi, err := root.Lstat(p)
		if err != nil {
			return fmt.Errorf("checking %s: %w", p, err)
		}
		k := j.State.Files[p]
		k.MtimeNs = fi.ModTime().UnixNano()
		j.State.Files[p] = k
	}
	if err := step("state", stateFile); err != nil {
		return err
	}
	if err := j.State.save(dir); err != nil {
		return err
	}
	// From here on the new release is installed and recorded; what
	// remains is tidying, and a failure no longer undoes the switch.
	if j.Backup && exists(root, newBackupDir) {
		if _, err := rotate(root); err != nil {
			log.Warn("the update is installed but its backup could not be put in place", "err", err)
		}
	}
	if err := root.Remove(journalFile); err != nil {
		log.Warn("removing journal", "err", err)
	}
	for _, p := range j.Remove {
		pruneEmpty(root, path.Dir(p))
	}
	tidy(root, log)
	return nil
}

func touchPaths(t []touchStep) []string {
	out := make([]string, len(t))
	for i := range t {
		out[i] = t[i].Path
	}
	return out
}

// undo puts back what play did: new files go back to staging, old ones
// come back from .smartclient/old, and the journal is removed.
func undo(root *os.Root, j *journal) error {
	var errs []error
	for _, p := range slices.Backward(j.Install) {
		staged := stagingDir + "/" + p
		if !exists(root, staged) && exists(root, p) {
			if err := root.Rename(p, staged); err != nil {
				errs = append(errs, fmt.Errorf("taking back %s: %w", p, err))
				continue
			}
		}
		if exists(root, oldDir+"/"+p) {
			if err := root.Rename(oldDir+"/"+p, p); err != nil {
				errs = append(errs, fmt.Errorf("restoring %s: %w", p, err))
			}
		} else {
			pruneEmpty(root, path.Dir(p))
		}
	}
	for _, p := range j.Remove {
		if exists(root, oldDir+"/"+p) {
			if err := root.Rename(oldDir+"/"+p, p); err != nil {
				errs = append(errs, fmt.Errorf("restoring %s: %w", p, err))
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := root.Remove(journalFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing journal: %w", err)
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

// tidy removes what a finished or abandoned sync leaves in .smartclient.
func tidy(root *os.Root, log *slog.Logger) {
	for _, d := range []string{stagingDir, oldDir, newBackupDir, dropBackup} {
		if err := root.RemoveAll(d); err != nil {
			log.Warn("removing leftover folder", "folder", d, "err", err)
		}
	}
}

// recoverJournal finishes a switch that a crash interrupted, or undoes it
// if it cannot be finished. Every command calls it before it looks at the
// install folder.
func recoverJournal(root *os.Root, dir string, log *slog.Logger) error {
	data, err := root.ReadFile(journalFile)
	if errors.Is(err, fs.ErrNotExist) {
		// No switch was under way: whatever is left is from a sync that
		// failed or was killed before committing.
		tidy(root, log)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading journal: %w", err)
	}
	var j journal
	if err := json.Unmarshal(data, &j); err != nil || j.Version != journalVersion || j.State == nil || j.State.Files == nil {
		return fmt.Errorf("the journal %s of an interrupted update is damaged: the installation may be incomplete; the previous one is in the newest bkp_remote folder",
			filepath.Join(dir, filepath.FromSlash(journalFile)))
	}
	log.Warn("finishing an update that was interrupted", "files", len(j.Install), "removals", len(j.Remove))
	if err := playOrUndo(root, dir, &j, log); err != nil {
		return fmt.Errorf("finishing an interrupted update: %w", err)
	}
	return nil
}
