//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/smartclient"
)

const module = "github.com/erpupdate/smartsync"

// The builds of the two releases: the old one is compatible with the new
// server (MinClientBuild), so an incremental client gets the silent update.
const (
	oldBuild = "7.00.240101A"
	newBuild = "7.00.240301A"
)

// The trees: benchdata's deterministic generator, at the size of a client
// release (about 20 MiB in 400 files, no large packs), and its next
// version (5% of the files rebuilt, 4 added, 4 removed).
var (
	oldTreeArgs = []string{"-size", "20M", "-files", "400", "-large", "0", "-seed", "1"}
	newTreeArgs = []string{"-seed", "2", "-change", "5", "-add", "4", "-remove", "4", "-edit-large", "0"}
)

// load holds what every scenario needs.
type load struct {
	c                *config
	root             string // the repository
	commit           string
	run              string // this run's folder
	trees            string
	oldDir           string // the old release
	newDir           string // the new release, which the scenarios serve
	state            string // the servers' state folder (one TLS key for the run)
	pubKey           string // the publisher's key, "ed25519:..."
	fp               string // the server's TLS key fingerprint, learnt from its log
	tmplOld, tmplNew string
	want             map[string]entry // the new release, as the clients must hold it
	seq              int              // numbers server logs
}

func setup(ctx context.Context, c *config) (*load, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	work, err := filepath.Abs(c.work)
	if err != nil {
		return nil, err
	}
	c.work = work
	l := &load{c: c, root: root, trees: filepath.Join(work, "trees")}
	l.run = filepath.Join(work, "run-"+time.Now().UTC().Format("20060102-150405"))
	l.state = filepath.Join(l.run, "state")
	for _, d := range []string{l.trees, l.run} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	step("building bin/appserver, bin/smartclient and the benchdata generator")
	if err := l.build(ctx); err != nil {
		return nil, err
	}
	if err := l.generate(ctx); err != nil {
		l.cleanup()
		return nil, err
	}
	if err := l.sign(ctx); err != nil {
		l.cleanup()
		return nil, err
	}
	if l.want, err = treeOf(l.newDir); err != nil {
		l.cleanup()
		return nil, err
	}
	if err := l.templates(ctx); err != nil {
		l.cleanup()
		return nil, err
	}
	return l, nil
}

// cleanup removes this run's folder, unless -keep.
func (l *load) cleanup() {
	if l.c.keep {
		step("-keep: this run's folders are in %s", l.run)
		return
	}
	os.RemoveAll(l.run)
}

// repoRoot finds the module's go.mod from the current folder up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && regexp.MustCompile(`(?m)^module\s+`+regexp.QuoteMeta(module)+`\s*$`).Match(data) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("run from inside the %s checkout (no go.mod of that module above the current folder)", module)
		}
		dir = parent
	}
}

func goCmd() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}

// command runs a program to completion and returns its standard output;
// its output goes into the error.
func command(ctx context.Context, dir string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s%s", name, strings.Join(args, " "), err, tail(out.Bytes(), 1000), tail(errb.Bytes(), 2000))
	}
	return out.String(), nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func (l *load) bin(name string) string { return filepath.Join(l.root, "bin", name) }

func (l *load) build(ctx context.Context) error {
	out, _ := command(ctx, l.root, "git", "rev-parse", "--short", "HEAD")
	l.commit = strings.TrimSpace(out)
	if st, _ := command(ctx, l.root, "git", "status", "--porcelain", "--untracked-files=no"); strings.TrimSpace(st) != "" {
		l.commit += " (with uncommitted changes)"
	}
	for _, p := range []string{"appserver", "smartclient"} {
		if _, err := command(ctx, l.root, goCmd(), "build", "-buildvcs=auto", "-o", "bin/"+p, "./"+p+"/cmd/"+p); err != nil {
			return err
		}
	}
	gdir := filepath.Join(l.root, "..", "shared", "benchdata")
	if _, err := os.Stat(filepath.Join(gdir, "main.go")); err != nil {
		return fmt.Errorf("the benchdata generator is expected in %s: %w", gdir, err)
	}
	_, err := command(ctx, gdir, goCmd(), "build", "-o", filepath.Join(l.c.work, "benchdata"), ".")
	return err
}

