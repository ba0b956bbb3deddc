// Package journal is the switch from staged files to the install and its
// recovery: a Journal is the intent of one switch, written durably before
// the first rename, and every step can tell from the files alone whether
// it was done, so that a switch is played to its end, undone after a
// failure, or finished or undone after a crash (Recover) as the files
// say. The post-install program of a release runs inside the switch.
//
// It imports the install, state and backup packages and nothing else of
// the client.
package journal

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/backup"
	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/state"
	"github.com/otiai10/copy"
	"github.com/zeebo/blake3"
)

// Journal is the intent of one switch from staged files to the install.
// It is written, durably, before the first rename. Every step can tell
// from the files alone whether it was done (a staged file that is gone was
// renamed into place; an old file under .smartclient/old was moved aside),
// so a switch can be replayed after a crash, or undone after a failure.
// The files of Outright are not moved aside: the snapshot holds them, and
// one gone from the install, or another in its place, was replaced or
// removed (see putBack and replacedSince).
type Journal struct {
	Version int               `json:"version"`
	Remove  []string          `json:"remove"`  // installed files to take out
	Install []string          `json:"install"` // staged paths to rename into place
	Hashes  map[string]string `json:"hashes"`  // BLAKE3 of each file to install (LinkPrefix, state.DirHash), for recovery
	Touch   []TouchStep       `json:"touch"`   // mtime-only fixes
	Backup  bool              `json:"backup"`  // .smartclient/bkp_new becomes the newest backup
	// Outright names the files (to install over, or to remove) that are
	// the very files the snapshot bkp_new holds by hard link when the
	// journal is written: the switch replaces or removes them without
	// moving them aside, and undo takes them back from the snapshot.
	// (Version 4; a journal of version 3 moved every file aside.)
	Outright []string `json:"outright,omitempty"`
	// PostInstall runs once the files are in place; if it fails, the
	// switch is undone.
	PostInstall *PostInstallStep `json:"post_install,omitempty"`
	// State is the state to record once done. A journal of version 3
	// keeps it in state.File's binary format after its JSON (see
	// journalHeader); one of version 2 held its JSON form.
	State *state.State `json:"state,omitempty"`
	// PrevState is the state file as it was (nil when there was none),
	// in state.File's format even when it was a state.LegacyFile, which undo
	// puts back if the new state was already written. Version 3 keeps it
	// after the new state.
	PrevState []byte `json:"prev_state,omitempty"`

	sum      string          // the journal's checksum, which the saved state records
	outright map[string]bool // Outright as a set
	// stateFiles is state.EncodeFiles(State.Files) once saveJournal has
	// made it, so that play's save of the same state does not encode
	// 20,000 files again; play drops it when it changes a file's state.
	stateFiles []byte
}

// TouchStep is an mtime-only fix: the file at Path gets the mtime MtimeNs.
type TouchStep struct {
	Path    string `json:"path"`
	MtimeNs int64  `json:"mtime"`
}

// File holds the journal of a switch under way.
const File = install.MetaDir + "/journal.json"

// LinkPrefix starts the hash a journal records for a symbolic link to
// install: its target follows.
const LinkPrefix = "link:"

// An empty folder of a release is installed as a file is: made empty in
// staging, renamed into place, and taken back to staging by undo. Its
// hash in a journal is state.DirHash, as its state records it, so that
// recovery knows it for a folder. A rename of an empty folder is as
// atomic as a file's, so every step can still tell from the files
// whether it was done; a folder created in place would have nothing to
// tell undo that the switch made it.

// The journal file of version 4 is one header line,
//
//	smartclient-journal 4 SUM JSON STATE PREV
//
// SUM the BLAKE3 in hex of every byte after the line, and JSON, STATE and
// PREV the lengths in decimal of what follows it: the journal in JSON
// (without State and PrevState), the new state in state.File's binary
// format and the previous state file (PrevState). The checksum makes a
// torn or corrupted journal recognized rather than obeyed. The states
// stay out of the JSON: the JSON form of 20,000 files took a quarter of a
// second to write. The JSON's hashes leave out those the new state records
// (see hashesBeyondState); a client built before that finds them missing,
// and undoes the switch rather than finish it.
const (
	journalHeader  = "smartclient-journal 4 "
	journalVersion = 4
	// A journal of version 3 is the same but for Outright: the client
	// that wrote it moved every old file aside. An older client finds a
	// journal of version 4 damaged, and rolls back from the snapshot.
	journalHeader3  = "smartclient-journal 3 "
	journalVersion3 = 3
)

