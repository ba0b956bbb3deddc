// Package service installs, controls and detects the appserver as an
// operating system service, through github.com/kardianos/service: a
// systemd unit on Linux, a Windows service, a launchd job on macOS.
//
// On systemd the unit is ours (see Unit): the server sends READY=1 once it
// answers a hello (Type=notify), and a self-update's helper runs in a
// transient unit of its own, outside the server's, so that stopping the
// server through systemctl does not stop the helper (see
// appserver/internal/handover).
//
// It imports nothing of the appserver; appserver and appserver/internal/cli
// import it.
package service

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	kservice "github.com/kardianos/service"
)

// DefaultName is the service's name when --name is not given: the unit
// appserver.service on systemd.
const DefaultName = "appserver"

// NameFlag is the server's hidden flag naming the service it runs as; the
// installed command line carries it, so that the running server knows its
// unit (or Windows service) by name.
const NameFlag = "service-name"

// LimitNOFILE is the unit's descriptor limit: 10,000 sessions held open
// need 10,000 sockets, plus files being served and the hash caches.
const LimitNOFILE = 65536

// Options describe the service to install or control.
type Options struct {
	Name   string // the service's name; "" for DefaultName
	Exe    string // the server's program, absolute; "" for this program
	Config string // AppServer.ini, absolute
	State  string // the state folder, absolute; "" for the server's default
}

// fill resolves the options' paths and defaults.
func (o Options) fill() (Options, error) {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if err := CheckName(o.Name); err != nil {
		return o, err
	}
	if o.Config == "" {
		return o, errors.New("service: --config is needed: the service runs the server with it")
	}
	if o.Exe == "" {
		exe, err := os.Executable()
		if err == nil {
			exe, err = filepath.EvalSymlinks(exe)
		}
		if err != nil {
			return o, fmt.Errorf("service: finding the server's program: %w", err)
		}
		o.Exe = exe
	}
	for _, p := range []*string{&o.Exe, &o.Config, &o.State} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return o, fmt.Errorf("service: %s: %w", *p, err)
		}
		*p = abs
	}
	return o, nil
}

// CheckName accepts names that are a valid systemd unit name and Windows
// service name alike.
func CheckName(name string) error {
	if len(name) > 200 {
		return fmt.Errorf("service: --name %.20q...: longer than 200 characters", name)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.@", r)
		if !ok {
			return fmt.Errorf("service: --name %q: only letters, digits and - _ . @ are allowed", name)
		}
	}
	return nil
}

// Args is the server's command line in the service, without the program.
func (o Options) Args() []string {
	args := []string{"--config", o.Config}
	if o.State != "" {
		args = append(args, "--state", o.State)
	}
	return append(args, "--"+NameFlag, o.Name)
}

// WorkDir is where the service's server runs: the configuration's folder,
// which AppServer.ini's relative paths are read from.
func (o Options) WorkDir() string { return filepath.Dir(o.Config) }

// kconfig is the service as kardianos/service installs it. On systemd the
// unit is ours, rendered in full by Unit and handed over as the
// SystemdScript option, so that install writes exactly what --dry-run
// prints.
func (o Options) kconfig() (*kservice.Config, error) {
	c := &kservice.Config{
		Name:             o.Name,
		DisplayName:      "SmartSync appserver (" + o.Name + ")",
		Description:      "Serves SmartClient update folders with " + o.Config,
		Executable:       o.Exe,
		Arguments:        o.Args(),
		WorkingDirectory: o.WorkDir(),
		Option: kservice.KeyValue{
			// Windows: start at boot, and restart after a failure as
			// systemd's Restart=on-failure does.
			"StartType":              "automatic",
			"OnFailure":              "restart",
			"OnFailureDelayDuration": "5s",
			"OnFailureResetPeriod":   600,
			// launchd: keep it running, start it at load.
			"KeepAlive": true,
			"RunAtLoad": true,
		},
	}
	if runtime.GOOS == "linux" {
		unit, err := Unit(o)
		if err != nil {
			return nil, err
		}
		c.Option["SystemdScript"] = unit
	}
	return c, nil
}

// noop is the kardianos Interface of a command that only controls the
// service.
type noop struct{}

func (noop) Start(kservice.Service) error { return nil }
func (noop) Stop(kservice.Service) error  { return nil }

// control is the kardianos service of o, for the commands that install or
// control it.
func (o Options) control() (kservice.Service, error) {
	o, err := o.fill()
	if err != nil {
		return nil, err
	}
	c, err := o.kconfig()
	if err != nil {
		return nil, err
	}
	s, err := kservice.New(noop{}, c)
	if err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	return s, nil
}

