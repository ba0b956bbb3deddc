//go:build linux

package main

import (
	"archive/zip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The go-upgrade scenario: a real upgrade, the Go 1.25.0 -> 1.25.1
// linux-amd64 distribution as the Go module proxy serves it (the modules
// that GOTOOLCHAIN downloads). 11,039 files, 213 MB; every mtime differs
// between the two, 24 files changed, 9 of them executables of 2-21 MB.

// toolchainModule is the module path of the Go distributions on the proxy.
const toolchainModule = "golang.org/toolchain"

// goRelease is one Go distribution used as a served or installed tree.
type goRelease struct {
	tree    string // the tree's name (and rsync module)
	version string // toolchainModule's version
	build   string // the build the appserver gives it
}

var goReleases = []goRelease{
	{tree: "go1.25.0", version: "v0.0.1-go1.25.0.linux-amd64", build: oldBuild},
	{tree: "go1.25.1", version: "v0.0.1-go1.25.1.linux-amd64", build: newBuild},
}

// goStateFolder is the appserver state folder that both Go releases share,
// as one server that publishes 1.25.0 and then 1.25.1 keeps them: the
// release history of issue 23 lives there (see publishRelease).
const goStateFolder = "go"

// isGoTree reports whether name is one of goReleases.
func isGoTree(name string) bool {
	for _, r := range goReleases {
		if r.tree == name {
			return true
		}
	}
	return false
}

// extractFormat changes whenever extractZip makes a different tree from
// the same zip, so that the trees kept between runs are made again.
const extractFormat = "extracted by scripts/bench: module prefix stripped, the zip's file modes and mtimes kept, directories' mtimes set to the newest file's (format 1)"

// goTrees makes the Go trees in the work folder's top (kept between runs,
// like the generated trees, and shared by -small and the full run): each is
// downloaded with `go mod download -json` into the module cache and
// extracted once. A tree whose flags file names the same module version,
// checksum and extraction is left as it is. When the download fails (no
// network), a tree extracted before is used, and otherwise the error says
// why, for the caller to skip the scenarios that need it.
func (b *bench) goTrees(ctx context.Context) error {
	for _, r := range goReleases {
		dir := filepath.Join(b.top, r.tree)
		ffile := dir + ".flags"
		mv := toolchainModule + "@" + r.version
		zipPath, sum, derr := downloadModule(ctx, toolchainModule, r.version)
		have, _ := os.ReadFile(ffile)
		if derr != nil {
			_, serr := os.Stat(dir)
			if serr == nil && strings.HasPrefix(string(have), mv+" ") && strings.Contains(string(have), extractFormat) {
				step("tree %s: %v; using the copy extracted before (%s)", r.tree, derr, ffile)
				b.dirs[r.tree] = dir
				b.goDesc[r.tree] = strings.TrimSpace(firstLine(string(have)))
				continue
			}
			return derr
		}
		want := fmt.Sprintf("%s %s\n%s\n", mv, sum, extractFormat)
		if _, err := os.Stat(dir); err == nil && string(have) == want {
			step("tree %s is current (%s)", r.tree, ffile)
		} else {
			step("extracting %s into %s", zipPath, dir)
			os.Remove(ffile)
			t0 := time.Now()
			files, size, err := extractZip(zipPath, mv+"/", dir)
			if err != nil {
				return fmt.Errorf("extracting %s: %w", mv, err)
			}
			step("extracted %s: %d files, %s, in %.1f s", r.tree, files, fmtBytes(float64(size)), time.Since(t0).Seconds())
			if err := os.WriteFile(ffile, []byte(want), 0o644); err != nil {
				return err
			}
		}
		b.dirs[r.tree] = dir
		b.goDesc[r.tree] = mv + " " + sum
	}
	return nil
}

// downloadModule runs `go mod download -json MODULE@VERSION` in an empty
// module of its own (GOFLAGS=-mod=mod, GOPROXY as the environment has it)
// and returns the zip's path in the module cache and its checksum.
func downloadModule(ctx context.Context, module, version string) (zipPath, sum string, err error) {
	mv := module + "@" + version
	tmp, err := os.MkdirTemp("", "smartsync-bench-download-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "go.mod"), []byte("module smartsync.bench/download\n\ngo 1.21\n"), 0o644); err != nil {
		return "", "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd(), "mod", "download", "-json", mv)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	var m struct {
		Zip, Sum, Error string
	}
	jerr := json.Unmarshal(out, &m)
	switch {
	case m.Error != "":
		return "", "", fmt.Errorf("go mod download %s: %s", mv, m.Error)
	case runErr != nil:
		return "", "", fmt.Errorf("go mod download %s: %w: %s", mv, runErr, tail([]byte(stderr.String()), 1000))
	case jerr != nil:
		return "", "", fmt.Errorf("go mod download %s: reading its JSON: %w", mv, jerr)
	case m.Zip == "":
		return "", "", fmt.Errorf("go mod download %s: no Zip in its answer %s", mv, tail(out, 500))
	}
	return m.Zip, m.Sum, nil
}

// extractZip writes the regular files of a module zip under dest, without
// prefix (which every entry must start with), with the zip's permission
// bits and modification times; folders get the newest file's time, so
// that two extractions make the same tree. It writes into dest+".tmp" and
// renames that to dest at the end, so a tree is there whole or not at all.
func extractZip(zipPath, prefix, dest string) (files int, size int64, err error) {
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		return 0, 0, err
	}
	defer zr.Close()
	tmp := dest + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return 0, 0, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return 0, 0, err
	}
	var newest time.Time
	for _, f := range zr.File {
		name, ok := strings.CutPrefix(f.Name, prefix)
		if !ok {
			return 0, 0, fmt.Errorf("%s: entry %q is not under %s", zipPath, f.Name, prefix)
		}
		if name == "" || strings.HasSuffix(name, "/") {
			continue
		}
		if !filepath.IsLocal(filepath.FromSlash(name)) {
			return 0, 0, fmt.Errorf("%s: entry %q leaves the tree", zipPath, f.Name)
		}
		mode := f.Mode()
		if !mode.IsRegular() {
			return 0, 0, fmt.Errorf("%s: entry %q is not a regular file (%v)", zipPath, f.Name, mode)
		}
		p := filepath.Join(tmp, filepath.FromSlash(name))
		n, err := extractFile(f, p, mode.Perm())
		if err != nil {
			return 0, 0, fmt.Errorf("%s: entry %q: %w", zipPath, f.Name, err)
		}
		files++
		size += n
		if f.Modified.After(newest) {
			newest = f.Modified
		}
	}
	err = filepath.WalkDir(tmp, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return os.Chtimes(path, newest, newest)
	})
	if err != nil {
		return 0, 0, err
	}
	if err := os.RemoveAll(dest); err != nil {
		return 0, 0, err
	}
	return files, size, os.Rename(tmp, dest)
}

