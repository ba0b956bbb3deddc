package smartclient

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/erpupdate/smartsync/smartclient/internal/backup"
	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest"
)

// ErrPreflight marks an update that cannot be applied, found out before
// anything is written.
var ErrPreflight = errors.New("smartclient: the update cannot be applied here")

// preflight checks, before a byte is downloaded, that the update can be
// applied: no read-only file or folder stands where the switch must
// write, and the file system has room for the staged files plus what the
// backup copies. free is the free space as measured before the backup
// started (see measureSpace).
func preflight(d *install.Disk, man *manifest.Manifest, p *plan, free space) error {
	var problems []string
	checked := map[string]bool{}
	// The folder a file is created in, or renamed out of, must be
	// writable (see folderReadOnly); so must the file it replaces, which
	// matters on Windows, where a read-only file cannot be replaced.
	dirOf := func(p string) {
		for dir := path.Dir(p); !checked[dir]; dir = path.Dir(dir) {
			checked[dir] = true
			fi, err := d.Lstat(dir)
			if err == nil {
				if folderReadOnly(fi) {
					problems = append(problems, fmt.Sprintf("the folder %s is read-only", dir))
				}
				return
			}
			if dir == "." {
				return
			}
		}
	}
	file := func(p string) {
		if fi, err := d.Lstat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o200 == 0 {
			problems = append(problems, fmt.Sprintf("the file %s is read-only", p))
		}
		dirOf(p)
	}
	dirOf(install.MetaDir + "/x")
	for _, i := range p.installs() {
		file(man.File(i).Path)
	}
	for _, name := range p.remove {
		file(name)
	}
	if len(problems) > 0 {
		if len(problems) > 5 {
			problems = append(problems[:5], fmt.Sprintf("and %d more", len(problems)-5))
		}
		return fmt.Errorf("%w: %s (make them writable and retry)", ErrPreflight, strings.Join(problems, "; "))
	}

	need := p.fetchBytes + 1<<20
	if p.changesContent() {
		copied, err := backupCopyBytes(d, free.links)
		if err != nil {
			return fmt.Errorf("preflight: %w", err)
		}
		need += copied
	}
	have, err := free.bytes, free.err
	if errors.Is(err, errors.ErrUnsupported) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("preflight: measuring free space: %w", err)
	}
	if have < need {
		return fmt.Errorf("%w: not enough free space in %s: need %s, have %s", ErrPreflight, d.Name(), humanBytes(need), humanBytes(have))
	}
	return nil
}

// space is the free space of the install's file system, or why it is
// unknown.
type space struct {
	bytes int64
	err   error
	links bool // the file system takes hard links (see probeLink)
}

// measureSpace measures the free space that preflight compares with what
// the update needs, and whether the backup can link. It is measured before
// the backup starts, which takes some of it for the INI copies that
// preflight counts.
func measureSpace(d *install.Disk) space {
	n, err := d.FreeSpace()
	return space{n, err, probeLink(d)}
}

// backupCopyBytes is what a backup of the install would copy rather than
// link: the INI files, or everything where the file system cannot link.
func backupCopyBytes(d *install.Disk, canLink bool) (int64, error) {
	var n int64
	err := d.WalkInstall(func(p string, e fs.DirEntry) error {
		if !e.Type().IsRegular() || (canLink && !backup.Copied(p)) {
			return nil
		}
		fi, err := e.Info()
		if err == nil {
			n += fi.Size()
		}
		return err
	})
	return n, err
}

// probeLink reports whether the install's file system takes hard links.
func probeLink(d *install.Disk) bool {
	const a, b = install.MetaDir + "/.linkprobe", install.MetaDir + "/.linkprobe2"
	defer d.Root.Remove(a)
	defer d.Root.Remove(b)
	if d.Root.MkdirAll(install.MetaDir, 0o755) != nil || d.Root.WriteFile(a, nil, 0o644) != nil {
		return false
	}
	return d.Link(a, b) == nil
}

// ErrNoSpace marks an update that does not fit on the install folder's
// file system.
var ErrNoSpace = errors.New("smartclient: not enough free disk space")

// checkFreeSpace fails with ErrNoSpace, saying how much is needed and how
// much there is, when the file system holding dir has less than need
// bytes free for this user. Where the OS cannot tell, it lets the update
// go on: a full disk is then caught by the write that fails, and the
// update rolls back.
func checkFreeSpace(dir string, need int64) error {
	have, err := install.FreeSpace(dir)
	if errors.Is(err, errors.ErrUnsupported) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking free space: %w", err)
	}
	if need > have {
		return fmt.Errorf("not enough free space in %s: need %s, have %s: %w", dir, humanBytes(need), humanBytes(have), ErrNoSpace)
	}
	return nil
}
