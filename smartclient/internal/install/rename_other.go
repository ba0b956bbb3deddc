//go:build !linux

package install

// RenameFresh: the caller looks and renames.
func (d *Disk) RenameFresh(a, b string) (bool, error) { return false, nil }

// RenameFreshWorks: RenameFresh never renames here.
func RenameFreshWorks() bool { return false }
