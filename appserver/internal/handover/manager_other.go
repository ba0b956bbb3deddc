//go:build !windows && !darwin

package handover

// kserviceManager: systemd is driven with systemctl (see systemdUnit);
// other systems' managers are not driven.
func kserviceManager(string) Manager { return nil }