// envelope is how journals of version 2 were stored: their BLAKE3
// checksum beside them. Recovery still reads one that an older
// smartclient left behind.
type envelope struct {
	Sum     string          `json:"blake3"`
	Journal json.RawMessage `json:"journal"`
}

const journalVersion2 = 2

// ErrRolledBack marks a switch that failed and was undone: the install is
// the old release again.
var ErrRolledBack = errors.New("smartclient: the update was rolled back")

// Commit makes the staged files durable, writes the journal and plays it;
// if a step fails, it undoes what was done, and the error wraps
// ErrRolledBack.
func Commit(ctx context.Context, d *install.Disk, j *Journal, log *slog.Logger) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := writeJournal(d, j); err != nil {
		return err
	}
	return playOrUndo(d, j, log)
}

// writeJournal makes the staged files durable, then the journal. A
// failed sync of the file system is final: the data may not be on disk,
// so the switch does not start (and is not retried).
func writeJournal(d *install.Disk, j *Journal) error {
	// One sync of the file system makes every staged file durable before
	// the journal commits to using them; no fsync per file.
	if err := d.SyncStaged(); err != nil {
		return fmt.Errorf("syncing staged files: %w", err)
	}
	j.setOutright(d)
	return saveJournal(d, j)
}

// setOutright records which of the files the switch replaces or removes
// the snapshot holds by hard link (see keptInSnapshot).
func (j *Journal) setOutright(d *install.Disk) {
	j.Outright, j.outright = nil, map[string]bool{}
	for _, p := range slices.Concat(j.Remove, j.Install) {
		if !j.outright[p] && keptInSnapshot(d, j, p) {
			j.Outright = append(j.Outright, p)
			j.outright[p] = true
		}
	}
}

// saveJournal writes the journal durably (see journalHeader).
func saveJournal(d *install.Disk, j *Journal) error {
	return saveJournalAs(d, j, journalVersion)
}

// saveJournalAs is saveJournal in the format of version (journalVersion,
// or journalVersion3 for tests of a journal an earlier client left).
func saveJournalAs(d *install.Disk, j *Journal, version int) error {
	header := journalHeader
	if version == journalVersion3 {
		header = journalHeader3
	}
	j.Version = version
	prev, err := state.Current(d)
	if err != nil {
		return fmt.Errorf("reading the client state to keep in the journal: %w", err)
	}
	j.PrevState = prev
	head := *j
	head.State, head.PrevState = nil, nil
	head.Hashes = hashesBeyondState(j)
	js, err := json.Marshal(&head)
	if err != nil {
		return fmt.Errorf("encoding journal: %w", err)
	}
	if j.stateFiles == nil {
		j.stateFiles = state.EncodeFiles(j.State.Files)
	}
	st := state.MarshalWith(j.State, j.stateFiles)
	h := blake3.New()
	h.Write(js)
	h.Write(st)
	h.Write(prev)
	j.sum = hex.EncodeToString(h.Sum(nil))
	line := fmt.Sprintf("%s%s %d %d %d\n", header, j.sum, len(js), len(st), len(prev))
	if err := d.WriteAtomic(File, []byte(line), js, st, prev); err != nil {
		return fmt.Errorf("writing journal: %w", err)
	}
	return nil
}

