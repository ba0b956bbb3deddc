package handover

import (
	"fmt"
	"os"
	"runtime"
	"time"
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
	// A leftover is an installation an earlier switch was cut off with:
	// never remove it.
	if _, err := os.Lstat(tmp); err == nil {
		return fmt.Errorf("%s is left from an interrupted switch; put it back at %s or remove it", tmp, a)
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

// retryRename retries a rename that fails for a few seconds: on Windows an
// antivirus or indexer briefly holding a file in the folder makes it fail.
func retryRename(f func() error) error {
	var err error
	for i := range 10 {
		if err = f(); err == nil || runtime.GOOS != "windows" {
			return err
		}
		time.Sleep(time.Duration(i+1) * 100 * time.Millisecond)
	}
	return err
}
