//go:build !windows

package desktop

import "os"

// OpenNative is for Windows only: elsewhere it returns ErrUnsupported.
func OpenNative(onCancel func()) (Window, error) {
	return nil, ErrUnsupported
}

// Interactive says whether the process can show windows to a user: an X11
// or Wayland display is named in its environment.
func Interactive() bool {
	return os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != ""
}

// HasConsole is a Windows matter: elsewhere it is false.
func HasConsole() bool {
	return false
}
