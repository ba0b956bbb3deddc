//go:build !unix && !windows

package smartclient

func isLocked(error) bool { return false }
