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
	"regexp"
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

// publishRelease makes rel.dir the linux release rel.build of an appserver,
// as an administrator does: with `appserver publish` into the server's
// release history. startOurs calls it twice: while it writes the server's
// AppServer.ini (srv nil; the [UPDATE] section is open in ini), where the
// update folder is an empty one, never served once a release is published;
// and once the server is listening (srv the running server), when it
// publishes and waits for the server to serve the release and to have made
// its patches from the releases kept before it (issue 23: "deltas from
// history"), so that the timed runs measure serving, not making patches.
//
// Trees that follow each other (v1 and v2, the Go releases, big1 and its
// next versions) share a state folder (stateFolder), so the history of the
// server of the later one holds the earlier. --rollback lets a run publish
// the older tree again after the newer one (the template of a scenario is
// synced from the older).
func (b *bench) publishRelease(ctx context.Context, ini *strings.Builder, srv *server, rel release) error {
	if srv == nil {
		empty := filepath.Join(b.work, "empty-update-folder")
		if err := os.MkdirAll(empty, 0o755); err != nil {
			return err
		}
		fmt.Fprintf(ini, "PathLinux=%s\nBuild=%s\n", empty, rel.build)
		return nil
	}
	cmd := exec.CommandContext(ctx, filepath.Join(b.root, "bin", "appserver"), "publish", "--config", rel.ini,
		"--state", rel.state, "--os", "linux", "--build", rel.build, "--rollback", rel.dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("appserver publish: %w\n%s", err, out)
	}
	step("%s", strings.TrimSpace(firstLine(string(out))))
	// The release published, or the one already served when there was
	// nothing to publish: the server logs that it serves it (at its
	// start, or within 2 s of the publish), then plans and makes its
	// patches in the background.
	m := regexp.MustCompile(`release (\d+)`).FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("appserver publish did not name the release:\n%s", out)
	}
	deadline := time.Now().Add(10 * time.Minute)
	served := regexp.MustCompile(`msg="serving a published release".* release=` + string(m[1]) + ` `)
	for {
		data, _ := os.ReadFile(srv.log)
		tail := data
		if loc := served.FindIndex(tail); loc != nil {
			rest := string(tail[loc[1]:])
			if strings.Contains(rest, "no patches to make") || strings.Contains(rest, "made the patches planned") {
				if i := strings.Index(rest, "made the patches planned"); i >= 0 {
					step("%s", strings.ReplaceAll(strings.TrimSpace(firstLine(rest[i:])), `"`, ""))
				}
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server did not serve build %s and make its patches within 10 minutes:\n%s", rel.build, tail)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-srv.done:
			return fmt.Errorf("the appserver exited while its release was published")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stateFolder is the state folder of the server of tree: trees that are
// releases of one application share one, so that its release history
// holds the earlier release when the later one is published.
func stateFolder(tree string) string {
	switch {
	case isGoTree(tree):
		return goStateFolder
	case tree == "v1" || tree == "v2":
		return "app"
	case strings.HasPrefix(tree, "big"):
		return "big"
	}
	return tree
}
