//go:build !windows

package atomicfile

// isSharingError is false: only Windows refuses to rename or remove a
// file another process has open.
func isSharingError(error) bool { return false }