// readJournal returns the journal, nil when there is none, or an error
// when it is damaged.
func readJournal(d *install.Disk) (*Journal, error) {
	data, err := d.ReadFile(File)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading journal: %w", err)
	}
	if len(data) > 0 && data[0] == '{' {
		return readJournal2(data)
	}
	line, body, ok := bytes.Cut(data, []byte{'\n'})
	version := journalVersion
	fields, found := bytes.CutPrefix(line, []byte(journalHeader))
	if !found {
		version = journalVersion3
		fields, found = bytes.CutPrefix(line, []byte(journalHeader3))
	}
	if !ok || !found {
		return nil, errors.New("journal is torn or corrupt: no header line")
	}
	var (
		sumHex            string
		nJSON, nSt, nPrev int
	)
	if n, err := fmt.Sscanf(string(fields), "%64s %d %d %d", &sumHex, &nJSON, &nSt, &nPrev); err != nil || n != 4 ||
		nJSON < 0 || nSt < 0 || nPrev < 0 || int64(nJSON)+int64(nSt)+int64(nPrev) != int64(len(body)) {
		return nil, errors.New("journal is torn or corrupt: its header line does not match its length")
	}
	sum := blake3.Sum256(body)
	if hex.EncodeToString(sum[:]) != sumHex {
		return nil, errors.New("journal does not match its checksum")
	}
	var j Journal
	if err := json.Unmarshal(body[:nJSON], &j); err != nil {
		return nil, fmt.Errorf("journal is corrupt: %w", err)
	}
	if j.Version != version || j.State != nil || j.PrevState != nil || (version == journalVersion3 && j.Outright != nil) {
		return nil, fmt.Errorf("journal of version %d is not one this smartclient knows", j.Version)
	}
	j.Version = journalVersion
	j.outright = make(map[string]bool, len(j.Outright))
	for _, p := range j.Outright {
		j.outright[p] = true
	}
	if version == journalVersion3 && j.Backup {
		// Builds from 1852cf4 to 7be0993 wrote version 3 but replaced
		// outright what the snapshot held by hard link: any file but
		// an INI one may have been. Undo looks in .smartclient/old
		// first, and play replaces outright only what is still the
		// snapshot's, so this is right for both kinds of version 3.
		for _, p := range slices.Concat(j.Remove, j.Install) {
			if !backup.Copied(p) {
				j.outright[p] = true
			}
		}
	}
	st, err := state.Unmarshal(body[nJSON : nJSON+nSt])
	if err != nil {
		return nil, fmt.Errorf("journal is corrupt: its new state: %w", err)
	}
	j.State = st
	if nPrev > 0 {
		j.PrevState = body[nJSON+nSt:]
	}
	j.sum = sumHex
	// The hashes saveJournal left out are those the new state records.
	if j.Hashes == nil {
		j.Hashes = map[string]string{}
	}
	for _, p := range j.Install {
		if _, ok := j.Hashes[p]; !ok {
			if f, ok := st.Files[p]; ok {
				j.Hashes[p] = f.Hash
			}
		}
	}
	return &j, nil
}

// hashesBeyondState returns the hashes of j that its new state does not
// record as they are: a link's, or a file's that the state holds under
// another hash. A journal keeps only those in its JSON, and readJournal
// takes the others from the state, which the same checksum covers: the
// hashes of a cold sync of 20,000 files made the JSON 2 MB larger, as the
// client's memory peaks.
func hashesBeyondState(j *Journal) map[string]string {
	beyond := map[string]string{}
	for p, h := range j.Hashes {
		if f, ok := j.State.Files[p]; !ok || f.Hash != h {
			beyond[p] = h
		}
	}
	return beyond
}

// readJournal2 reads a journal of version 2 (see envelope).
func readJournal2(data []byte) (*Journal, error) {
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("journal is torn or corrupt: %w", err)
	}
	sum := blake3.Sum256(env.Journal)
	if hex.EncodeToString(sum[:]) != env.Sum {
		return nil, errors.New("journal does not match its checksum")
	}
	var j Journal
	if err := json.Unmarshal(env.Journal, &j); err != nil {
		return nil, fmt.Errorf("journal is corrupt: %w", err)
	}
	if j.Version != journalVersion2 || j.State == nil || j.State.Files == nil {
		return nil, fmt.Errorf("journal of version %d is not one this smartclient knows", j.Version)
	}
	j.Version = journalVersion
	j.sum = env.Sum
	return &j, nil
}

func playOrUndo(d *install.Disk, j *Journal, log *slog.Logger) error {
	err := play(d, j, log)
	if err == nil {
		return nil
	}
	if uerr := undo(d, j); uerr != nil {
		return fmt.Errorf("%w; undoing it failed too: %w (the journal %s is kept for the next start)",
			err, uerr, filepath.Join(d.Name(), filepath.FromSlash(File)))
	}
	return fmt.Errorf("%w: %w", ErrRolledBack, err)
}

// moveAside moves an install file under .smartclient/old, from where undo
// can put it back.
func moveAside(d *install.Disk, p string) error {
	if err := d.MkdirAll(path.Dir(install.OldDir+"/"+p), 0o755); err != nil {
		return err
	}
	return d.Rename(p, install.OldDir+"/"+p)
}

