package appserver

import (
	"fmt"
	"os"
)

// osPathError names both folders of a failed exchange.
type osPathError struct {
	op, a, b string
	err      error
}

func (e *osPathError) Error() string { return fmt.Sprintf("%s %s and %s: %v", e.op, e.a, e.b, e.err) }
func (e *osPathError) Unwrap() error { return e.err }

// exchangeByRenames swaps a and b with three renames through a temporary
// name beside them.
func exchangeByRenames(a, b string) error {
	tmp := a + ".exchange"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.Rename(a, tmp); err != nil {
		return &osPathError{"exchange", a, b, err}
	}
	if err := os.Rename(b, a); err != nil {
		os.Rename(tmp, a)
		return &osPathError{"exchange", a, b, err}
	}
	if err := os.Rename(tmp, b); err != nil {
		return &osPathError{"exchange", a, b, err}
	}
	return nil
}
