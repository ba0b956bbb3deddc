//go:build !windows

package journal

import (
	"context"
	"os/exec"
)

// stepCommand is the command that runs the post-install program at path:
// the program itself (a script starts with its #! line).
func stepCommand(ctx context.Context, path string) (*exec.Cmd, error) {
	return exec.CommandContext(ctx, path), nil
}