// UnitPath is where install writes the systemd unit of the service name.
func UnitPath(name string) string { return "/etc/systemd/system/" + name + ".service" }

// DryRun returns what Install would install, without installing: the
// systemd unit on Linux, a description elsewhere.
func DryRun(o Options) (string, error) {
	o, err := o.fill()
	if err != nil {
		return "", err
	}
	if runtime.GOOS == "linux" {
		unit, err := Unit(o)
		if err != nil {
			return "", err
		}
		return "# " + UnitPath(o.Name) + "\n" + unit, nil
	}
	return Describe(o, runtime.GOOS), nil
}

// Describe says in words what install does on goos.
func Describe(o Options, goos string) string {
	var b strings.Builder
	switch goos {
	case "windows":
		fmt.Fprintf(&b, "Windows service %s (%q), started automatically at boot, restarted 5 s after a failure,\n", o.Name, "SmartSync appserver ("+o.Name+")")
	case "darwin":
		fmt.Fprintf(&b, "launchd job /Library/LaunchDaemons/%s.plist, started at load and kept alive,\n", o.Name)
	default:
		fmt.Fprintf(&b, "service %s of this system's service manager,\n", o.Name)
	}
	fmt.Fprintf(&b, "running:  %s", o.Exe)
	for _, a := range o.Args() {
		fmt.Fprintf(&b, " %s", a)
	}
	fmt.Fprintf(&b, "\nin:       %s\n", o.WorkDir())
	return b.String()
}

// Install installs the service; on systemd it writes UnitPath, enables the
// unit and reloads systemd. It returns where it installed it.
func Install(o Options) (string, error) {
	s, err := o.control()
	if err != nil {
		return "", err
	}
	if err := s.Install(); err != nil {
		return "", fmt.Errorf("service: installing %s (%s): %w", o.name(), platform(s), err)
	}
	if err := afterInstall(o.name()); err != nil {
		// Installed all the same: only a failure's restart is missing.
		return where(o.name()) + " (warning: " + err.Error() + ")", nil
	}
	return where(o.name()), nil
}

func (o Options) name() string {
	if o.Name == "" {
		return DefaultName
	}
	return o.Name
}

func where(name string) string {
	switch runtime.GOOS {
	case "linux":
		if kservice.ChosenSystem() != nil && kservice.ChosenSystem().String() == "linux-systemd" {
			return "systemd unit " + UnitPath(name)
		}
		return "service " + name
	case "windows":
		return "Windows service " + name
	case "darwin":
		return "launchd job " + name
	}
	return "service " + name
}

// Uninstall removes the installed service.
func Uninstall(o Options) error {
	s, err := o.control()
	if err != nil {
		return err
	}
	if err := s.Uninstall(); err != nil {
		return fmt.Errorf("service: uninstalling %s (%s): %w", o.name(), platform(s), err)
	}
	return nil
}

// Start starts the installed service through the service manager; on
// systemd it returns once the server has sent READY=1, that is once it
// answers a hello.
func Start(o Options) error {
	s, err := o.control()
	if err != nil {
		return err
	}
	if err := s.Start(); err != nil {
		return fmt.Errorf("service: starting %s (%s): %w", o.name(), platform(s), err)
	}
	return nil
}

// Stop stops the service through the service manager.
func Stop(o Options) error {
	s, err := o.control()
	if err != nil {
		return err
	}
	if err := s.Stop(); err != nil {
		return fmt.Errorf("service: stopping %s (%s): %w", o.name(), platform(s), err)
	}
	return nil
}

// Status says whether the service is installed and running.
func Status(o Options) (string, error) {
	s, err := o.control()
	if err != nil {
		return "", err
	}
	st, err := s.Status()
	switch {
	case errors.Is(err, kservice.ErrNotInstalled):
		return o.name() + ": not installed", nil
	case err != nil:
		return "", fmt.Errorf("service: status of %s (%s): %w", o.name(), platform(s), err)
	case st == kservice.StatusRunning:
		return o.name() + ": running", nil
	case st == kservice.StatusStopped:
		return o.name() + ": installed, stopped", nil
	}
	return o.name() + ": state unknown", nil
}

// platform names the service manager kardianos/service chose, and on
// Linux says so when it is not systemd: the unit is systemd's.
func platform(s kservice.Service) string {
	p := s.Platform()
	if runtime.GOOS == "linux" && p != "linux-systemd" {
		comm, _ := os.ReadFile("/proc/1/comm")
		p += "; systemd is not running here, PID 1 is " + strings.TrimSpace(string(comm))
	}
	return p
}
