package smartclient

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/backup"
	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/journal"
	"github.com/erpupdate/smartsync/smartclient/internal/servertrust"
	"github.com/erpupdate/smartsync/smartclient/internal/state"
)

// BackupInfo describes one kept backup.
type BackupInfo struct {
	Name  string    // bkp_remote.00N
	Build string    // build it holds, "" when unknown
	When  time.Time // when that build was installed, or the folder's time
	Files int
	Bytes int64
}

// StatusReport is what 'smartclient status' shows.
type StatusReport struct {
	Dir         string
	Build       string
	OS          string
	Server      string
	LastSync    time.Time
	LastOutcome string
	LastMessage string
	Files       int // files the client installed and tracks
	Backups     []BackupInfo
	// Publisher is what the client trusts of the publisher and the
	// signed release installed; nil when it never verified one.
	Publisher *PublisherStatus
	// Running is set while another smartclient holds the folder (a sync
	// or a restore): what the report shows is then the last known state.
	Running *Running
	// ClientID is the id the server knows this install by (see
	// ClientIDFile), "" before its first sync.
	ClientID string
	// ServerKeys are the server keys this install trusts on first use,
	// by address (see servertrust), with when each was first seen.
	ServerKeys []servertrust.KnownKey
}

// Running says which smartclient is at work on the install folder; PID is
// 0 when it did not say (a first install, or an older smartclient).
type Running struct {
	PID   int
	Since time.Time
}

// openInstall opens an existing install folder for a command that may
// change it: it takes the lock and finishes or undoes an interrupted
// switch first, as every command does.
func openInstall(dir string, log *slog.Logger) (*install.Disk, func(), error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("opening install folder: %w", err)
	}
	if err := install.ReclaimMeta(r); err != nil {
		r.Close()
		return nil, nil, err
	}
	unlock, err := install.Lock(r)
	if err != nil {
		r.Close()
		return nil, nil, err
	}
	d := newDisk(r)
	if err := journal.Recover(d, log); err != nil {
		d.CloseCache()
		unlock()
		r.Close()
		return nil, nil, err
	}
	return d, func() { d.CloseCache(); unlock(); r.Close() }, nil
}

// openReadOnly opens an install folder to read it while another
// smartclient holds it.
func openReadOnly(dir string) (*install.Disk, func(), error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("opening install folder: %w", err)
	}
	d := newDisk(r)
	return d, func() { d.CloseCache(); r.Close() }, nil
}

// testFaults, when a test of this package sets them (see export_test.go),
// are the faults of every install.Disk the package opens: the black-box
// tests drive the client through Run, Sync, Status and Restore, which
// open their own.
var testFaults install.Faults

// newDisk returns the seam over the install folder r.
func newDisk(r *os.Root) *install.Disk {
	d := install.New(r)
	d.Faults = testFaults
	return d
}

// Status reports the installed build, the last sync and the backups kept.
func Status(ctx context.Context, dir string, log *slog.Logger) (*StatusReport, error) {
	d, done, err := openInstall(dir, log)
	var running *Running
	if errors.Is(err, install.ErrBusy) {
		// Another smartclient is at work: show the last known state
		// without the lock, and without finishing any switch (the
		// holder of the lock does that). The state file is replaced by
		// a rename, so it reads as the old or the new one.
		d, done, err = openReadOnly(dir)
		running = &Running{}
		if err == nil {
			if h, ok := install.ReadHolder(d.Root); ok {
				running.PID, running.Since = h.PID, h.Since
			}
		}
	}
	if err != nil {
		return nil, err
	}
	defer done()
	st, err := state.Load(dir)
	if err != nil {
		return nil, err
	}
	files := 0
	for _, k := range st.Files {
		if !k.IsDir() { // the release's empty folders are no files
			files++
		}
	}
	r := &StatusReport{Dir: dir, Build: st.Build, OS: st.OS, Server: st.Server, LastSync: st.LastSync,
		LastOutcome: st.LastOutcome, LastMessage: st.LastMessage, Files: files, Running: running,
		Publisher: readPublisherStatus(dir)}
	r.ServerKeys, _ = servertrust.KnownKeys(filepath.Join(dir, install.MetaDir, servertrust.KnownName))
	r.ClientID = readClientID(d.Root)
	if c, ok := readCheck(d.Root); ok && c.When.After(st.LastSync) && c.Build == st.Build {
		// A later check found the install up to date.
		r.LastSync, r.LastOutcome, r.LastMessage, r.Server = c.When, "up-to-date", "", c.Server
	}
	for i := 1; i <= backup.Max; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		info, err := describeBackup(d, backup.Name(i))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		r.Backups = append(r.Backups, info)
	}
	return r, nil
}

