package handover

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/appserver/release"
	"github.com/erpupdate/smartsync/internal/version"
	"github.com/otiai10/copy"
)

// Self describes the running server's own installation: what a self-update
// replaces and how the new server is started. appserver.Run fills it in
// from the executable's path and the command line.
type Self struct {
	InstallDir string   // the installation folder, the executable's folder
	Exe        string   // the executable, inside InstallDir
	Args       []string // the command line, without the program, as given
	WorkDir    string   // the working folder the server was started in, where Args are read from
	ConfigFile string   // the AppServer.ini in use, absolute
	StateDir   string   // the state folder, absolute
	Listen     string   // the address the new server is checked on
	Build      string   // the installation's own build (its BUILD file); "" when unknown
}

// fetchTimeout bounds the download of a release.
const fetchTimeout = 30 * time.Minute

// Release is a release fetched, verified and unpacked beside the
// installation, as <name>_new.
type Release struct {
	Dir   string // the new installation, <name>_new
	Build string // the release's build
}

// Request is an administrator's update as Prepare needs it.
type Request struct {
	ID             string // the update's ID, which the new installation carries
	Source         string // the release archive: a URL or a path
	AllowDowngrade bool   // accept a release not newer than the running build
	// Build, Size and SHA256, when Size is set, are what the vendor's
	// release feed lists for the release: the archive fetched must have
	// them, besides its own good signature, or it is refused
	// (release.ErrFeedMismatch). Size also bounds the download.
	Build  string
	Size   int64
	SHA256 [sha256.Size]byte
}

// Progress is told each step of an update as it is done, as a line for
// the log and the administrator's screen.
type Progress func(format string, args ...any)

// Prepare fetches the release of req into downloadDir, verifies its
// signature against keys, refuses one not newer than the running build,
// and unpacks it beside the installation. Nothing else has happened when
// it fails.
func Prepare(ctx context.Context, self Self, req Request, keys []ed25519.PublicKey, downloadDir string, progress Progress) (*Release, error) {
	// A download that stalls must not hold the update (and the next one)
	// forever; the administrator can also cancel it.
	fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	archive, sig, err := release.Fetch(fctx, req.Source, downloadDir, release.FetchOptions{MaxArchive: req.Size})
	if err != nil {
		return nil, err
	}
	info, err := release.Verify(archive, sig, keys)
	if err != nil {
		return nil, fmt.Errorf("release refused: %w", err)
	}
	if req.Size != 0 && (info.Size != req.Size || info.SHA256 != req.SHA256 || info.Build != req.Build) {
		return nil, fmt.Errorf("release refused: %w: %s is build %s, %d bytes, SHA-256 %x; the feed lists build %s, %d bytes, SHA-256 %x",
			release.ErrFeedMismatch, req.Source, info.Build, info.Size, info.SHA256, req.Build, req.Size, req.SHA256)
	}
	progress("release %s: signature good (key %s)", info.Build, info.KeyID)
	if err := version.CheckNewer(self.Build, info.Build, req.AllowDowngrade); err != nil {
		return nil, fmt.Errorf("release refused: %w", err)
	}
	dir := self.InstallDir + "_new"
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("removing an earlier %s: %w", dir, err)
	}
	if _, err := release.VerifyExtract(ctx, archive, keys, dir); err != nil {
		return nil, fmt.Errorf("release refused: %w", err)
	}
	rel, err := filepath.Rel(self.InstallDir, self.Exe)
	if err != nil || strings.HasPrefix(rel, "..") {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("the server's program %s is not inside its installation folder %s", self.Exe, self.InstallDir)
	}
	if fi, err := os.Stat(filepath.Join(dir, rel)); err != nil || !fi.Mode().IsRegular() {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("release refused: it has no %s, the server's program, at its top", filepath.ToSlash(rel))
	}
	if err := os.WriteFile(filepath.Join(dir, idMarker), []byte(req.ID+"\n"), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("marking the new installation: %w", err)
	}
	progress("release %s unpacked into %s", info.Build, dir)
	return &Release{Dir: dir, Build: info.Build}, nil
}

// certPatterns are the certificate and key files carried at the top of
// the installation folder; certFolders are carried whole.
var (
	certPatterns = []string{"*.pem", "*.crt", "*.cer", "*.key", "*.pfx", "*.p12"}
	certFolders  = []string{"certs", "ssl"}
)

// backupsFolder, inside the installation, holds the data backups; it is
// carried into every new installation.
const (
	backupsFolder = "backups"
	keepBackups   = 5
)

// BackUp copies the server's state folder (but the downloaded releases)
// into <install>/backups/appserver-data-<time>, telling progress first,
// and keeps the newest five such backups. A server without a state folder
// has nothing to back up.
func BackUp(log *slog.Logger, self Self, progress Progress) error {
	stamp := time.Now().Format("20060102-150405")
	bk := filepath.Join(self.InstallDir, backupsFolder, "appserver-data-"+stamp)
	if _, err := os.Stat(self.StateDir); err != nil {
		return nil
	}
	progress("backing up the server's data %s into %s", self.StateDir, bk)
	if err := copyTree(self.StateDir, bk); err != nil {
		return fmt.Errorf("backing up the server's data: %w", err)
	}
	pruneBackups(log, filepath.Join(self.InstallDir, backupsFolder))
	return nil
}

