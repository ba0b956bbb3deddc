package index

import (
	"io/fs"
	"os"
	"unsafe"

	"golang.org/x/sys/windows"
)

// statID returns the file index and change time of the file rel of root:
// Windows keeps both, but a FileInfo from a folder listing or a stat
// carries neither, so the file is opened (for its attributes only). With
// them, a file replaced by another of the same size and mtime, or
// rewritten in place with its mtime put back, is hashed again, as on
// Linux (before, the Windows hash cache was keyed by size and mtime
// alone, and such a file was served with its old hash).
func statID(root *os.Root, rel string, fi fs.FileInfo) (uint64, int64) {
	f, err := root.Open(rel)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	return handleID(f, fi)
}

// fileBasicInfo is FILE_BASIC_INFO.
type fileBasicInfo struct {
	CreationTime, LastAccessTime, LastWriteTime, ChangeTime int64
	FileAttributes                                          uint32
	_                                                       uint32
}

// handleID returns the file index and change time of the open file f; 0
// for what the system does not say.
func handleID(f *os.File, _ fs.FileInfo) (uint64, int64) {
	h := windows.Handle(f.Fd())
	var info windows.ByHandleFileInformation
	if windows.GetFileInformationByHandle(h, &info) != nil {
		return 0, 0
	}
	ino := uint64(info.FileIndexHigh)<<32 | uint64(info.FileIndexLow)
	var basic fileBasicInfo
	if windows.GetFileInformationByHandleEx(h, windows.FileBasicInfo, (*byte)(unsafe.Pointer(&basic)), uint32(unsafe.Sizeof(basic))) != nil || basic.ChangeTime == 0 {
		return ino, 0
	}
	// 100-nanosecond intervals since 1601, in nanoseconds since 1970.
	return ino, (basic.ChangeTime - 116444736000000000) * 100
}
