//go:build !windows

package index

// removeByPath is true here: fsnotify finds the watch to remove by the
// path it was added with (inotify, kqueue), whatever that path names now.
const removeByPath = true
