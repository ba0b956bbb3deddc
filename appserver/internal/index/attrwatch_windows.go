package index

import (
	"os"
	"sync/atomic"

	"golang.org/x/sys/windows"
)

// An attrWatch watches the update folder and everything below it, with
// one ReadDirectoryChangesW on the folder's handle, for a change of
// attributes, which fsnotify does not ask for: its Windows backend asks for
// FILE_NOTIFY_CHANGE_FILE_NAME, _DIR_NAME and _LAST_WRITE only, and
// Windows reports a change of a file's read-only attribute, which is its
// mode in the manifest, under FILE_NOTIFY_CHANGE_ATTRIBUTES only. Wine
// reports there a change of a file's times (SetFileTime) too.
//
// It calls changed at every report, and once more when it ends for any
// reason but close. Its only handle is on the folder itself, which it
// opens sharing read, write and delete, as fsnotify does.
type attrWatch struct {
	h     windows.Handle
	io    windows.Handle // the event of ov
	stop  windows.Handle // set by close
	ov    windows.Overlapped
	buf   []byte // the reports; their content does not matter
	done  chan struct{}
	ended atomic.Bool
}

// startAttrWatch starts watching dir and all below it for a change of
// attributes.
func startAttrWatch(dir string, changed func()) (*attrWatch, error) {
	p, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return nil, err
	}
	h, err := windows.CreateFile(p, windows.FILE_LIST_DIRECTORY,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE, nil,
		windows.OPEN_EXISTING, windows.FILE_FLAG_BACKUP_SEMANTICS|windows.FILE_FLAG_OVERLAPPED, 0)
	if err != nil {
		return nil, &os.PathError{Op: "CreateFile", Path: dir, Err: err}
	}
	a := &attrWatch{h: h, buf: make([]byte, 4096), done: make(chan struct{})}
	if a.io, err = windows.CreateEvent(nil, 1, 0, nil); err == nil {
		a.stop, err = windows.CreateEvent(nil, 1, 0, nil)
	}
	if err == nil {
		err = a.read()
	}
	if err != nil {
		a.release()
		return nil, os.NewSyscallError("ReadDirectoryChanges", err)
	}
	go a.run(changed)
	return a, nil
}

// read starts one ReadDirectoryChangesW.
func (a *attrWatch) read() error {
	windows.ResetEvent(a.io)
	a.ov = windows.Overlapped{HEvent: a.io}
	return windows.ReadDirectoryChanges(a.h, &a.buf[0], uint32(len(a.buf)), true,
		windows.FILE_NOTIFY_CHANGE_ATTRIBUTES, nil, &a.ov, 0)
}

func (a *attrWatch) run(changed func()) {
	defer close(a.done)
	defer a.release()
	for {
		ev, err := windows.WaitForMultipleObjects([]windows.Handle{a.io, a.stop}, false, windows.INFINITE)
		if err != nil || ev != windows.WAIT_OBJECT_0 {
			// Closed (or the wait failed): cancel the read and wait
			// for it to end, since it writes into a.ov and a.buf.
			windows.CancelIoEx(a.h, &a.ov)
			var n uint32
			windows.GetOverlappedResult(a.h, &a.ov, &n, true)
			if err != nil {
				a.end(changed)
			}
			return
		}
		var n uint32
		err = windows.GetOverlappedResult(a.h, &a.ov, &n, false)
		// n == 0: more reports than a.buf holds; the scan sees them all.
		changed()
		if err == nil {
			err = a.read()
		}
		if err != nil {
			// The folder is gone (ERROR_ACCESS_DENIED), or its volume.
			a.end(changed)
			return
		}
	}
}

// end marks the watch ended and calls changed, so that the next scan
// looks, and starts a new watch (see rewatch).
func (a *attrWatch) end(changed func()) {
	a.ended.Store(true)
	changed()
}

// release closes the handles.
func (a *attrWatch) release() {
	for _, h := range []windows.Handle{a.h, a.io, a.stop} {
		if h != 0 {
			windows.CloseHandle(h)
		}
	}
}

// close ends the watch and waits for its goroutine to end. It may be
// called on nil.
func (a *attrWatch) close() {
	if a == nil {
		return
	}
	windows.SetEvent(a.stop)
	<-a.done
}

// isEnded reports whether the watch ended by itself, the folder it
// watched gone. It may be called on nil.
func (a *attrWatch) isEnded() bool { return a != nil && a.ended.Load() }
