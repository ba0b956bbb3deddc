//go:build linux

package install

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// MapFile returns the content of the file at path, mapped read-only with
// its pages taken from the page cache in one call, and the function that
// unmaps it, after which the content must not be touched.
//
// A no-op check reads the whole state file, 1.6 MB for 20,000 files, in a
// fresh process: read(2) copies it into memory that the process touches
// for the first time, and on a virtual machine each new page costs a
// fault of many microseconds. A mapping shares the page cache's pages
// instead: measured in a fresh process, reading took 8 ms and the first
// pass over what was read 5 ms; mapping took 0.3 ms and the first pass
// 1 ms.
//
// The state file is only ever replaced by a rename, which leaves a mapping
// of the old file intact. A file truncated in place by another program, or
// a page the disk fails to read, is an error where the state is read (see
// the state package's parseMapped); the same after that first read, while
// the mapping lasts (until the plan is made), would stop the client on a
// bus error before it writes anything.
func MapFile(path string) ([]byte, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := fi.Size()
	if size == 0 || !fi.Mode().IsRegular() || size != int64(int(size)) {
		data, err := os.ReadFile(path)
		return data, func() {}, err
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_POPULATE)
	if err != nil {
		return nil, nil, &os.PathError{Op: "mmap", Path: path, Err: err}
	}
	return data, func() {
		if err := unix.Munmap(data); err != nil {
			panic(fmt.Sprintf("smartclient: unmapping %s: %v", path, err))
		}
	}, nil
}
