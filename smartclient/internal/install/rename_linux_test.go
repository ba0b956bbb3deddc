package install

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRenameFresh: the switch's one-call rename moves a staged file only
// where nothing is, and leaves every other case to the looking rename.
func TestRenameFresh(t *testing.T) {
	tests := []struct {
		name     string
		existing string // content already at the target, "" for none
		staged   bool   // whether the staged file is there
		wantDone bool
	}{
		{name: "new file", staged: true, wantDone: true},
		{name: "replaces a file", existing: "old", staged: true},
		{name: "staged file gone", staged: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, p := range []string{"stage/sub", "sub"} {
				if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if tc.staged {
				writeFile(t, dir, "stage/sub/f", "new")
			}
			if tc.existing != "" {
				writeFile(t, dir, "sub/f", tc.existing)
			}
			d := openCachedDisk(t, dir)
			done, err := d.RenameFresh("stage/sub/f", "sub/f")
			if err != nil || done != tc.wantDone {
				t.Fatalf("RenameFresh = %v, %v; want %v", done, err, tc.wantDone)
			}
			got, err := os.ReadFile(filepath.Join(dir, "sub", "f"))
			want := tc.existing
			if done {
				want = "new"
			}
			if want == "" {
				if !os.IsNotExist(err) {
					t.Errorf("sub/f: %q, %v; want none", got, err)
				}
			} else if string(got) != want {
				t.Errorf("sub/f reads %q, %v; want %q", got, err, want)
			}
		})
	}
}