// keptInSnapshot reports whether the install's file p is the very file
// (the same inode) that the switch's snapshot, .smartclient/bkp_new,
// holds by hard link: then the switch may replace or remove p outright,
// and undo takes it back from the snapshot. INI files, links, files the
// snapshot copied and files it does not have are moved aside instead.
func keptInSnapshot(d *install.Disk, j *Journal, p string) bool {
	if !j.Backup || runtime.GOOS == "windows" {
		// Windows does not replace a file in use (a running program),
		// but does let it be renamed: there the old file is always
		// moved aside first.
		return false
	}
	fi, err := d.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	si, err := d.Lstat(install.NewBackupDir + "/" + p)
	return err == nil && os.SameFile(fi, si)
}

// putBack undoes the replacement or removal of p: it comes back from
// .smartclient/old where it was moved aside, or else, if the switch
// replaced or removed it outright, from the snapshot. A p in place was
// never replaced (or is back already); without either, p was new.
func putBack(d *install.Disk, j *Journal, p string) (restored bool, err error) {
	if d.Exists(install.OldDir + "/" + p) {
		return true, d.Rename(install.OldDir+"/"+p, p)
	}
	if !j.outright[p] || d.Exists(p) {
		return d.Exists(p), nil
	}
	fi, err := d.Lstat(install.NewBackupDir + "/" + p)
	if err != nil || !fi.Mode().IsRegular() {
		return false, nil
	}
	if err := d.MkdirAll(path.Dir(p), 0o755); err != nil {
		return false, err
	}
	return true, d.Link(install.NewBackupDir+"/"+p, p)
}

// replacedSince reports whether p, a file the switch replaced outright,
// is in place but no longer the snapshot's: then it is the file the
// switch put there, whatever it holds now.
func replacedSince(d *install.Disk, j *Journal, p string) bool {
	if !j.outright[p] || backup.Copied(p) || d.Exists(install.OldDir+"/"+p) {
		return false
	}
	fi, err := d.Lstat(p)
	if err != nil {
		return false
	}
	si, err := d.Lstat(install.NewBackupDir + "/" + p)
	return err == nil && si.Mode().IsRegular() && !os.SameFile(fi, si)
}

// keepsNanoseconds reports whether the install's file system keeps a
// modification time to the nanosecond, as a probe file in .smartclient
// shows (NTFS keeps 100 ns, HFS+ and FAT seconds or two).
func keepsNanoseconds(d *install.Disk) bool {
	const probe = install.MetaDir + "/.timeprobe"
	defer d.Root.Remove(probe)
	if d.Root.WriteFile(probe, nil, 0o644) != nil {
		return false
	}
	t := time.Unix(1_700_000_000, 123_456_789)
	if d.Root.Chtimes(probe, t, t) != nil {
		return false
	}
	fi, err := d.Root.Lstat(probe)
	return err == nil && fi.ModTime().Equal(t)
}

// moveNewFolders renames into the install, whole, each folder new to it
// whose files staging holds all and nothing else: one rename for a folder
// of a first install rather than one for each of its files. It returns
// the folders it moved. Every file in them is in place as a rename of
// its own would have put it, so a replay or undo sees nothing else; a
// folder that exists already, or whose staged copy holds more or fewer
// files, is left to the renames of its files.
func moveNewFolders(d *install.Disk, j *Journal) (map[string]bool, error) {
	if !install.RenameFreshWorks() {
		return nil, nil // no walk of staging for nothing
	}
	exist := map[string]bool{} // folders of the install looked up
	counts := map[string]int{} // files to install in each new folder
	var order []string
	for _, p := range j.Install {
		top := ""
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			e, ok := exist[dir]
			if !ok {
				e = d.Exists(dir)
				exist[dir] = e
			}
			if e {
				break
			}
			top = dir // the outermost missing so far
		}
		if top == "" {
			continue
		}
		if counts[top] == 0 {
			order = append(order, top)
		}
		counts[top]++
	}
	moved := map[string]bool{}
	for _, dir := range order {
		if n, err := countStaged(d, install.StagingDir+"/"+dir); err != nil || n != counts[dir] {
			continue
		}
		if parent := path.Dir(dir); parent != "." {
			if err := d.MkdirAll(parent, 0o755); err != nil {
				return nil, fmt.Errorf("installing %s: %w", dir, err)
			}
		}
		done, err := d.RenameFresh(install.StagingDir+"/"+dir, dir)
		if err != nil {
			return nil, fmt.Errorf("installing %s: %w", dir, err)
		}
		if done {
			moved[dir] = true
		}
	}
	return moved, nil
}

