package smartclient_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver"
	"github.com/erpupdate/smartsync/internal/releasecheck"
	"github.com/erpupdate/smartsync/internal/releasecheck/releasechecktest"
	"github.com/erpupdate/smartsync/internal/testtree"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest/manifesttest"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/zeebo/blake3"
)

// TestClientAndServerAgree runs one table of releases through both
// sides: the server's check of an update folder holding the release
// (appserver --check) and the client's reading of its manifest
// (manifest.Read). Each must accept what the table accepts and refuse
// what it refuses, for the same reason: a folder the server serves is
// one every client takes. A case this OS cannot hold as a folder (a name
// Windows refuses, two names a case-insensitive file system takes for
// one) is checked on the client's side only.
func TestClientAndServerAgree(t *testing.T) {
	base := t.TempDir()
	state := filepath.Join(base, "state")
	links := canLink(base)
	for i, c := range releasechecktest.Cases {
		t.Run(c.Name, func(t *testing.T) {
			entries := c.Parse()
			slices.SortFunc(entries, func(a, b releasechecktest.Entry) int { return strings.Compare(a.Path, b.Path) })

			// The client, reading the manifest a server would send.
			var files []manifest.File
			for _, e := range entries {
				switch {
				case e.Dir:
					files = append(files, manifest.File{Path: e.Path, Mode: 0o755, Dir: true})
				case e.Target != "":
					files = append(files, manifest.File{Path: e.Path, Size: int64(len(e.Target)), MtimeNs: 1, Mode: 0o777,
						Hash: blake3.Sum256([]byte(e.Target)), Target: e.Target})
				default:
					files = append(files, manifest.File{Path: e.Path, Size: 1, MtimeNs: 1, Mode: 0o644, Hash: blake3.Sum256([]byte("x"))})
				}
			}
			_, err := manifest.Read(syncproto.NewReader(bytes.NewReader(manifesttest.Frames(t, buildNew, files...))), manifest.Options{})
			switch {
			case c.Refused == "" && err != nil:
				t.Errorf("the client refuses it: %v", err)
			case c.Refused != "" && (!errors.Is(err, manifest.ErrBad) || !strings.Contains(err.Error(), c.Refused)):
				t.Errorf("the client says %v; want it refused for %q", err, c.Refused)
			}

			// The server, checking an update folder that holds it.
			folder := filepath.Join(base, fmt.Sprintf("case%02d", i))
			if why := writeRelease(folder, entries, links); why != "" {
				t.Skipf("checked on the client's side only: %s", why)
			}
			ini := filepath.Join(base, fmt.Sprintf("case%02d.ini", i))
			if err := os.WriteFile(ini, []byte("[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nPathLinux="+folder+"\nBuild="+buildNew+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			var out, errb testtree.Buffer
			err = appserver.RunServer(t.Context(), appserver.ServeOptions{Config: ini, State: state, Check: true}, &out, &errb)
			switch {
			case c.Refused == "" && err != nil:
				t.Errorf("appserver --check refuses it: %v", err)
			case c.Refused != "" && (err == nil || !strings.Contains(err.Error(), c.Refused)):
				t.Errorf("appserver --check says %v; want it refused for %q\n%s", err, c.Refused, out.String())
			}
		})
	}
}

// canLink reports whether symbolic links can be made in dir.
func canLink(dir string) bool {
	p := filepath.Join(dir, "link-probe")
	defer os.Remove(p)
	if os.Symlink("target", p) != nil {
		return false
	}
	got, err := os.Readlink(p)
	return err == nil && got == "target"
}

// writeRelease writes entries as the folder dir, or says why this OS
// cannot hold them.
func writeRelease(dir string, entries []releasechecktest.Entry, links bool) string {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err.Error()
	}
	for _, e := range entries {
		p := filepath.Join(dir, filepath.FromSlash(e.Path))
		if filepath.ToSlash(p) != filepath.ToSlash(dir)+"/"+e.Path {
			return fmt.Sprintf("%q is not a name here", e.Path)
		}
		if err := releasecheck.CheckPath(e.Path); err != nil && runtime.GOOS == "windows" {
			// Windows may refuse it, or open a device.
			return fmt.Sprintf("%q on Windows: %v", e.Path, err)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err.Error()
		}
		var err error
		switch {
		case e.Dir:
			err = os.Mkdir(p, 0o755)
		case e.Target != "":
			if !links {
				return "no symbolic links here"
			}
			err = os.Symlink(filepath.FromSlash(e.Target), p)
		default:
			err = os.WriteFile(p, []byte("x"), 0o644)
			if err == nil {
				err = os.Chtimes(p, testtree.OldTime, testtree.OldTime)
			}
		}
		if err != nil {
			return err.Error()
		}
	}
	// A case-insensitive or normalizing file system holds two of the
	// names as one, or changes a name.
	var found []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if rel, _ := filepath.Rel(dir, p); err == nil && rel != "." {
			found = append(found, filepath.ToSlash(rel))
		}
		return nil
	})
	for _, e := range entries {
		for p := e.Path; p != "."; p = filepath.ToSlash(filepath.Dir(p)) {
			if !slices.Contains(found, p) {
				return fmt.Sprintf("%q is not in the folder as written", p)
			}
		}
	}
	return ""
}

// TestServerKeepsServingTheLastGoodRelease: an update folder changed by
// hand on a running server into one every client would refuse (a file
// aux.log, the Windows device AUX) is not served: a client still syncs,
// and gets the release as it was, while the server's log names the file;
// once the file is gone, the folder as it is now is served.
func TestServerKeepsServingTheLastGoodRelease(t *testing.T) {
	s := newServer(t, defaultConf)
	folder := s.folders["linux"]
	before := tree(t, folder)
	first := t.TempDir()
	mustSync(t, s, first, yes)
	sameTree(t, tree(t, first), before, "the first sync")

	bad, why := "aux.log", "is the Windows device AUX"
	if runtime.GOOS == "windows" {
		// Windows would open the device.
		bad, why = "LIBNEW~1.SO", "8.3 short name"
	}
	ix := s.srv.Indexes()["linux"]
	good, err := ix.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{bad: "a log", "new.txt": "a new file"} {
		p := filepath.Join(folder, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		bump(t, p)
	}
	for deadline := time.Now().Add(5 * time.Second); ix.Refused() == nil; time.Sleep(5 * time.Millisecond) {
		if m, err := ix.Current(context.Background()); err != nil || m != good {
			t.Fatalf("the server took the changed folder: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not see the change within 5 s")
		}
	}
	s.log.waitFor(t, "level=ERROR")
	if log := s.log.String(); !strings.Contains(log, bad) || !strings.Contains(log, why) {
		t.Errorf("the server's log does not name %s:\n%s", bad, log)
	}

	second := t.TempDir()
	mustSync(t, s, second, yes)
	sameTree(t, tree(t, second), before, "a sync while the folder holds "+bad)

	if err := os.Remove(filepath.Join(folder, bad)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ix.Refused() != nil; time.Sleep(5 * time.Millisecond) {
		if _, err := ix.Current(context.Background()); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server still refuses the folder 5 s after the fix: %v", ix.Refused())
		}
	}
	mustSync(t, s, second, nil)
	sameTree(t, tree(t, second), tree(t, folder), "a sync once the folder is fixed")
	if _, err := os.Stat(filepath.Join(second, "new.txt")); err != nil {
		t.Errorf("new.txt did not arrive once the folder was fixed: %v", err)
	}
}
