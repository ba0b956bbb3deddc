package smartclient

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/otiai10/copy"
)

// backupName returns the folder of backup n (1..3), as TOTVS names them.
func backupName(n int) string { return fmt.Sprintf("%s%03d", backupPrefix, n) }

// backup copies the current install into a new backup and rotates the
// bkp_remote.00N folders: backups fill .001, .002, .003 in turn; once all
// three exist, .001 is dropped, .002 becomes .001, .003 becomes .002 and
// the new one is .003, so .003 is always the newest. The new backup is
// built aside and put in place by renames, so a crash never leaves a half
// backup under a bkp_remote name. It returns the name of the new backup, or
// "" when the install held nothing to back up.
func backup(root *os.Root, dir string) (string, error) {
	if err := root.RemoveAll(newBackupDir); err != nil {
		return "", fmt.Errorf("backup: clearing %s: %w", newBackupDir, err)
	}
	n, err := snapshot(root, dir, newBackupDir)
	if err != nil {
		root.RemoveAll(newBackupDir)
		return "", err
	}
	if n == 0 {
		return "", root.RemoveAll(newBackupDir)
	}
	var have []int
	for i := 1; i <= maxBackups; i++ {
		fi, err := root.Lstat(backupName(i))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return "", fmt.Errorf("backup: %w", err)
		case !fi.IsDir():
			return "", fmt.Errorf("backup: %s is not a folder; move it away and retry", backupName(i))
		default:
			have = append(have, i)
		}
	}
	// Close gaps left by hand (".001" and ".003" only), oldest first.
	for slot, i := range have {
		if i != slot+1 {
			if err := root.Rename(backupName(i), backupName(slot+1)); err != nil {
				return "", fmt.Errorf("backup: renumbering: %w", err)
			}
		}
	}
	target := len(have) + 1
	if len(have) == maxBackups {
		// The oldest is moved aside before it is deleted, so a crash
		// mid-delete never leaves a half backup under a kept name.
		if err := root.RemoveAll(dropBackup); err != nil {
			return "", fmt.Errorf("backup: %w", err)
		}
		if err := root.Rename(backupName(1), dropBackup); err != nil {
			return "", fmt.Errorf("backup: dropping the oldest: %w", err)
		}
		for i := 2; i <= maxBackups; i++ {
			if err := root.Rename(backupName(i), backupName(i-1)); err != nil {
				return "", fmt.Errorf("backup: rotating: %w", err)
			}
		}
		target = maxBackups
	}
	if err := root.Rename(newBackupDir, backupName(target)); err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	if err := root.RemoveAll(dropBackup); err != nil {
		return "", fmt.Errorf("backup: removing the oldest backup: %w", err)
	}
	return backupName(target), nil
}

// snapshot copies every file of the install (but the client's bookkeeping
// and the backups) into dst, by hard link where the file system allows it
// and by copy where it does not. Hard links are safe because a sync never
// writes a file in place: it renames new files over old ones, so the
// backup keeps the old content. INI files are copied all the same, since
// users and programs do edit those in place. It returns the files copied.
func snapshot(root *os.Root, dir, dst string) (int, error) {
	n := 0
	err := fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("backup: reading %s: %w", p, err)
		}
		if p == "." {
			return nil
		}
		if reserved(p) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		target := dst + "/" + p
		switch {
		case d.IsDir():
			if err := root.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			link, err := root.Readlink(p)
			if err == nil {
				err = root.Symlink(link, target)
			}
			if err != nil {
				return fmt.Errorf("backup: copying link %s: %w", p, err)
			}
		case !d.Type().IsRegular():
			return nil // sockets, pipes and devices are not part of an install
		default:
			if strings.EqualFold(path.Ext(p), ".ini") || root.Link(p, target) != nil {
				src := filepath.Join(dir, filepath.FromSlash(p))
				dstPath := filepath.Join(dir, filepath.FromSlash(target))
				if err := copy.Copy(src, dstPath, copy.Options{PreserveTimes: true}); err != nil {
					return fmt.Errorf("backup: copying %s: %w", p, err)
				}
			}
		}
		n++
		return nil
	})
	return n, err
}
