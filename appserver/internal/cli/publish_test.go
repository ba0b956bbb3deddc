package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPublishReleasesRollout runs the commands an administrator types:
// publish two releases (the second signed), list them, ask the rollout's
// status, refuse a release clients could not hold, and name what is
// missing from a command line.
func TestPublishReleasesRollout(t *testing.T) {
	dir := t.TempDir()
	upd := filepath.Join(dir, "linux_upd")
	src := filepath.Join(dir, "next")
	for _, d := range []string{upd, src} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(src, "app"), []byte("v2"), 0o755)
	ini := filepath.Join(dir, "AppServer.ini")
	os.WriteFile(ini, []byte("[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nPathLinux=linux_upd\nBuild=7.00.240501A\n[ROLLOUT]\nPilot=lab-*\n"), 0o644)
	key := filepath.Join(dir, "publisher.key")
	if code, _, errb := run(t, "", "release", "keygen", "--out", key); code != ExitOK {
		t.Fatalf("keygen: %d %s", code, errb)
	}

	code, out, errb := run(t, "", "publish", "--config", ini, "--os", "linux", "--build", "7.00.240601A", src)
	if code != ExitOK || !strings.Contains(out, "Published release 1 of linux: build 7.00.240601A, 1 files") || !strings.Contains(out, "Unsigned") {
		t.Fatalf("publish: exit %d\n%s%s", code, out, errb)
	}
	os.WriteFile(filepath.Join(src, "app"), []byte("v3"), 0o755)
	code, out, errb = run(t, "", "publish", "--config", ini, "--os", "linux", "--build", "7.00.240701A", "--key", key, src)
	if code != ExitOK || !strings.Contains(out, "Published release 2") || !strings.Contains(out, "Signed by key ID") || !strings.Contains(out, "replaces release 1") {
		t.Fatalf("publish --key: exit %d\n%s%s", code, out, errb)
	}
	code, out, _ = run(t, "", "releases", "--config", ini)
	if code != ExitOK || !strings.Contains(out, "7.00.240601A") || !strings.Contains(out, "7.00.240701A") || !strings.Contains(out, "CLIENTS") || strings.Count(out, "\n") != 3 {
		t.Errorf("releases: exit %d\n%s", code, out)
	}
	code, out, errb = run(t, "", "rollout", "status", "--config", ini)
	if code != ExitOK || !strings.HasPrefix(out, "linux: ") {
		t.Errorf("rollout status: exit %d\n%s%s", code, out, errb)
	}

	// The release served again: nothing to publish, unless --key signs
	// it anew as release 3.
	code, out, errb = run(t, "", "publish", "--config", ini, "--os", "linux", "--build", "7.00.240701A", src)
	if code != ExitOK || !strings.Contains(out, "nothing to publish") {
		t.Errorf("publish of the release served, without --key: exit %d\n%s%s", code, out, errb)
	}
	code, out, errb = run(t, "", "publish", "--config", ini, "--os", "linux", "--build", "7.00.240701A", "--key", key, src)
	if code != ExitOK || !strings.Contains(out, "re-signed as release 3") || !strings.Contains(out, "Published release 3") || !strings.Contains(out, "Signed by key ID") {
		t.Errorf("publish of the release served, with --key: exit %d\n%s%s", code, out, errb)
	}
	// Without --build, the build is [UPDATE] Build's (older: --rollback).
	os.WriteFile(filepath.Join(src, "app"), []byte("v1 again"), 0o755)
	code, out, errb = run(t, "", "publish", "--config", ini, "--os", "linux", "--rollback", src)
	if code != ExitOK || !strings.Contains(out, "No --build: the release is build 7.00.240501A, AppServer.ini's [UPDATE] Build.") || !strings.Contains(out, "Published release 4") {
		t.Errorf("publish without --build: exit %d\n%s%s", code, out, errb)
	}

	// A release the clients would refuse, or a command line that lacks
	// what publish needs.
	bad := filepath.Join(dir, "bad")
	os.MkdirAll(bad, 0o755)
	os.WriteFile(filepath.Join(bad, "EVIL~1.TXT"), []byte("x"), 0o644) // an 8.3-style name, refused by every client
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"publish", "--config", ini, "--os", "linux", "--build", "7.00.240801A", bad}, ExitFailed, "EVIL~1.TXT"},
		{[]string{"publish", "--config", ini, src}, ExitUsage, "needs --os"},
		{[]string{"publish", "--config", ini, "--os", "linux", "--build", "7.00.240801A"}, ExitUsage, "SOURCE"},
		{[]string{"rollout", "halt", "--config", ini}, ExitUsage, "needs --os"},
	} {
		code, _, errb := run(t, "", tc.args...)
		if code != tc.code || !strings.Contains(errb, tc.want) {
			t.Errorf("%v: exit %d, %q; want %d naming %q", tc.args, code, errb, tc.code, tc.want)
		}
	}
}
