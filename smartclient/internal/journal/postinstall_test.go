package journal

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestPostInstallScript: a post-install script (a batch file on Windows,
// as vendors ship them there; a shell script elsewhere) runs in the install
// folder, even one whose path holds spaces and parentheses as
// C:\Program Files (x86) does; its exit code and its last output make the
// error of a failed step. The interpreter of a batch file is the system's
// own, whatever %ComSpec% says.
func TestPostInstallScript(t *testing.T) {
	t.Setenv("ComSpec", filepath.Join(t.TempDir(), "not-cmd.exe"))
	type script struct{ name, ok, failing string }
	s := script{"post.sh",
		"#!/bin/sh\necho upgrading\necho done > upgraded.txt\n",
		"#!/bin/sh\necho migrating tables\necho 'ERROR: database is locked' >&2\nexit 3\n"}
	if runtime.GOOS == "windows" {
		s = script{"post.cmd",
			"@echo off\r\necho upgrading\r\necho done> upgraded.txt\r\n",
			"@echo off\r\necho migrating tables\r\necho ERROR: database is locked 1>&2\r\nexit /b 3\r\n"}
	}
	for _, tc := range []struct {
		name, script string
		want         []string // in the error; none for success
	}{
		{"success", s.ok, nil},
		{"failure", s.failing, []string{s.name + ": exit status 3", "ERROR: database is locked"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "Program Files (x86)", "ERP & co")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, s.name), []byte(tc.script), 0o755); err != nil {
				t.Fatal(err)
			}
			err := runPostInstall(dir, &PostInstallStep{Path: s.name, Timeout: 30 * time.Second})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("the step failed: %v", err)
				}
				if b, err := os.ReadFile(filepath.Join(dir, "upgraded.txt")); err != nil || strings.TrimSpace(string(b)) != "done" {
					t.Errorf("the step did not write in the install folder: %q, %v", b, err)
				}
				return
			}
			if !errors.Is(err, ErrPostInstall) {
				t.Fatalf("error %v; want ErrPostInstall", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
