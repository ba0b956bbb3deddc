//go:build !unix && !windows

package install

func isLocked(error) bool { return false }
