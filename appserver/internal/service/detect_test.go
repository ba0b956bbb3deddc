package service

import (
	"testing"

	"github.com/erpupdate/smartsync/appserver/internal/handover"
)

// The manager kinds are the handover's, which the journal records.
var _ = [1]struct{}{}[len(Systemd)-len(handover.ManagerSystemd)]
var _ = [1]struct{}{}[len(Windows)-len(handover.ManagerWindows)]

func TestDetect(t *testing.T) {
	const v2 = "0::/system.slice/erp.service\n"
	const v1 = "12:pids:/system.slice/erp.service\n1:name=systemd:/system.slice/erp.service\n"
	for _, tc := range []struct {
		name, flag, goos string
		env              map[string]string
		cgroup           string
		interactive      bool
		want             string
	}{
		{"terminal", "", "linux", nil, "0::/user.slice/session-1.scope\n", true, "none (started from a terminal or a script)"},
		{"systemd by INVOCATION_ID, cgroup v2", "", "linux", map[string]string{"INVOCATION_ID": "abc"}, v2, false, "systemd unit erp.service"},
		{"systemd by NOTIFY_SOCKET, cgroup v1", "", "linux", map[string]string{"NOTIFY_SOCKET": "/run/systemd/notify"}, v1, true, "systemd unit erp.service"},
		{"the cgroup wins over the flag", "appserver", "linux", map[string]string{"INVOCATION_ID": "abc"}, v2, false, "systemd unit erp.service"},
		{"no cgroup: the flag", "appserver", "linux", map[string]string{"INVOCATION_ID": "abc"}, "", false, "systemd unit appserver.service"},
		{"child of PID 1 without systemd's variables", "", "linux", nil, "0::/\n", false, "none (started from a terminal or a script)"},
		{"Windows service", "erp", "windows", nil, "", false, "Windows service erp"},
		{"Windows console", "erp", "windows", nil, "", true, "none (started from a terminal or a script)"},
		{"launchd", "erp", "darwin", nil, "", false, "launchd job erp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := detect(tc.flag, tc.goos, func(k string) string { return tc.env[k] },
				func() string { return tc.cgroup }, func() bool { return tc.interactive })
			if got.String() != tc.want {
				t.Errorf("got %q (%+v), want %q", got, got, tc.want)
			}
		})
	}
}
