package cli

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestServiceInstallDryRun: --dry-run prints the systemd unit that would
// be installed (on Linux; a description elsewhere) with absolute paths,
// and installs nothing; a bad configuration or name is refused with exit 2
// before anything is installed.
func TestServiceInstallDryRun(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "linux_upd"), 0o755); err != nil {
		t.Fatal(err)
	}
	ini := filepath.Join(dir, "AppServer.ini")
	if err := os.WriteFile(ini, []byte("[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nPathLinux=linux_upd\nBuild=7.00.240501A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	code, out, errOut := run(t, "", "service", "install", "--config", "AppServer.ini", "--state", "st", "--dry-run")
	if code != ExitOK {
		t.Fatalf("service install --dry-run: exit %d, %q, %q", code, out, errOut)
	}
	want := []string{"--config " + ini, "--state " + filepath.Join(dir, "st"), "--service-name appserver"}
	if runtime.GOOS == "linux" {
		want = append(want, "# /etc/systemd/system/appserver.service\n", "\nType=notify\n", "\nRestart=on-failure\n", "\nWorkingDirectory="+dir+"\n")
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("the dry run does not show %q:\n%s", w, out)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"service", "install", "--config", "missing.ini", "--dry-run"}, "missing.ini"},
		{[]string{"service", "install", "--config", "AppServer.ini", "--name", "a b", "--dry-run"}, `--name "a b"`},
		{[]string{"service", "restart", "--config", "AppServer.ini"}, `unknown command "restart"`},
		{[]string{"service"}, "missing command"},
	} {
		code, _, errOut := run(t, "", tc.args...)
		if code != ExitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, %q; want exit 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}