// copyTree copies a folder, leaving out downloaded releases.
func copyTree(src, dst string) error {
	return copy.Copy(src, dst, copy.Options{
		PreserveTimes: true,
		Sync:          true,
		Skip: func(_ os.FileInfo, s, _ string) (bool, error) {
			rel, _ := filepath.Rel(src, s)
			return filepath.ToSlash(rel) == "selfupdate/download", nil
		},
	})
}

// pruneBackups keeps the newest keepBackups data backups.
func pruneBackups(log *slog.Logger, dir string) {
	names, _ := filepath.Glob(filepath.Join(dir, "appserver-data-*"))
	slices.Sort(names)
	for len(names) > keepBackups {
		if err := os.RemoveAll(names[0]); err != nil {
			log.Warn("self-update: removing an old data backup", "dir", names[0], "err", err)
		}
		names = names[1:]
	}
}

// Carry copies from the old installation into the new one, newDir, what
// belongs to this server rather than to the release: AppServer.ini,
// certificates, the backups, the state folder when it is inside the
// installation, and extra ([SELFUPDATE] Carry, slash paths inside the
// installation). What the old installation has replaces what the release
// brought. It returns the carried paths.
func Carry(self Self, extra []string, newDir string) ([]string, error) {
	var rels []string
	add := func(abs string) {
		rel, err := filepath.Rel(self.InstallDir, abs)
		if err == nil && rel != "." && !strings.HasPrefix(rel, "..") && !slices.Contains(rels, rel) {
			rels = append(rels, rel)
		}
	}
	add(self.ConfigFile)
	for _, p := range certPatterns {
		m, _ := filepath.Glob(filepath.Join(self.InstallDir, p))
		for _, f := range m {
			add(f)
		}
	}
	for _, d := range certFolders {
		add(filepath.Join(self.InstallDir, d))
	}
	add(filepath.Join(self.InstallDir, backupsFolder))
	add(self.StateDir)
	for _, c := range extra {
		add(filepath.Join(self.InstallDir, filepath.FromSlash(c)))
	}
	var done []string
	for _, rel := range rels {
		src := filepath.Join(self.InstallDir, rel)
		if _, err := os.Lstat(src); errors.Is(err, os.ErrNotExist) {
			continue
		}
		dst := filepath.Join(newDir, rel)
		if err := os.RemoveAll(dst); err != nil {
			return done, err
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return done, err
		}
		if err := copyTree(src, dst); err != nil {
			return done, fmt.Errorf("%s: %w", rel, err)
		}
		done = append(done, filepath.ToSlash(rel))
	}
	return done, nil
}

// Update is what the helper needs to know of the update it switches in,
// besides the installation.
type Update struct {
	ID       string // the update's ID, which the new installation carries
	Source   string // where the release came from, for the record
	Notify   string // the address the outcome is mailed to; "" for none
	NewBuild string // the release's build
	// HealthTimeout is how long the new server has to answer before the
	// old one is put back; 0 means 30 s.
	HealthTimeout time.Duration
}

// Start writes the journal of update u, copies the running program
// outside the installation folder and starts it there as the helper, as
// "PROGRAM selfupdate-helper --journal FILE" (which appserver.Run hands to
// RunHelper). The helper waits for this process to exit before it touches
// anything; the caller stops serving and exits.
func Start(log *slog.Logger, self Self, u Update) error {
	hd := HelperDir(self.InstallDir)
	if err := os.RemoveAll(hd); err != nil {
		return err
	}
	if err := os.MkdirAll(hd, 0o700); err != nil {
		return err
	}
	exe := filepath.Join(hd, filepath.Base(self.Exe))
	if err := copy.Copy(self.Exe, exe, copy.Options{Sync: true}); err != nil {
		return fmt.Errorf("copying the program outside the installation: %w", err)
	}
	if err := os.Chmod(exe, 0o755); err != nil {
		return fmt.Errorf("making the helper's program executable: %w", err)
	}
	rel, _ := filepath.Rel(self.InstallDir, self.Exe)
	jr := &Journal{
		Version: journalVersion, ID: u.ID, Phase: PhaseHandover, ServerPID: os.Getpid(),
		Install: self.InstallDir, Exe: rel, Args: self.Args, WorkDir: self.WorkDir,
		Listen: self.Listen, HealthTimeout: u.HealthTimeout, StateDir: self.StateDir,
		OldBuild: self.Build, NewBuild: u.NewBuild, Source: u.Source, Notify: u.Notify,
		ConfigFile: self.ConfigFile, Started: time.Now(),
	}
	if jr.HealthTimeout == 0 {
		jr.HealthTimeout = 30 * time.Second
	}
	if err := jr.save(hd); err != nil {
		return fmt.Errorf("writing the journal: %w", err)
	}
	cmd := exec.Command(exe, "selfupdate-helper", "--journal", filepath.Join(hd, journalName))
	cmd.Dir = filepath.Dir(self.InstallDir)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Env = os.Environ()
	detach(cmd)
	if err := cmd.Start(); err != nil {
		os.RemoveAll(hd)
		return err
	}
	log.Warn("self-update: helper started", "pid", cmd.Process.Pid, "journal", filepath.Join(hd, journalName))
	return cmd.Process.Release()
}
