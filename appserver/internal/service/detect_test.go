package service

import (
	"strings"
	"testing"

	"github.com/erpupdate/smartsync/appserver/internal/handover"
)

// The manager kinds are the handover's, which the journal records.
var _ = [1]struct{}{}[len(Systemd)-len(handover.ManagerSystemd)]
var _ = [1]struct{}{}[len(Windows)-len(handover.ManagerWindows)]

func TestDetect(t *testing.T) {
	const v2 = "0::/system.slice/erp.service\n"
	const v1 = "12:pids:/system.slice/erp.service\n1:name=systemd:/system.slice/erp.service\n"
	const me = 4242
	for _, tc := range []struct {
		name, flag, goos string
		env              map[string]string
		ppid             int
		cgroup           string
		interactive      bool
		want             string
	}{
		{"terminal", "", "linux", nil, 100, "0::/user.slice/session-1.scope\n", true, "none (started from a terminal or a script)"},
		{"systemd's process, cgroup v2", "", "linux", map[string]string{"SYSTEMD_EXEC_PID": "4242", "INVOCATION_ID": "abc"}, 1, v2, false, "systemd unit erp.service"},
		{"systemd's process, cgroup v1", "", "linux", map[string]string{"SYSTEMD_EXEC_PID": "4242", "NOTIFY_SOCKET": "/run/systemd/notify"}, 1, v1, true, "systemd unit erp.service"},
		{"a child of a service's process", "", "linux", map[string]string{"SYSTEMD_EXEC_PID": "17", "INVOCATION_ID": "abc", "NOTIFY_SOCKET": "/run/systemd/notify"}, 17, v2, false, "none (started from a terminal or a script)"},
		{"systemd before 248: INVOCATION_ID and PID 1 as the parent", "", "linux", map[string]string{"INVOCATION_ID": "abc"}, 1, v2, false, "systemd unit erp.service"},
		{"systemd before 248: a child", "", "linux", map[string]string{"INVOCATION_ID": "abc"}, 17, v2, false, "none (started from a terminal or a script)"},
		{"the cgroup wins over the flag", "appserver", "linux", map[string]string{"SYSTEMD_EXEC_PID": "4242"}, 1, v2, false, "systemd unit erp.service"},
		{"no cgroup: the flag", "appserver", "linux", map[string]string{"SYSTEMD_EXEC_PID": "4242"}, 1, "", false, "systemd unit appserver.service"},
		{"child of PID 1 without systemd's variables", "", "linux", nil, 1, "0::/\n", false, "none (started from a terminal or a script)"},
		{"Windows service", "erp", "windows", nil, 0, "", false, "Windows service erp"},
		{"Windows console", "erp", "windows", nil, 0, "", true, "none (started from a terminal or a script)"},
		{"launchd", "erp", "darwin", nil, 1, "", false, "launchd job erp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := detect(tc.flag, tc.goos, func(k string) string { return tc.env[k] }, me, tc.ppid,
				func() string { return tc.cgroup }, func() bool { return tc.interactive })
			if got.String() != tc.want {
				t.Errorf("got %q (%+v), want %q", got, got, tc.want)
			}
		})
	}
}

// FuzzUnitOf: whatever /proc/self/cgroup holds, the unit found is one
// path element ending in .service, or none.
func FuzzUnitOf(f *testing.F) {
	for _, s := range []string{"0::/system.slice/erp.service\n", "12:pids:/system.slice/a.service\n1:name=systemd:/x/b.service\n", "", "::", "0::/a.service/b.scope", "0::/.service"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u := unitOf(s)
		if u != "" && (!strings.HasSuffix(u, ".service") || strings.ContainsAny(u, "/\n")) {
			t.Errorf("unitOf(%q) = %q", s, u)
		}
	})
}
