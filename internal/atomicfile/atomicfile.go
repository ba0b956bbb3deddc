// Package atomicfile writes small files (state, caches, journals) so that a
// crash leaves either the old content or the new, never a torn file: write
// a temporary file beside the target, sync it, rename it over the target,
// then sync the folder, as restic's local backend does.
package atomicfile

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data atomically and durably.
func Write(path string, data []byte, perm os.FileMode) error {
	return WriteParts(path, perm, data)
}

// WriteParts is Write of the parts one after the other, which spares the
// caller a copy of them all in one slice.
func WriteParts(path string, perm os.FileMode, parts ...[]byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	for _, data := range parts {
		if _, err := f.Write(data); err != nil {
			return fmt.Errorf("writing %s: %w", tmp, err)
		}
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp, err)
	}
	if err := Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming %s: %w", tmp, err)
	}
	ok = true
	return SyncDir(dir)
}

// SyncDir makes the entries of dir durable. Folders cannot be synced on
// Windows, where a rename is durable once it returns, so errors from
// opening or syncing a folder there are ignored.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing folder %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !syncDirUnsupported(err) {
		return fmt.Errorf("syncing folder %s: %w", dir, err)
	}
	return nil
}

// WriteJSON writes v as indented JSON to path with Write, making path's
// folder first: the small records (the server's self-update journal, its
// running and last outcome) that must be whole or absent after a crash.
func WriteJSON(path string, v any, perm os.FileMode) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return Write(path, append(data, '\n'), perm)
}

// ReadJSON reads a record WriteJSON wrote into v; an error names the file.
// The read is retried as Rename is: on Windows a file being renamed into
// place is refused for a moment with a sharing violation.
func ReadJSON(path string, v any) error {
	var data []byte
	err := retry(func() (err error) {
		data, err = os.ReadFile(path)
		return err
	})
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
