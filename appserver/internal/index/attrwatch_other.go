//go:build !windows

package index

// An attrWatch is, on Windows, one more watch of the update folder for a
// change of attributes, which fsnotify's Windows backend does not ask for
// (see attrwatch_windows.go). Elsewhere fsnotify reports such a change
// (inotify IN_ATTRIB, kqueue NOTE_ATTRIB) and there is none.
type attrWatch struct{}

func startAttrWatch(string, func()) (*attrWatch, error) { return nil, nil }

func (*attrWatch) close() {}

func (*attrWatch) isEnded() bool { return false }
