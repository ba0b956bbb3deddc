package atomicfile

import (
	"math/rand/v2"
	"os"
	"time"
)

// retryFor is how long Rename and Remove go on retrying an error
// isRetryable accepts: on Windows, another process (the server reading a
// file a publish renames onto, a patcher reading an object a prune
// removes) holds the file open for a moment, as cmd/go's internal
// robustio describes.
const retryFor = time.Second

// isRetryable says whether err is a transient error of another process
// holding the file; it is false on every OS but Windows. Tests replace it.
var isRetryable = isSharingError

// retry calls op until it succeeds, fails with an error isRetryable does
// not accept, or retryFor has passed since the first failure, sleeping a
// short random time between attempts (as robustio does).
func retry(op func() error) error {
	var start time.Time
	nextSleep := time.Millisecond
	for {
		err := op()
		if err == nil || !isRetryable(err) {
			return err
		}
		if start.IsZero() {
			start = time.Now()
		} else if time.Since(start)+nextSleep >= retryFor {
			return err
		}
		time.Sleep(nextSleep)
		nextSleep += time.Duration(rand.Int64N(int64(nextSleep)))
	}
}

// Rename is os.Rename, retried for about a second on Windows while
// another process holds oldpath or newpath open without sharing its
// deletion.
func Rename(oldpath, newpath string) error {
	return retry(func() error { return os.Rename(oldpath, newpath) })
}

// Remove is os.Remove, retried as Rename is. A file already gone is not
// an error of Remove's retries but is returned as os.Remove returns it.
func Remove(name string) error {
	return retry(func() error { return os.Remove(name) })
}