// countStaged counts what a staged folder holds but folders that hold
// something: its files, links and empty folders, each of which is an
// entry of the journal's Install.
func countStaged(d *install.Disk, dir string) (int, error) {
	entries, err := d.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() {
			n++
			continue
		}
		k, err := countStaged(d, dir+"/"+e.Name())
		if err != nil {
			return 0, err
		}
		if k == 0 && isEmptyDir(d, dir+"/"+e.Name()) {
			k = 1
		}
		n += k
	}
	return n, nil
}

// isEmptyDir reports whether dir is a folder that holds nothing.
func isEmptyDir(d *install.Disk, dir string) bool {
	entries, err := d.ReadDir(dir)
	return err == nil && len(entries) == 0
}

// inMoved reports whether p is in one of the folders moveNewFolders moved.
func inMoved(moved map[string]bool, p string) bool {
	if len(moved) == 0 {
		return false
	}
	for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
		if moved[dir] {
			return true
		}
	}
	return false
}

// addedSince reports whether p, which the switch installs and whose staged
// file is gone, is a file the install did not have: the snapshot lacks it
// and nothing was moved aside for it, so the switch put it there, whatever
// it holds now. Without a snapshot that cannot be told.
func addedSince(d *install.Disk, j *Journal, p string) bool {
	if !j.Backup || !d.Exists(p) || d.Exists(install.OldDir+"/"+p) {
		return false
	}
	_, err := d.Lstat(install.NewBackupDir + "/" + p)
	return errors.Is(err, fs.ErrNotExist)
}

// play carries out a journal, from the start or from wherever a crash
// stopped it. A file the snapshot holds by hard link is replaced, or
// removed, outright (see keptInSnapshot); others are first moved aside.
func play(d *install.Disk, j *Journal, log *slog.Logger) error {
	for _, p := range j.Remove {
		if !d.Exists(p) {
			continue
		}
		var err error
		if j.outright[p] && keptInSnapshot(d, j, p) {
			err = d.Remove(p)
		} else {
			err = moveAside(d, p)
		}
		if err != nil {
			return fmt.Errorf("removing %s: %w", p, err)
		}
	}
	moved, err := moveNewFolders(d, j)
	if err != nil {
		return err
	}
	made := map[string]bool{}
	for _, p := range j.Install {
		if inMoved(moved, p) {
			continue
		}
		staged := install.StagingDir + "/" + p
		// Most files are new where they go (all of them in a first
		// sync): one rename that replaces nothing does.
		if done, err := d.RenameFresh(staged, p); done {
			if err != nil {
				return fmt.Errorf("installing %s: %w", p, err)
			}
			continue
		}
		if !d.Exists(staged) {
			// Renamed into place before a crash, unless something took
			// the staged file away (an antivirus, a person): then the
			// install still has the old file, and the switch cannot go on.
			if !installed(d, j, p) {
				return fmt.Errorf("installing %s: the staged file is gone: %w", p, fs.ErrNotExist)
			}
			continue
		}
		if d.Exists(p) && !(j.outright[p] && keptInSnapshot(d, j, p)) {
			if err := moveAside(d, p); err != nil {
				return fmt.Errorf("replacing %s: %w", p, err)
			}
		}
		if dir := path.Dir(p); dir != "." && !made[dir] {
			if err := d.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("installing %s: %w", p, err)
			}
			made[dir] = true
		}
		if err := d.Rename(staged, p); err != nil {
			return fmt.Errorf("installing %s: %w", p, err)
		}
	}
	for _, t := range j.Touch {
		mt := time.Unix(0, t.MtimeNs)
		if err := d.Chtimes(t.Path, mt, mt); err != nil {
			return fmt.Errorf("setting the time of %s: %w", t.Path, err)
		}
	}
	if j.PostInstall != nil {
		if err := d.Hook("postinstall", j.PostInstall.Path); err != nil {
			return err
		}
		if err := runPostInstall(d.Name(), j.PostInstall); err != nil {
			return err
		}
	}
	// Record the mtimes as the file system keeps them: NTFS, HFS+ and FAT
	// round the server's nanoseconds, and the next plan compares with
	// what is on disk. Where the file system keeps nanoseconds, a file
	// staged with the server's mtime has it (a rename keeps it, and
	// staging is on the same file system): no lookup of each of a first
	// install's 20,000 files.
	exact := len(j.Install) > 0 && keepsNanoseconds(d)
	for i, p := range slices.Concat(j.Install, touchPaths(j.Touch)) {
		if j.Hashes[p] == state.DirHash {
			continue // a folder's time is not recorded
		}
		if k, ok := j.State.Files[p]; exact && i < len(j.Install) && ok && k.MtimeNs == k.ServerMtimeNs &&
			!strings.HasPrefix(j.Hashes[p], LinkPrefix) {
			continue
		}
		fi, err := d.Lstat(p)
		if err != nil {
			return fmt.Errorf("checking %s: %w", p, err)
		}
		if k, ok := j.State.Files[p]; ok && k.MtimeNs != fi.ModTime().UnixNano() {
			k.MtimeNs = fi.ModTime().UnixNano()
			j.State.Files[p] = k
			j.stateFiles = nil
		}
	}
	// The saved state names this journal: from then on the switch is
	// committed, and recovery only finishes the tidying (see finish).
	j.State.Journal = j.sum
	if err := j.State.SaveWith(d, j.stateFiles); err != nil {
		return err
	}
	finish(d, j, log)
	return nil
}

