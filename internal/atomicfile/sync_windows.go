//go:build windows

package atomicfile

// Windows cannot flush a folder handle; a completed rename is durable.
func syncDirUnsupported(error) bool { return true }
