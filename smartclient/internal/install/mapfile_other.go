//go:build !linux

package install

import "os"

// MapFile returns the content of the file at path, read into memory, and a
// function that does nothing (the Linux build maps the file instead, and
// unmaps it there).
func MapFile(path string) ([]byte, func(), error) {
	data, err := os.ReadFile(path)
	return data, func() {}, err
}
