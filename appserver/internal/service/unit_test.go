package service

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestUnit checks the key lines of the systemd unit: a notify service,
// restarted on failure only, started with absolute paths, with room for
// 10,000 sessions and a KillMode that lets the server drain.
func TestUnit(t *testing.T) {
	linuxOnly(t)
	for _, tc := range []struct {
		name string
		o    Options
		want []string // whole lines
		not  []string // substrings that must not be there
	}{
		{
			name: "config only",
			o:    Options{Exe: "/opt/appserver/appserver", Config: "/opt/appserver/AppServer.ini"},
			want: []string{
				"[Service]",
				"Type=notify",
				"NotifyAccess=main",
				"ExecStart=/opt/appserver/appserver --config /opt/appserver/AppServer.ini --service-name appserver",
				"ExecReload=/bin/kill -HUP $MAINPID",
				"WorkingDirectory=/opt/appserver",
				"Restart=on-failure",
				"RestartSec=5s",
				"KillMode=mixed",
				"LimitNOFILE=65536",
				"ConditionFileIsExecutable=/opt/appserver/appserver",
				"After=network-online.target",
				"WantedBy=multi-user.target",
			},
			not: []string{"--state", "Restart=always", "KillMode=process", "{{"},
		},
		{
			name: "state and name",
			o:    Options{Name: "erp-updates", Exe: "/opt/appserver/appserver", Config: "/etc/erp/AppServer.ini", State: "/var/lib/appserver"},
			want: []string{
				"ExecStart=/opt/appserver/appserver --config /etc/erp/AppServer.ini --state /var/lib/appserver --service-name erp-updates",
				"WorkingDirectory=/etc/erp",
				"Description=SmartSync appserver (erp-updates)",
			},
		},
		{
			name: "spaces, quotes, percent and dollar",
			o:    Options{Exe: "/opt/app server/appserver", Config: "/srv/100% \"x\"/$HOME.ini"},
			want: []string{
				`ExecStart="/opt/app server/appserver" --config "/srv/100%% \"x\"/$$HOME.ini" --service-name appserver`,
				`WorkingDirectory=/srv/100%% "x"`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unit, err := Unit(tc.o)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(unit, "\n")
			for _, w := range tc.want {
				if !contains(lines, w) {
					t.Errorf("no line %q in the unit:\n%s", w, unit)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(unit, n) {
					t.Errorf("the unit holds %q:\n%s", n, unit)
				}
			}
		})
	}
}

func contains(lines []string, l string) bool {
	for _, x := range lines {
		if x == l {
			return true
		}
	}
	return false
}

// TestUnitRefusesBadInput: what cannot be put in a unit is refused with
// its name, not written into a unit systemd would misread.
func TestUnitRefusesBadInput(t *testing.T) {
	linuxOnly(t)
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Exe: "/a/appserver", Config: "/a/App\nServer.ini"}, "cannot be put in a unit"},
		{Options{Exe: "/a/appserver", Config: "/a/{{x}}.ini"}, "cannot be put in a unit"},
		{Options{Name: "app server", Exe: "/a/appserver", Config: "/a/AppServer.ini"}, `--name "app server": only letters`},
		{Options{Name: "x/../y", Exe: "/a/appserver", Config: "/a/AppServer.ini"}, "only letters"},
		{Options{Exe: "/a/appserver"}, "--config is needed"},
	} {
		_, err := Unit(tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Unit(%+v): %v, want an error with %q", tc.o, err, tc.want)
		}
	}
}

// TestUnitVerifies runs systemd-analyze verify on the unit, with a real
// program and configuration, where the tool is installed.
func TestUnitVerifies(t *testing.T) {
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil || runtime.GOOS != "linux" {
		t.Skip("systemd-analyze is not installed (apt-get install systemd): the unit's syntax is not verified")
	}
	dir := filepath.Join(t.TempDir(), "app 1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "appserver")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "AppServer.ini")
	os.WriteFile(cfg, nil, 0o644)
	unit, err := Unit(Options{Exe: exe, Config: cfg, State: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "appserver.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "verify", "--man=no", path).CombinedOutput()
	// Outside a booted systemd, verify may complain of the machine (no
	// /run/systemd, no dbus) but never of the unit: only lines naming the
	// unit file count.
	var bad []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "appserver.service") {
			bad = append(bad, l)
		}
	}
	if len(bad) > 0 {
		t.Errorf("systemd-analyze verify %s (%v):\n%s\nunit:\n%s", path, err, out, unit)
	}
	t.Logf("systemd-analyze verify: %v\n%s", err, out)
}

// TestDryRunIsWhatInstallWrites: --dry-run prints the unit kardianos/service
// is given to write, on Linux, and a description elsewhere.
func TestDryRunIsWhatInstallWrites(t *testing.T) {
	dir := t.TempDir()
	o := Options{Exe: filepath.Join(dir, "appserver"), Config: filepath.Join(dir, "AppServer.ini")}
	out, err := DryRun(o)
	if err != nil {
		t.Fatal(err)
	}
	full, _ := o.fill()
	kc, err := full.kconfig()
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS == "linux" {
		script, _ := kc.Option["SystemdScript"].(string)
		if want := "# " + UnitPath("appserver") + "\n" + script; out != want || !strings.Contains(script, "Type=notify") {
			t.Errorf("--dry-run printed\n%s\nwhile install is given\n%s", out, script)
		}
	}
	for _, goos := range []string{"windows", "darwin"} {
		d := Describe(full, goos)
		if !strings.Contains(d, o.Exe+" --config "+o.Config+" --service-name appserver") {
			t.Errorf("%s: the description does not give the command line:\n%s", goos, d)
		}
	}
}

// linuxOnly skips a test of the systemd unit elsewhere, where the paths
// it takes are not Linux paths.
func linuxOnly(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("a systemd unit, with Linux paths, is made on Linux only")
	}
}
