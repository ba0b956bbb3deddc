//go:build !windows

package appserver

func acceptAgainOS(error) bool { return false }
