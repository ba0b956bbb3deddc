package service

import (
	"fmt"
	"strings"
)

// Unit renders the systemd unit of the service o. install hands it to
// kardianos/service as its SystemdScript, which writes it as it is: it
// holds no template action, only text.
//
//   - Type=notify: the server sends READY=1 once it answers a hello, so
//     that "systemctl start" (and a self-update's helper) returns when the
//     server serves, not when its process exists; STOPPING=1 when it
//     drains.
//   - Restart=on-failure, RestartSec=5s: a crash is restarted, a clean
//     stop (SIGTERM, or the exit of a server handing over to a
//     self-update) is not.
//   - KillMode=mixed: SIGTERM goes to the server alone, which drains its
//     sessions; whatever is left in the unit after TimeoutStopSec is
//     killed. The self-update helper is never in the unit: the server
//     starts it in a transient unit of its own (systemd-run), so that the
//     helper's "systemctl stop" of this unit does not stop the helper.
//   - LimitNOFILE=65536: one descriptor per session, 10,000 held open.
//   - TimeoutStartSec=5min: the first start hashes every update folder
//     before it answers.
func Unit(o Options) (string, error) {
	o, err := o.fill()
	if err != nil {
		return "", err
	}
	exec, err := execLine(o.Exe, o.Args())
	if err != nil {
		return "", err
	}
	wd, err := unitPath(o.WorkDir())
	if err != nil {
		return "", err
	}
	exe, err := unitPath(o.Exe)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Written by \"appserver service install\"; \"appserver service install --dry-run\" prints it.")
	w("[Unit]")
	w("Description=SmartSync appserver (%s)", strings.ReplaceAll(o.Name, "%", "%%"))
	w("After=network-online.target")
	w("Wants=network-online.target")
	w("ConditionFileIsExecutable=%s", exe)
	// Five failed starts within ten minutes (a release that does not
	// start, a bad configuration) stop the restarts: the unit is failed,
	// which "systemctl status" shows.
	w("StartLimitIntervalSec=10min")
	w("StartLimitBurst=5")
	w("")
	w("[Service]")
	w("Type=notify")
	w("NotifyAccess=main")
	w("ExecStart=%s", exec)
	// "systemctl reload": the server re-reads AppServer.ini on SIGHUP.
	w("ExecReload=/bin/kill -HUP $MAINPID")
	w("WorkingDirectory=%s", wd)
	w("Restart=on-failure")
	w("RestartSec=5s")
	w("TimeoutStartSec=5min")
	w("TimeoutStopSec=90s")
	w("KillMode=mixed")
	w("LimitNOFILE=%d", LimitNOFILE)
	w("")
	w("[Install]")
	w("WantedBy=multi-user.target")
	return b.String(), nil
}

// execLine quotes a command line for ExecStart: every word in double
// quotes when it needs them, with systemd's specifiers (%) and variables
// ($) escaped.
func execLine(exe string, args []string) (string, error) {
	words := append([]string{exe}, args...)
	for i, w := range words {
		if strings.ContainsAny(w, "\n\r\x00") || strings.Contains(w, "{{") {
			return "", fmt.Errorf("service: %q cannot be put in a unit's command line", w)
		}
		w = escapePercent(w)
		w = strings.ReplaceAll(w, "$", "$$")
		if w == "" || strings.ContainsAny(w, " \t\"'\\;") {
			w = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(w) + `"`
		}
		words[i] = w
	}
	return strings.Join(words, " "), nil
}

// unitPath checks and escapes a path for a unit setting that takes one
// path (WorkingDirectory, ConditionFileIsExecutable).
func unitPath(p string) (string, error) {
	if strings.ContainsAny(p, "\n\r\x00") || strings.Contains(p, "{{") {
		return "", fmt.Errorf("service: the path %q cannot be put in a unit", p)
	}
	if strings.HasPrefix(p, "-") || strings.HasPrefix(p, "!") || strings.HasPrefix(p, "|") {
		return "", fmt.Errorf("service: the path %q must be absolute", p)
	}
	return escapePercent(p), nil
}

func escapePercent(s string) string { return strings.ReplaceAll(s, "%", "%%") }
