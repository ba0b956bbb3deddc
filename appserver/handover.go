package appserver

import (
	"context"
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

// fetchTimeout bounds the download of a release.
const fetchTimeout = 30 * time.Minute

// prepared is a release fetched, verified and unpacked beside the
// installation, as <name>_new.
type prepared struct {
	dir   string
	build string
}

// prepare fetches the release into the state folder, verifies its
// signature, refuses one not newer than the running build, and unpacks it
// beside the installation. Nothing else has happened when it fails.
func (u *updater) prepare(ctx context.Context, j *job) (*prepared, error) {
	self := u.s.self
	// A download that stalls must not hold the update (and the next one)
	// forever; the administrator can also cancel it.
	fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	archive, sig, err := release.Fetch(fctx, j.req.Source, filepath.Join(u.dir, "download"), release.FetchOptions{})
	if err != nil {
		return nil, refused("%v", err)
	}
	info, err := release.Verify(archive, sig, u.s.cfg.SelfUpdate.PublicKeys)
	if err != nil {
		return nil, refused("release refused: %v", err)
	}
	u.event("release %s: signature good (key %s)", info.Build, info.KeyID)
	if err := version.CheckNewer(self.Build, info.Build, j.req.AllowDowngrade); err != nil {
		return nil, refused("release refused: %v", err)
	}
	dir := self.InstallDir + "_new"
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("removing an earlier %s: %w", dir, err)
	}
	if _, err := release.VerifyExtract(ctx, archive, u.s.cfg.SelfUpdate.PublicKeys, dir); err != nil {
		return nil, refused("release refused: %v", err)
	}
	rel, err := filepath.Rel(self.InstallDir, self.Exe)
	if err != nil || strings.HasPrefix(rel, "..") {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("the server's program %s is not inside its installation folder %s", self.Exe, self.InstallDir)
	}
	if fi, err := os.Stat(filepath.Join(dir, rel)); err != nil || !fi.Mode().IsRegular() {
		os.RemoveAll(dir)
		return nil, refused("release refused: it has no %s, the server's program, at its top", filepath.ToSlash(rel))
	}
	if err := os.WriteFile(filepath.Join(dir, idMarker), []byte(j.req.ID+"\n"), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("marking the new installation: %w", err)
	}
	u.event("release %s unpacked into %s", info.Build, dir)
	return &prepared{dir: dir, build: info.Build}, nil
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

// switchOver backs up the server's data, carries configuration,
// certificates, backups and [SELFUPDATE] Carry into the new installation,
// and hands over to the helper.
func (u *updater) switchOver(ctx context.Context, j *job, p *prepared) error {
	self := u.s.self
	stamp := time.Now().Format("20060102-150405")
	bk := filepath.Join(self.InstallDir, backupsFolder, "appserver-data-"+stamp)
	if _, err := os.Stat(self.StateDir); err == nil {
		u.event("backing up the server's data %s into %s", self.StateDir, bk)
		if err := copyTree(self.StateDir, bk); err != nil {
			return fmt.Errorf("backing up the server's data: %w", err)
		}
		pruneBackups(u.log, filepath.Join(self.InstallDir, backupsFolder))
	}
	u.hook("backup")
	if err := ctx.Err(); err != nil {
		return err
	}
	carried, err := carry(self, u.s.cfg.SelfUpdate.Carry, p.dir)
	if err != nil {
		return fmt.Errorf("carrying files into the new installation: %w", err)
	}
	u.event("carried into the new installation: %s", strings.Join(carried, ", "))
	u.hook("carried")
	if err := ctx.Err(); err != nil {
		return err
	}
	u.event("handing over to the update helper: this server stops now, the helper renames %s to %s_old, puts %s in its place and starts it",
		self.InstallDir, filepath.Base(self.InstallDir), filepath.Base(p.dir))
	if err := handOver(u.log, u.s.cfg, self, j, p); err != nil {
		return fmt.Errorf("starting the update helper: %w", err)
	}
	u.hook("spawned")
	u.s.handoff()
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

// carry copies from the old installation into the new one what belongs to
// this server rather than to the release: AppServer.ini, certificates,
// the backups, the state folder when it is inside the installation, and
// [SELFUPDATE] Carry. What the old installation has replaces what the
// release brought. It returns the carried paths.
func carry(self Self, extra []string, newDir string) ([]string, error) {
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

// handOver writes the journal, copies the running program outside the
// installation folder and starts it there as the helper, which waits for
// this process to exit before it touches anything.
func handOver(log *slog.Logger, cfg *Config, self Self, j *job, p *prepared) error {
	hd := helperDir(self.InstallDir)
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
	jr := &journal{
		Version: journalVersion, ID: j.req.ID, Phase: phaseHandover, ServerPID: os.Getpid(),
		Install: self.InstallDir, Exe: rel, Args: self.Args, WorkDir: self.WorkDir,
		Listen: self.Listen, HealthTimeout: cfg.SelfUpdate.HealthTimeout, StateDir: self.StateDir,
		OldBuild: self.Build, NewBuild: p.build, Source: j.req.Source, Notify: j.req.Notify,
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
