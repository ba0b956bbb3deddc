//go:build !windows

package atomicfile

func syncDirUnsupported(error) bool { return false }