func describeBackup(d *install.Disk, name string) (BackupInfo, error) {
	info := BackupInfo{Name: name}
	fi, err := d.Lstat(name)
	if err != nil {
		return info, err
	}
	if !fi.IsDir() {
		return info, fmt.Errorf("%s is not a folder", name)
	}
	info.When = fi.ModTime()
	if st := state.InBackup(d, name); st != nil {
		info.Build = st.Build
		if !st.LastSync.IsZero() {
			info.When = st.LastSync
		}
	}
	err = fs.WalkDir(d.FS(), name, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && path.Base(p) == install.MetaDir {
			return fs.SkipDir
		}
		if e.Type().IsRegular() {
			fi, err := e.Info()
			if err != nil {
				return err
			}
			info.Files++
			info.Bytes += fi.Size()
		}
		return nil
	})
	return info, err
}

// RestoreResult says what a restore did.
type RestoreResult struct {
	From     string // the backup put back
	Build    string // its build, "" when unknown
	Restored int    // files put back
	Removed  int    // files the replaced install had and the backup does not
	Backup   string // where the replaced install was kept
}

// Restore puts backup n (1, 2 or 3; 0 for the newest) back in place
// through the same journaled switch as a sync, so a crash leaves the
// install as it was or as the backup; the install it replaces becomes the
// newest backup. Files the client did not install, and files the backup
// already shares with the install, are left alone.
func Restore(ctx context.Context, dir string, n int, log *slog.Logger) (*RestoreResult, error) {
	if n < 0 || n > backup.Max {
		return nil, fmt.Errorf("%w: --backup %d: must be 1, 2 or 3", ErrUsage, n)
	}
	d, done, err := openInstall(dir, log)
	if err != nil {
		return nil, err
	}
	defer done()
	if n == 0 {
		for i := backup.Max; i >= 1 && n == 0; i-- {
			if fi, err := d.Lstat(backup.Name(i)); err == nil && fi.IsDir() {
				n = i
			}
		}
		if n == 0 {
			return nil, errors.New("there is no backup to restore (no bkp_remote.00N folder)")
		}
	}
	from := backup.Name(n)
	if fi, err := d.Lstat(from); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("there is no backup %s to restore", from)
	}
	st, err := state.Load(dir)
	if err != nil {
		return nil, err
	}
	next := state.InBackup(d, from)
	if next == nil {
		next = &state.State{Files: map[string]state.FileState{}}
	}
	next.Version, next.ClientID = state.Version, st.ClientID
	next.LastSync, next.LastOutcome, next.LastMessage = time.Now().UTC(), "restored", "restored from "+from
	res := &RestoreResult{From: from, Build: next.Build}

	j := &journal.Journal{State: next, Hashes: map[string]string{}}
	inBackup := map[string]bool{}
	links := &linkFinder{root: d.Root}
	// What the backup's state lists is what the client had installed; a
	// backup without a state (made by hand) is put back whole.
	tracked := func(rel string) bool {
		if len(next.Files) == 0 {
			return true
		}
		k, ok := next.Files[rel]
		return ok && !k.Preserve
	}
	// An empty folder of the backup's release (its state records it)
	// that the install lacks is made again, through staging as a sync
	// makes one.
	stageFolder := func(rel string) error {
		if k, ok := next.Files[rel]; !ok || !k.IsDir() {
			return nil
		}
		inBackup[rel] = true
		if _, err := d.Lstat(rel); !errors.Is(err, fs.ErrNotExist) {
			return nil // there already, or something of the user's
		}
		if links.via(path.Dir(rel)) {
			return fmt.Errorf("will not restore %s: a folder on its path in the install is a symbolic link", rel)
		}
		if err := d.MkdirAll(install.StagingDir+"/"+rel, 0o755); err != nil {
			return fmt.Errorf("staging the folder %s: %w", rel, err)
		}
		j.Install = append(j.Install, rel)
		j.Hashes[rel] = state.DirHash
		return nil
	}
	err = fs.WalkDir(d.FS(), from, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel := p[len(from):]
		if rel == "" {
			return nil
		}
		rel = rel[1:]
		if install.Reserved(rel) {
			if e.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if e.IsDir() {
			return stageFolder(rel)
		}
		if !tracked(rel) {
			// A file the client did not install, or a preserved one,
			// is the user's: the install keeps its own copy.
			inBackup[rel] = true
			return nil
		}
		if links.via(path.Dir(rel)) {
			return fmt.Errorf("will not restore %s: a folder on its path in the install is a symbolic link", rel)
		}
		staged := install.StagingDir + "/" + rel
		if e.Type()&fs.ModeSymlink != 0 {
			inBackup[rel] = true
			target, err := d.Readlink(p)
			if err != nil {
				return err
			}
			if cur, err := d.Readlink(rel); err == nil && cur == target {
				return nil
			}
			if err := d.MkdirAll(path.Dir(staged), 0o755); err != nil {
				return err
			}
			if err := d.Symlink(target, staged); err != nil {
				return fmt.Errorf("staging the link %s: %w", rel, err)
			}
			j.Install = append(j.Install, rel)
			j.Hashes[rel] = journal.LinkPrefix + target
			return nil
		}
		if !e.Type().IsRegular() {
			return nil
		}
		inBackup[rel] = true
		bi, err := e.Info()
		if err != nil {
			return err
		}
		// The state records the mtime the file has, which a time fix of
		// a later release may have changed on the inode the backup
		// shares with the install since the backup's state was written.
		if k, ok := next.Files[rel]; ok {
			k.MtimeNs = bi.ModTime().UnixNano()
			next.Files[rel] = k
		}
		if li, err := d.Lstat(rel); err == nil && os.SameFile(li, bi) {
			return nil // the install still has this very file
		}
		if err := d.MkdirAll(path.Dir(staged), 0o755); err != nil {
			return err
		}
		// As the backup holds it: an INI file is copied (a link would
		// let an edit of the restored file in place change the backup),
		// and so is every file where the file system cannot link.
		if err := backup.LinkOrCopy(d, p, staged); err != nil {
			return fmt.Errorf("staging %s: %w", rel, err)
		}
		h, err := d.HashFile(staged)
		if err != nil {
			return err
		}
		j.Install = append(j.Install, rel)
		j.Hashes[rel] = h
		return nil
	})
	if err != nil {
		journal.Tidy(d, log)
		return nil, fmt.Errorf("restoring %s: %w", from, err)
	}
	for name, k := range st.Files {
		if inBackup[name] || k.Preserve || k.IsDir() {
			continue // an empty folder a release made is left alone
		}
		if fi, err := d.Lstat(name); err == nil && fi.Size() == k.Size && fi.ModTime().UnixNano() == k.MtimeNs {
			j.Remove = append(j.Remove, name)
		}
	}
	sort.Strings(j.Install)
	sort.Strings(j.Remove)
	res.Restored, res.Removed = len(j.Install), len(j.Remove)
	if j.Backup, err = backup.Prepare(ctx, d); err != nil {
		journal.Tidy(d, log)
		return nil, err
	}
	if err := journal.Commit(ctx, d, j, log); err != nil {
		if !d.Exists(journal.File) {
			journal.Tidy(d, log)
		}
		return nil, fmt.Errorf("restoring %s: %w", from, err)
	}
	if j.Backup {
		res.Backup = backup.Newest(d)
	}
	return res, nil
}
