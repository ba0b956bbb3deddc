//go:build !windows

package desktop

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// OpenNative is for Windows only: elsewhere it returns ErrUnsupported.
func OpenNative(onCancel func()) (Window, error) {
	return nil, ErrUnsupported
}

// Interactive says whether the process can show windows to a user: the
// X11 or Wayland display its environment names answers. A DISPLAY left
// over from a session that has ended (a job on a display nobody is logged
// on to, a dead ssh -X forwarding) does not.
func Interactive() bool {
	return Reachable(os.Getenv("DISPLAY"), os.Getenv("WAYLAND_DISPLAY"), os.Getenv("XDG_RUNTIME_DIR"))
}

// Reachable says whether the X display named display (":0", ":0.0",
// "unix:1", "localhost:10.0", "/tmp/launch-x/org.xquartz:0") or the
// Wayland display named wayland (a socket's name in runtimeDir, or its
// path) accepts a connection.
func Reachable(display, wayland, runtimeDir string) bool {
	const timeout = 2 * time.Second
	dial := func(network, addr string) bool {
		c, err := net.DialTimeout(network, addr, timeout)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	if wayland != "" {
		path := wayland
		if !filepath.IsAbs(path) {
			path = filepath.Join(runtimeDir, wayland)
		}
		if (filepath.IsAbs(wayland) || runtimeDir != "") && dial("unix", path) {
			return true
		}
	}
	if display == "" {
		return false
	}
	if strings.HasPrefix(display, "/") { // a socket's path (XQuartz)
		return dial("unix", display)
	}
	i := strings.LastIndex(display, ":")
	if i < 0 {
		return false
	}
	host, num := display[:i], display[i+1:]
	if j := strings.Index(num, "."); j >= 0 {
		num = num[:j] // the screen
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return false
	}
	if host == "" || host == "unix" {
		sock := "/tmp/.X11-unix/X" + num
		// Linux X servers listen on an abstract socket of that name
		// as well.
		return dial("unix", sock) || dial("unix", "@"+sock)
	}
	return dial("tcp", net.JoinHostPort(strings.TrimPrefix(host, "tcp/"), strconv.Itoa(6000+n)))
}

// ConsoleBuild is a Windows matter (which of its two builds): elsewhere
// it is false.
func ConsoleBuild() bool {
	return false
}

// ownGroup starts cmd in a process group of its own, which killGroup ends
// whole: a zenity that is a wrapper script ends with what it started.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killGroup kills the process group of a started cmd.
func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Process.Kill()
	}
}

// Alert shows message in a failure dialog of its own, titled ErrorTitle,
// and returns once the user has closed it: for a failure that comes
// before a progress window or after it. zenityPath is the zenity that
// draws it.
func Alert(zenityPath, message string) error {
	if zenityPath == "" {
		return errors.New("desktop: no zenity program given")
	}
	var mu sync.Mutex
	_, err := runDialog(zenityPath, &mu, func() bool { return false }, map[*exec.Cmd]bool{},
		"--error", "--title="+ErrorTitle, "--text="+message)
	return err
}