// generate makes the two trees unless the flags file beside each says it
// holds what these flags and this generator make.
func (l *load) generate(ctx context.Context) error {
	gen := filepath.Join(l.c.work, "benchdata")
	sum, err := fileSHA256(gen)
	if err != nil {
		return err
	}
	l.oldDir, l.newDir = filepath.Join(l.trees, "old"), filepath.Join(l.trees, "new")
	oldArgs := append([]string{"gen", "-out", l.oldDir}, oldTreeArgs...)
	newArgs := append([]string{"next", "-in", l.oldDir, "-out", l.newDir}, newTreeArgs...)
	oldWant := "generator sha256 " + sum + "\nbenchdata " + strings.Join(oldArgs, " ") + "\n"
	for _, t := range []struct {
		dir, want string
		args      []string
	}{
		{l.oldDir, oldWant, oldArgs},
		{l.newDir, oldWant + "benchdata " + strings.Join(newArgs, " ") + "\n", newArgs},
	} {
		ffile := t.dir + ".flags"
		if have, err := os.ReadFile(ffile); err == nil && string(have) == t.want {
			if _, err := os.Stat(t.dir); err == nil {
				step("tree %s is current", t.dir)
				continue
			}
		}
		step("generating: benchdata %s", strings.Join(t.args, " "))
		os.Remove(ffile)
		if err := os.RemoveAll(t.dir); err != nil {
			return err
		}
		if _, err := command(ctx, l.trees, gen, t.args...); err != nil {
			os.RemoveAll(t.dir)
			return err
		}
		if err := os.WriteFile(ffile, []byte(t.want), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

var pubKeyRE = regexp.MustCompile(`ed25519:[A-Za-z0-9+/=]+`)

// sign makes a publisher key for the run and signs the old release as
// number 1 and the new one as number 2, beside their folders.
func (l *load) sign(ctx context.Context) error {
	key := filepath.Join(l.run, "publisher.key")
	out, err := command(ctx, l.run, l.bin("appserver"), "release", "keygen", "--out", key)
	if err != nil {
		return err
	}
	l.pubKey = pubKeyRE.FindString(out)
	if l.pubKey == "" {
		return fmt.Errorf("appserver release keygen printed no ed25519: key: %q", out)
	}
	for i, t := range []struct{ dir, build string }{{l.oldDir, oldBuild}, {l.newDir, newBuild}} {
		ini, err := l.writeINI(fmt.Sprintf("sign-%d", i+1), t.dir, t.build, "")
		if err != nil {
			return err
		}
		if _, err := command(ctx, l.run, l.bin("appserver"), "release", "sign-update", "--config", ini, "--os", "linux",
			"--key", key, "--number", fmt.Sprint(i+1), "--expires", "2d"); err != nil {
			return err
		}
	}
	return nil
}

// writeINI writes an AppServer.ini serving dir as build, with extra lines
// (sections) after [UPDATE]'s keys.
func (l *load) writeINI(name, dir, build, extra string) (string, error) {
	ini := filepath.Join(l.run, "AppServer-"+name+".ini")
	conf := fmt.Sprintf("; generated by scripts/load\n[TCP]\nPort=1234\n\n[UPDATE]\nEnable=1\nPathLinux=%s\nBuild=%s\nMinClientBuild=%s\n%s",
		dir, build, oldBuild, extra)
	return ini, os.WriteFile(ini, []byte(conf), 0o644)
}

// options are the library's options for a client of the run's servers:
// the server's key pinned, the publisher's key trusted.
func (l *load) options(dir, addr, host string) smartclient.Options {
	return smartclient.Options{Dir: dir, Server: addr, OS: "linux", Yes: true,
		Fingerprint: l.fp, PublisherKeys: []string{l.pubKey}, Host: host, User: "load"}
}

// templates syncs the two starting states once each, from a server of the
// old release and one of the new: folders with the client's state, which
// the scenarios' folders are hard-linked copies of.
func (l *load) templates(ctx context.Context) error {
	l.tmplOld, l.tmplNew = filepath.Join(l.run, "tmpl-old"), filepath.Join(l.run, "tmpl-new")
	for _, t := range []struct{ dir, tree, build, tmpl string }{
		{l.oldDir, "old", oldBuild, l.tmplOld},
		{l.newDir, "new", newBuild, l.tmplNew},
	} {
		ini, err := l.writeINI("template-"+t.tree, t.dir, t.build, "")
		if err != nil {
			return err
		}
		srv, err := l.startServer(ctx, "template-"+t.tree, ini)
		if err != nil {
			return err
		}
		t0 := time.Now()
		_, err = smartclient.Sync(ctx, l.options(t.tmpl, srv.addr, "template"))
		srv.stop()
		if err != nil {
			return fmt.Errorf("syncing the template %s: %w\nserver log %s:\n%s", t.tmpl, err, srv.log, srv.logTail())
		}
		want, err := treeOf(t.dir)
		if err != nil {
			return err
		}
		if err := newHasher().compare(t.tmpl, want); err != nil {
			return fmt.Errorf("template %s: %w", t.tmpl, err)
		}
		step("template %s synced in %.2f s", t.tmpl, time.Since(t0).Seconds())
	}
	return nil
}

// copyInstall makes dest a copy of the template: hard links for the
// installed files (no sync writes a file in place: it writes new files and
// renames them), a real copy of the client's state, and a client id of its
// own, as each workstation has.
func copyInstall(ctx context.Context, tmpl, dest string) error {
	if _, err := command(ctx, "", "cp", "-al", tmpl, dest); err != nil {
		return err
	}
	meta := filepath.Join(dest, ".smartclient")
	if err := os.RemoveAll(meta); err != nil {
		return err
	}
	if _, err := command(ctx, "", "cp", "-a", filepath.Join(tmpl, ".smartclient"), meta); err != nil {
		return err
	}
	return writeClientID(dest)
}

func writeClientID(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, ".smartclient"), 0o755); err != nil {
		return err
	}
	id := make([]byte, 16)
	rand.Read(id)
	return os.WriteFile(filepath.Join(dir, filepath.FromSlash(smartclient.ClientIDFile)), []byte(hex.EncodeToString(id)+"\n"), 0o644)
}
