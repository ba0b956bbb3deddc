package index

// removeByPath is false here: fsnotify's Windows backend finds the watch
// to remove by the file ID of the folder its path names now. When a
// watched folder was replaced, or moved away and so renamed, its path
// names another folder or none, the removal fails, and the watch, with the
// open handle it holds, would stay on the old folder for as long as the
// server runs: every change to the old release would cost a scan, and the
// old folders could not be removed for good (a folder with an open handle
// on it is only marked for deletion where the volume lacks POSIX delete
// semantics). rewatch makes a new watcher instead.
const removeByPath = false
