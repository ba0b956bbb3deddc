package service

import (
	"os"
	"runtime"
	"strconv"
	"strings"

	kservice "github.com/kardianos/service"
)

// Manager kinds, as Detect reports them.
const (
	None    = ""
	Systemd = "systemd"
	Windows = "windows"
	Launchd = "launchd"
)

// Running is what the running server knows of the service manager that
// started it.
type Running struct {
	Manager string // None, Systemd, Windows or Launchd
	Name    string // the service's name (the unit without .service); "" when unknown
}

// Unit is the systemd unit's name, or "" when it is not known.
func (r Running) Unit() string {
	if r.Manager != Systemd || r.Name == "" {
		return ""
	}
	return r.Name + ".service"
}

// String is the "service:" line of the server's summary.
func (r Running) String() string {
	switch r.Manager {
	case Systemd:
		if r.Name == "" {
			return "systemd (unit name unknown)"
		}
		return "systemd unit " + r.Unit()
	case Windows:
		return "Windows service " + r.Name
	case Launchd:
		return "launchd job " + r.Name
	}
	return "none (started from a terminal or a script)"
}

// Detect tells whether this process runs as a service, and under which
// name: name is the --service-name the installed command line carries
// ("" when absent). On Linux systemd is told by the variables it sets for
// the process it starts (SYSTEMD_EXEC_PID, which must be this process:
// every child of a service inherits the variables; before systemd 248,
// INVOCATION_ID with systemd as the parent) and the unit by the process's
// cgroup; kardianos/service's Interactive() alone takes every process in
// a container for interactive, and every child of PID 1 for a service. On
// Windows it is whether the SCM runs the process (see Serve), or
// kardianos's (the Windows API's) answer.
func Detect(name string) Running {
	return detect(name, runtime.GOOS, os.Getenv, os.Getpid(), os.Getppid(), readCgroup, func() bool { return !underSCM.Load() && kservice.Interactive() })
}

func readCgroup() string {
	b, _ := os.ReadFile("/proc/self/cgroup")
	return string(b)
}

func detect(name, goos string, getenv func(string) string, pid, ppid int, cgroup func() string, interactive func() bool) Running {
	switch goos {
	case "linux":
		if exec := getenv("SYSTEMD_EXEC_PID"); exec != "" {
			if exec != strconv.Itoa(pid) {
				return Running{} // a child of a service's process
			}
		} else if getenv("INVOCATION_ID") == "" || ppid != 1 {
			return Running{}
		}
		if u := unitOf(cgroup()); u != "" {
			return Running{Manager: Systemd, Name: strings.TrimSuffix(u, ".service")}
		}
		if name != "" {
			return Running{Manager: Systemd, Name: name}
		}
		return Running{Manager: Systemd}
	case "windows":
		if !interactive() {
			if name == "" {
				name = DefaultName
			}
			return Running{Manager: Windows, Name: name}
		}
	case "darwin":
		if !interactive() && name != "" {
			return Running{Manager: Launchd, Name: name}
		}
	}
	return Running{}
}

// unitOf finds the service unit in /proc/self/cgroup's text: the last
// path element ending in .service ("0::/system.slice/appserver.service").
func unitOf(cgroup string) string {
	for _, line := range strings.Split(cgroup, "\n") {
		// "ID:CONTROLLERS:PATH", cgroup v2's with no controllers.
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		els := strings.Split(f[2], "/")
		for i := len(els) - 1; i >= 0; i-- {
			if strings.HasSuffix(els[i], ".service") {
				return els[i]
			}
		}
	}
	return ""
}