// finish does what follows the commit: the backup goes in place, the
// journal and the leftovers go. A failure here no longer undoes the
// switch.
func finish(d *install.Disk, j *Journal, log *slog.Logger) {
	if j.Backup && d.Exists(install.NewBackupDir) {
		if _, err := backup.Rotate(d); err != nil {
			log.Warn("the update is installed but its backup could not be put in place", "err", err)
		}
	}
	if err := d.Remove(File); err != nil {
		log.Warn("removing journal", "err", err)
	}
	for _, p := range j.Remove {
		pruneEmpty(d, path.Dir(p), j.releaseFolder)
	}
	Tidy(d, log)
}

func touchPaths(t []TouchStep) []string {
	out := make([]string, len(t))
	for i := range t {
		out[i] = t[i].Path
	}
	return out
}

// undo puts back what play did: new files go back to staging, old ones
// come back from .smartclient/old or the snapshot (see putBack), and the
// journal is removed.
func undo(d *install.Disk, j *Journal) error {
	var errs []error
	// Folders left empty are removed once every old file is back: a
	// folder whose old file is still under .smartclient/old is empty
	// until then, and its file needs it.
	var prune []string
	for _, p := range slices.Backward(j.Install) {
		staged := install.StagingDir + "/" + p
		// Only the new file goes back to staging; a file in place that is
		// not the new one was never replaced and stays.
		if !d.Exists(staged) && installed(d, j, p) {
			if err := d.MkdirAll(path.Dir(staged), 0o755); err != nil {
				errs = append(errs, fmt.Errorf("taking back %s: %w", p, err))
				continue
			}
			if err := d.Rename(p, staged); err != nil {
				errs = append(errs, fmt.Errorf("taking back %s: %w", p, err))
				continue
			}
		} else if !d.Exists(staged) && (replacedSince(d, j, p) || addedSince(d, j, p)) {
			// The switch's file, no longer the one it installed (a
			// post-install step changed it, or it cannot be read): it
			// goes, and the snapshot's, if any, comes back below.
			if err := d.Remove(p); err != nil {
				errs = append(errs, fmt.Errorf("taking back %s: %w", p, err))
				continue
			}
		}
		restored, err := putBack(d, j, p)
		if err != nil {
			errs = append(errs, fmt.Errorf("restoring %s: %w", p, err))
		} else if !restored {
			prune = append(prune, path.Dir(p))
		}
	}
	for _, p := range j.Remove {
		if _, err := putBack(d, j, p); err != nil {
			errs = append(errs, fmt.Errorf("restoring %s: %w", p, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, dir := range prune {
		pruneEmpty(d, dir, func(dir string) bool { return j.hadFolder(d, dir) })
	}
	if committed(d, j) {
		// The new state was written (its save failed after the rename):
		// the old one goes back with the old files.
		var err error
		if len(j.PrevState) == 0 {
			err = d.Remove(state.File)
		} else {
			err = d.WriteAtomic(state.File, j.PrevState)
		}
		if err != nil {
			return fmt.Errorf("restoring the previous state: %w", err)
		}
		state.RemoveLegacy(d)
	}
	if err := d.Remove(File); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing journal: %w", err)
	}
	return nil
}

// releaseFolder reports whether the new state records dir as an empty
// folder of the release: removing the last file of a folder the release
// keeps empty leaves the folder.
func (j *Journal) releaseFolder(dir string) bool {
	k, ok := j.State.Files[dir]
	return ok && k.IsDir()
}

// hadFolder reports whether the install had the folder dir before the
// switch, as its snapshot shows: undo then leaves it, even empty (an
// empty folder of the old release, or the user's).
func (j *Journal) hadFolder(d *install.Disk, dir string) bool {
	if !j.Backup {
		return false
	}
	fi, err := d.Lstat(install.NewBackupDir + "/" + dir)
	return err == nil && fi.IsDir()
}

// committed reports whether the saved state is the one this journal
// records, which makes the switch final.
func committed(d *install.Disk, j *Journal) bool {
	data, err := d.ReadFile(state.File)
	if err != nil || j.sum == "" {
		return false
	}
	st, err := state.Unmarshal(data)
	return err == nil && st.Journal == j.sum
}

// pruneEmpty removes dir and its parents while they are empty, so that
// removing the last file a sync installed in a folder removes the folder;
// it stops at a folder keep names.
func pruneEmpty(d *install.Disk, dir string, keep func(dir string) bool) {
	for ; dir != "." && dir != "/"; dir = path.Dir(dir) {
		if keep(dir) || d.Remove(dir) != nil {
			return
		}
	}
}

// Tidy removes what a finished or abandoned sync leaves in .smartclient.
func Tidy(d *install.Disk, log *slog.Logger) {
	for _, dir := range []string{install.StagingDir, install.OldDir, install.NewBackupDir, install.DropBackup} {
		if err := d.RemoveAll(dir); err != nil {
			log.Warn("removing leftover folder", "folder", dir, "err", err)
		}
	}
}

// Recover finishes a switch that a crash interrupted when every
// file it needs is present and verified, and undoes it otherwise. Every
// command calls it before it looks at the install folder.
func Recover(d *install.Disk, log *slog.Logger) error {
	j, err := readJournal(d)
	if err != nil {
		log.Warn("the journal of an interrupted update is damaged; rolling back from its snapshot", "err", err)
		if rerr := rollbackToSnapshot(d); rerr != nil {
			return fmt.Errorf("the journal %s of an interrupted update is damaged (%w) and rolling back failed: %w; the previous installation is in the newest bkp_remote folder",
				filepath.Join(d.Name(), filepath.FromSlash(File)), err, rerr)
		}
		if err := d.Remove(File); err != nil {
			return fmt.Errorf("removing the damaged journal: %w", err)
		}
		Tidy(d, log)
		return nil
	}
	if j == nil {
		// No switch was under way: whatever is left is from a sync that
		// failed or was killed before committing.
		Tidy(d, log)
		return nil
	}
	if committed(d, j) {
		log.Info("finishing the tidying of an update that was installed")
		finish(d, j, log)
		return nil
	}
	if err := verifyForward(d, j); err != nil {
		log.Warn("rolling back an interrupted update", "reason", err)
		if uerr := undo(d, j); uerr != nil {
			return fmt.Errorf("rolling back an interrupted update: %w", uerr)
		}
		Tidy(d, log)
		return nil
	}
	log.Warn("finishing an update that was interrupted", "files", len(j.Install), "removals", len(j.Remove))
	if err := playOrUndo(d, j, log); err != nil {
		return fmt.Errorf("finishing an interrupted update: %w", err)
	}
	return nil
}

// verifyForward checks that the switch can be finished: every file to
// install is there, staged or already in place, with the content the
// journal's state records.
func verifyForward(d *install.Disk, j *Journal) error {
	for _, p := range j.Install {
		want, ok := j.Hashes[p]
		if !ok {
			return fmt.Errorf("%s has no recorded hash", p)
		}
		name := install.StagingDir + "/" + p
		if !d.Exists(name) {
			name = p
		}
		if target, ok := strings.CutPrefix(want, LinkPrefix); ok {
			if got, err := d.Readlink(name); err != nil || got != target {
				return fmt.Errorf("%s is not the link to %s", name, target)
			}
			continue
		}
		if want == state.DirHash {
			if fi, err := d.Lstat(name); err != nil || !fi.IsDir() {
				return fmt.Errorf("%s is not a folder", name)
			}
			continue
		}
		got, err := d.HashFile(name)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if got != want {
			return fmt.Errorf("%s does not match its hash", name)
		}
	}
	return nil
}

// installed reports whether p in the install is the file (or link) the
// journal installs there.
func installed(d *install.Disk, j *Journal, p string) bool {
	want, ok := j.Hashes[p]
	if !ok {
		return false
	}
	if target, isLink := strings.CutPrefix(want, LinkPrefix); isLink {
		got, err := d.Readlink(p)
		return err == nil && got == target
	}
	if want == state.DirHash {
		fi, err := d.Lstat(p)
		return err == nil && fi.IsDir()
	}
	if fi, err := d.Lstat(p); err != nil || !fi.Mode().IsRegular() {
		return false
	}
	got, err := d.HashFile(p)
	return err == nil && got == want
}

// removeAddedFolders removes the folders of the install that the snapshot
// lacks and that hold nothing now that the files the update added are
// gone: the empty folders of the release and the folders its files came
// in. The deepest go first, so that a folder emptied by its subfolder's
// removal goes too.
func removeAddedFolders(d *install.Disk, snap *os.Root) error {
	var added []string
	err := d.WalkInstall(func(p string, e fs.DirEntry) error {
		if !e.IsDir() {
			return nil
		}
		if _, err := snap.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			added = append(added, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range slices.Backward(added) {
		if isEmptyDir(d, p) {
			if err := d.Remove(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// rollbackToSnapshot makes the install equal to .smartclient/bkp_new, the
// copy of the old install taken before the journal was written, when the
// journal itself cannot be trusted. Files still the snapshot's (the same
// inode) are left alone; the rest are put back from it, and files the
// snapshot does not have were added by the update and go.
func rollbackToSnapshot(d *install.Disk) error {
	if fi, err := d.Lstat(install.NewBackupDir); err != nil || !fi.IsDir() {
		if !d.Exists(install.OldDir) {
			// No snapshot, and nothing was moved aside: the switch
			// changed no file (an mtime-only update), so there is
			// nothing to roll back.
			return nil
		}
		return errors.New("no snapshot of the previous installation to roll back to")
	}
	snap, err := os.OpenRoot(filepath.Join(d.Name(), filepath.FromSlash(install.NewBackupDir)))
	if err != nil {
		return err
	}
	defer snap.Close()
	err = d.WalkInstall(func(p string, e fs.DirEntry) error {
		if e.IsDir() {
			return nil
		}
		if _, err := snap.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			return d.Remove(p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("removing files the update added: %w", err)
	}
	if err := removeAddedFolders(d, snap); err != nil {
		return fmt.Errorf("removing folders the update added: %w", err)
	}
	return fs.WalkDir(snap.FS(), ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == "." {
			return err
		}
		if e.IsDir() {
			return d.MkdirAll(p, 0o755)
		}
		si, err := e.Info()
		if err != nil {
			return err
		}
		if li, err := d.Lstat(p); err == nil {
			if os.SameFile(li, si) || (li.Size() == si.Size() && li.ModTime().Equal(si.ModTime()) && li.Mode() == si.Mode()) {
				return nil
			}
			if err := d.Remove(p); err != nil {
				return err
			}
		}
		if err := d.Link(install.NewBackupDir+"/"+p, p); err == nil || !e.Type().IsRegular() {
			return err
		}
		// Where the file system has no hard links, the snapshot holds
		// copies; copy them back.
		if err := d.Hook("copy", p); err != nil {
			return err
		}
		return copy.Copy(filepath.Join(d.Name(), filepath.FromSlash(install.NewBackupDir+"/"+p)),
			filepath.Join(d.Name(), filepath.FromSlash(p)), copy.Options{PreserveTimes: true, Sync: true})
	})
}