func extractFile(f *zip.File, path string, perm fs.FileMode) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return 0, err
	}
	rc, err := f.Open()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, rc)
	err = errors.Join(err, out.Close())
	if err != nil {
		return n, err
	}
	// The umask may have taken bits away at creation.
	if err := os.Chmod(path, perm); err != nil {
		return n, err
	}
	return n, os.Chtimes(path, f.Modified, f.Modified)
}

// release is what publishRelease publishes.
type release struct {
	tree  string // the tree's name
	dir   string // its folder
	build string // the build it is published as
	ini   string // the AppServer.ini of the server
	state string // the server's state folder
}

// publishRelease makes rel.dir the linux release rel.build of an appserver.
// startOurs calls it twice: while it writes the server's AppServer.ini (srv
// nil; the [UPDATE] section is open in ini, Enable and MinClientBuild
// written), and once the server is listening (srv the running server).
//
// Today a release is the update folder: it writes [UPDATE] PathLinux and
// Build into the INI, and the server is (re)started for each release.
//
// TODO(issue 23): once `appserver publish` exists, publish instead: write
// no PathLinux/Build (or whatever a server waiting for its first release
// needs), and when srv is not nil run
//
//	bin/appserver publish --config rel.ini --os linux --build rel.build rel.dir
//
// (exec with the context; its output into the error). The Go trees share
// one state folder (goStateFolder), so a server that published go1.25.0 for
// the template keeps it in its history when go1.25.1 is published for the
// go-upgrade scenarios, and deltas from history can show in those rows.
func (b *bench) publishRelease(ctx context.Context, ini *strings.Builder, srv *server, rel release) error {
	if srv != nil {
		return nil // today everything is in the INI, read at start-up
	}
	fmt.Fprintf(ini, "PathLinux=%s\nBuild=%s\n", rel.dir, rel.build)
	return nil
}
