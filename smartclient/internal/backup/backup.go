// Package backup keeps the bkp_remote.00N backups of an install folder:
// the snapshot of the install that a switch is about to replace
// (Prepare, by hard links where the file system allows and copies where
// not; it is also what a damaged journal rolls back to), and the rotation
// that puts it in place as the newest of three (Rotate).
//
// It imports the install and state packages and nothing else of the
// client.
package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/state"
)

// Max is how many backups are kept.
const Max = 3

// Name returns the folder of backup n (1..Max), as TOTVS names them.
func Name(n int) string { return fmt.Sprintf("%s%03d", install.BackupPrefix, n) }

// Prepare copies the current install into .smartclient/bkp_new, where
// Rotate later puts it in place once the switch has succeeded; until then
// it is also the snapshot that a damaged journal rolls back to. It reports
// false when the install held nothing worth a backup folder.
func Prepare(ctx context.Context, root *install.Disk) (bool, error) {
	// A slot that is not a folder would stop the rotation after the
	// switch; find out now, while nothing is changed.
	for i := 1; i <= Max; i++ {
		if fi, err := root.Lstat(Name(i)); err == nil && !fi.IsDir() {
			return false, fmt.Errorf("backup: %s is not a folder; move it away and retry", Name(i))
		}
	}
	if err := root.RemoveAll(install.NewBackupDir); err != nil {
		return false, fmt.Errorf("backup: clearing %s: %w", install.NewBackupDir, err)
	}
	if err := root.MkdirAll(install.NewBackupDir, 0o755); err != nil {
		return false, fmt.Errorf("backup: %w", err)
	}
	n, err := snapshot(ctx, root, install.NewBackupDir)
	if err == nil {
		// The client's state goes with the files, as it is (a legacy
		// one under its own name), so that status can tell which build
		// a backup holds and restore can put it back.
		if data, name, rerr := state.ReadRaw(root); rerr == nil {
			err = root.WriteAtomic(install.NewBackupDir+"/"+name, data)
		}
	}
	if err != nil {
		root.RemoveAll(install.NewBackupDir)
		return false, fmt.Errorf("backup: %w", err)
	}
	return n > 0, nil
}

// Job is a Prepare running beside the download.
type Job struct {
	done chan struct{}
	made bool
	err  error
}

// Start starts Prepare in its own goroutine.
func Start(ctx context.Context, root *install.Disk) *Job {
	b := &Job{done: make(chan struct{})}
	go func() {
		defer close(b.done)
		b.made, b.err = Prepare(ctx, root)
	}()
	return b
}

// Wait returns Prepare's result once it is done; a nil Job made no
// backup.
func (b *Job) Wait() (bool, error) {
	if b == nil {
		return false, nil
	}
	<-b.done
	return b.made, b.err
}

// Rotate puts .smartclient/bkp_new in place as the newest backup:
// backups fill .001, .002, .003 in turn; once all three exist, .001 is
// dropped, .002 becomes .001, .003 becomes .002 and the new one is .003,
// so the highest number is always the newest. Every step is a rename and
// the gaps a crash may leave are closed first, so running it again after a
// crash finishes the rotation, and a half backup never carries a
// bkp_remote name. It returns the new backup's name.
func Rotate(root *install.Disk) (string, error) {
	var have []int
	for i := 1; i <= Max; i++ {
		fi, err := root.Lstat(Name(i))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return "", fmt.Errorf("backup: %w", err)
		case !fi.IsDir():
			return "", fmt.Errorf("backup: %s is not a folder; move it away and retry", Name(i))
		default:
			have = append(have, i)
		}
	}
	// Close gaps (".001" and ".003" only), oldest first.
	for slot, i := range have {
		if i != slot+1 {
			if err := root.Rename(Name(i), Name(slot+1)); err != nil {
				return "", fmt.Errorf("backup: renumbering: %w", err)
			}
		}
	}
	target := len(have) + 1
	if len(have) == Max {
		// The oldest is moved aside before it is deleted, so a crash
		// mid-delete never leaves a half backup under a kept name.
		if err := root.RemoveAll(install.DropBackup); err != nil {
			return "", fmt.Errorf("backup: %w", err)
		}
		if err := root.Rename(Name(1), install.DropBackup); err != nil {
			return "", fmt.Errorf("backup: dropping the oldest: %w", err)
		}
		for i := 2; i <= Max; i++ {
			if err := root.Rename(Name(i), Name(i-1)); err != nil {
				return "", fmt.Errorf("backup: rotating: %w", err)
			}
		}
		target = Max
	}
	if err := root.Rename(install.NewBackupDir, Name(target)); err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	if err := root.RemoveAll(install.DropBackup); err != nil {
		return "", fmt.Errorf("backup: removing the oldest backup: %w", err)
	}
	return Name(target), nil
}

// snapshot copies every file of the install (but the client's bookkeeping
// and the backups) into dst, by hard link where the file system allows it
// and by copy where it does not. Hard links are safe because a sync never
// writes a file in place: it renames new files over old ones, so the
// backup keeps the old content. INI files are copied all the same, since
// users and programs do edit those in place. It returns the files copied.
func snapshot(ctx context.Context, root *install.Disk, dst string) (int, error) {
	n := 0
	err := root.WalkInstall(func(p string, d fs.DirEntry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		target := dst + "/" + p
		switch {
		case d.IsDir():
			if err := root.MkdirAll(target, 0o755); err != nil {
				return err
			}
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			link, err := root.Readlink(p)
			if err == nil {
				err = root.Symlink(link, target)
			}
			if err != nil {
				return fmt.Errorf("copying link %s: %w", p, err)
			}
		case !d.Type().IsRegular():
			return nil // sockets, pipes and devices are not part of an install
		default:
			if err := LinkOrCopy(root, p, target); err != nil {
				return fmt.Errorf("copying %s: %w", p, err)
			}
		}
		n++
		return nil
	})
	return n, err
}

// LinkOrCopy puts the regular file p at target as a backup holds it: by
// hard link, or by copy for an INI file (users and programs edit those in
// place, see Copied) and where the file system cannot link.
func LinkOrCopy(d *install.Disk, p, target string) error {
	if !Copied(p) && d.Link(p, target) == nil {
		return nil
	}
	return d.Copy(p, target)
}

// Copied reports whether a backup holds the install's file p as a copy of
// its own even where the file system links: an INI file, which users and
// programs edit in place, and which an edit would otherwise change in the
// backup too.
func Copied(p string) bool { return strings.EqualFold(path.Ext(p), ".ini") }

// Newest names the highest-numbered backup folder, or "".
func Newest(root *install.Disk) string {
	for i := Max; i >= 1; i-- {
		if fi, err := root.Lstat(Name(i)); err == nil && fi.IsDir() {
			return Name(i)
		}
	}
	return ""
}
