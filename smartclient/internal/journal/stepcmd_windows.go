//go:build windows

package journal

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/windows"
)

// stepCommand is the command that runs the post-install program at path.
//
// A batch file (.cmd, .bat: what ERP vendors ship as post-install steps on
// Windows) is not a program: CreateProcess documents that it must be run
// through the command interpreter, and Windows' own undocumented fallback
// passes it on as `cmd /c "path"`, whose quotes cmd drops when the path
// holds ( ) & ^ (C:\Program Files (x86)\...), then failing at its first
// space. It is run explicitly by the cmd.exe of System32 (not %ComSpec%,
// which anyone may set) as `cmd.exe /d /s /c ""path""`: /s drops the outer
// pair of quotes only, /d leaves out the registry's AutoRun commands.
func stepCommand(ctx context.Context, path string) (*exec.Cmd, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".cmd", ".bat":
	default:
		return exec.CommandContext(ctx, path), nil
	}
	system, err := windows.GetSystemDirectory()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(system, "cmd.exe"))
	cmd.SysProcAttr = &windows.SysProcAttr{CmdLine: `cmd.exe /d /s /c ""` + path + `""`}
	return cmd, nil
}
