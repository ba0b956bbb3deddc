package fetch

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest"
)

// ResumeDir keeps the files a failed download had already received and
// verified, so that the next sync does not download them again. It is
// not staging: after any failure staging is gone, and only whole,
// verified files are kept here.
const ResumeDir = install.MetaDir + "/resume"

// KeepForResume moves what a failed sync staged to ResumeDir. Every file
// in staging is whole and verified: fetchOne removes a file it could not
// finish.
func KeepForResume(d *install.Disk, log *slog.Logger) {
	if !d.Exists(install.StagingDir) {
		return
	}
	if err := d.RemoveAll(ResumeDir); err == nil {
		err = d.Rename(install.StagingDir, ResumeDir)
		if err == nil {
			return
		}
		log.Info("keeping downloaded files for the next sync", "err", err)
	}
}

// ReuseDownloads moves each file of fetch that ResumeDir holds with the
// manifest's size and hash into staging, and returns the files still to
// download with what was reused. Whatever else ResumeDir holds is stale
// and removed.
func ReuseDownloads(d *install.Disk, man *manifest.Manifest, fetch []int) (rest []int, reused int, reusedBytes int64) {
	if _, err := d.Lstat(ResumeDir); errors.Is(err, fs.ErrNotExist) {
		return fetch, 0, 0
	}
	defer d.RemoveAll(ResumeDir)
	for _, i := range fetch {
		f := man.File(i)
		kept := ResumeDir + "/" + f.Path
		fi, err := d.Lstat(kept)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != f.Size {
			rest = append(rest, i)
			continue
		}
		// A link is never downloaded, so never kept.
		if h, err := d.HashFile(kept); err != nil || f.Target != "" || h != hex.EncodeToString(f.Hash[:]) {
			rest = append(rest, i)
			continue
		}
		// The content is the manifest's; its mode and time must be too
		// (a release may fix a file's mode without changing a byte).
		mt := time.Unix(0, f.MtimeNs)
		if d.Chmod(kept, stagedMode(f.Mode)) != nil || d.Chtimes(kept, mt, mt) != nil {
			rest = append(rest, i)
			continue
		}
		staged := install.StagingDir + "/" + f.Path
		if d.MkdirAll(path.Dir(staged), 0o755) != nil || d.Rename(kept, staged) != nil {
			rest = append(rest, i)
			continue
		}
		reused++
		reusedBytes += f.Size
	}
	return rest, reused, reusedBytes
}

// StageDirs makes the empty folders to install in the staging folder; the
// switch renames them into place like files, so that undoing it takes
// them back. A folder is made with its owner's rights whatever the
// release says, so that the client can always rename it and take it back.
func StageDirs(d *install.Disk, man *manifest.Manifest, dirs []int) error {
	for _, i := range dirs {
		f := man.File(i)
		staged := install.StagingDir + "/" + f.Path
		if err := d.MkdirAll(path.Dir(staged), 0o755); err != nil {
			return fmt.Errorf("staging the folder %s: %w", f.Path, err)
		}
		if err := d.MkdirAll(staged, f.Mode.Perm()|0o700); err != nil {
			return fmt.Errorf("staging the folder %s: %w", f.Path, err)
		}
	}
	return nil
}

// StageLinks makes the symbolic links to install in the staging folder;
// the switch renames them into place like files.
func StageLinks(d *install.Disk, man *manifest.Manifest, links []int) error {
	for _, i := range links {
		f := man.File(i)
		staged := install.StagingDir + "/" + f.Path
		if err := d.MkdirAll(path.Dir(staged), 0o755); err != nil {
			return fmt.Errorf("staging the link %s: %w", f.Path, err)
		}
		if err := d.Symlink(f.Target, staged); err != nil {
			return fmt.Errorf("staging the link %s: %w", f.Path, err)
		}
	}
	return nil
}
