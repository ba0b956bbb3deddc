package smartclient

import (
	"errors"
	"io/fs"
	"log/slog"
	"path"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest"
)

// resumeDir keeps the files a failed download had already received and
// verified, so that the next sync does not download them again. It is
// not staging: after any failure staging is gone, and only whole,
// verified files are kept here.
const resumeDir = install.MetaDir + "/resume"

// keepForResume moves what a failed sync staged to resumeDir. Every file
// in staging is whole and verified: fetchOne removes a file it could not
// finish.
func keepForResume(d *install.Disk, log *slog.Logger) {
	if !d.Exists(install.StagingDir) {
		return
	}
	if err := d.RemoveAll(resumeDir); err == nil {
		err = d.Rename(install.StagingDir, resumeDir)
		if err == nil {
			return
		}
		log.Info("keeping downloaded files for the next sync", "err", err)
	}
}

// reuseDownloads moves each file of fetch that resumeDir holds with the
// manifest's size and hash into staging, and returns the files still to
// download with what was reused. Whatever else resumeDir holds is stale
// and removed.
func reuseDownloads(d *install.Disk, man *manifest.Manifest, fetch []int) (rest []int, reused int, reusedBytes int64) {
	if _, err := d.Lstat(resumeDir); errors.Is(err, fs.ErrNotExist) {
		return fetch, 0, 0
	}
	defer d.RemoveAll(resumeDir)
	for _, i := range fetch {
		f := man.File(i)
		kept := resumeDir + "/" + f.Path
		fi, err := d.Lstat(kept)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != f.Size {
			rest = append(rest, i)
			continue
		}
		if h, err := d.HashFile(kept); err != nil || h != installHash(f) {
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
