//go:build !linux

package smartclient

import "os"

// mapFile returns the content of the file at path, read into memory, and a
// function that does nothing (the Linux build maps the file instead, and
// unmaps it there).
func mapFile(path string) ([]byte, func(), error) {
	data, err := os.ReadFile(path)
	return data, func() {}, err
}
