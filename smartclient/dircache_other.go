//go:build !unix

package smartclient

// renameAt and linkAt have no portable single-call form: the caller
// renames or links through the install's root.
func (d disk) renameAt(a, b string) (bool, error) { return false, nil }
func (d disk) linkAt(a, b string) (bool, error)   { return false, nil }
