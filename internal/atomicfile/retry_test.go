package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// The retries are Windows's, whose sharing errors cannot be made on the
// other OSes; these tests stand a folder for the file another process
// holds open: a rename onto it, or the removal of it while not empty,
// fails until a goroutine removes or empties it.
func retryNotEmpty(t *testing.T) {
	t.Helper()
	old := isRetryable
	isRetryable = func(err error) bool {
		// Windows: ERROR_DIR_NOT_EMPTY (145), and ERROR_ACCESS_DENIED
		// for a rename onto a folder, which old accepts.
		var errno syscall.Errno
		winNotEmpty := runtime.GOOS == "windows" && errors.As(err, &errno) && errno == 145
		return old(err) || winNotEmpty || errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST)
	}
	t.Cleanup(func() { isRetryable = old })
}

// busyDir makes dir a folder that is not empty, and after d empties it
// (gone: removes it too); d < 0 leaves it.
func busyDir(t *testing.T, dir string, d time.Duration, gone bool) <-chan struct{} {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	held := filepath.Join(dir, "held")
	if err := os.WriteFile(held, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	if d < 0 {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		time.Sleep(d)
		os.Remove(held)
		if gone {
			os.Remove(dir)
		}
	}()
	return done
}

func TestWriteRetriesRenameWhileHeld(t *testing.T) {
	retryNotEmpty(t)
	path := filepath.Join(t.TempDir(), "current.json")
	// A rename onto a folder fails (EEXIST) until the folder goes.
	done := busyDir(t, path, 100*time.Millisecond, true)
	if err := Write(path, []byte("new"), 0o644); err != nil {
		t.Fatalf("Write while the target was held for 100 ms: %v", err)
	}
	<-done
	if got, err := os.ReadFile(path); err != nil || string(got) != "new" {
		t.Fatalf("read %q, %v", got, err)
	}
}

func TestRemoveRetriesWhileHeld(t *testing.T) {
	retryNotEmpty(t)
	dir := filepath.Join(t.TempDir(), "object")
	done := busyDir(t, dir, 100*time.Millisecond, false)
	if err := Remove(dir); err != nil {
		t.Fatalf("Remove while held for 100 ms: %v", err)
	}
	<-done
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("still there: %v", err)
	}
}

func TestRetryGivesUp(t *testing.T) {
	retryNotEmpty(t)
	dir := filepath.Join(t.TempDir(), "object")
	busyDir(t, dir, -1, false) // held for good
	start := time.Now()
	err := Remove(dir)
	if err == nil || !isRetryable(err) {
		t.Fatalf("Remove of a folder held for good: %v, want its error", err)
	}
	if d := time.Since(start); d < retryFor/2 {
		t.Errorf("gave up after %v, want about %v of retries", d, retryFor)
	}
}

func TestNoRetryOfOtherErrors(t *testing.T) {
	// Without retries (every OS's errors but Windows's sharing ones),
	// a failing rename fails at once.
	path := filepath.Join(t.TempDir(), "current.json")
	busyDir(t, path, -1, false)
	if err := Write(path, []byte("new"), 0o644); err == nil {
		t.Fatal("Write onto a folder that is not empty succeeded")
	}
	calls := 0
	err := retry(func() error { calls++; return os.ErrPermission })
	if calls != 1 || !errors.Is(err, os.ErrPermission) {
		t.Fatalf("%d calls, %v; want 1 call and its error", calls, err)
	}
}

func TestReadJSONRetriesWhileHeld(t *testing.T) {
	// A folder stands for a file being renamed into place: reading it
	// fails (EISDIR on Linux; a sharing violation in the real case on
	// Windows) until a goroutine puts the record there.
	path := filepath.Join(t.TempDir(), "answer.json")
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	_, dirErr := os.ReadFile(path)
	var pe *fs.PathError
	if !errors.As(dirErr, &pe) {
		t.Fatalf("reading a folder: %v, want a PathError", dirErr)
	}
	old := isRetryable
	// Not there for a moment too: the goroutine removes the folder
	// before it writes the file.
	isRetryable = func(err error) bool { return old(err) || errors.Is(err, pe.Err) || errors.Is(err, fs.ErrNotExist) }
	t.Cleanup(func() { isRetryable = old })
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(100 * time.Millisecond)
		os.Remove(path)
		os.WriteFile(path, []byte(`{"N": 7}`), 0o644)
	}()
	var v struct{ N int }
	err := ReadJSON(path, &v)
	<-done
	if err != nil || v.N != 7 {
		t.Fatalf("ReadJSON while the file was held for 100 ms: %+v, %v; want N 7", v, err)
	}
}
