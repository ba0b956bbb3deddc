//go:build !windows

package service

// afterInstall has nothing to add outside Windows.
func afterInstall(string) error { return nil }
