// Package buildinfo says which build of a program is running, from the
// information the Go toolchain stamps into every binary: the module version
// (set by go install), the commit and whether the tree was modified (set by
// go build in a git checkout, as make build does), and the Go version.
//
// It imports only the standard library.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// String is the --version line of a program: its version, commit and Go
// version, e.g. "v1.2.0 (commit 44f7cb6a1b2c, 2026-12-06T00:18:35Z) go1.26.8 linux/amd64".
func String() string {
	version, commit, when, modified := "(devel)", "", "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" {
			version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	out := version
	if commit != "" {
		if len(commit) > 12 {
			commit = commit[:12]
		}
		if modified {
			commit += "+modified"
		}
		if when != "" {
			commit += ", " + when
		}
		out += " (commit " + commit + ")"
	} else {
		out += " (commit unknown)"
	}
	return fmt.Sprintf("%s %s %s/%s", out, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
