//go:build !windows

package index

import "os"

// openFolder opens the update folder dir. Here an open folder can be
// renamed or removed, so os.OpenRoot does.
func openFolder(dir string) (*os.Root, error) { return os.OpenRoot(dir) }
