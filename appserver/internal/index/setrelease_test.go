package index

import (
	"testing"
	"time"
)

// TestIndexSetRelease shows that a new release (a reload of the server's
// configuration) is in the next manifest, with the files hashed before,
// while a manifest already handed out keeps the release it was made with.
func TestIndexSetRelease(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"smartclient": "client", "smartclient.ini": "x=1\n", "upgrade.sh": "#!/bin/sh\n"}, oldTime)
	ix := openIndex(t, dir, t.TempDir())
	before := current(t, ix)
	hashed := ix.Hashed

	ix.SetRelease(Release{Build: "7.00.240601A", Preserve: []string{"SmartClient.ini"}, PostInstall: "upgrade.sh", PostInstallTimeout: 30 * time.Second})
	after := current(t, ix)
	if after == before {
		t.Fatal("Current returned the manifest made before SetRelease")
	}
	if after.Build != "7.00.240601A" {
		t.Errorf("Build = %q after SetRelease, want 7.00.240601A", after.Build)
	}
	for _, f := range after.Files {
		if want := f.Path == "smartclient.ini"; f.Preserve != want {
			t.Errorf("%s: Preserve = %v, want %v", f.Path, f.Preserve, want)
		}
	}
	if got := after.PostInstall(); got != "upgrade.sh" {
		t.Errorf("PostInstall = %q, want upgrade.sh", got)
	}
	if h := after.Wire(); h.Digest == before.Wire().Digest {
		t.Error("the manifest's digest did not change with its release: clients would be told they are up to date")
	}
	if ix.Hashed != hashed {
		t.Errorf("SetRelease rehashed %d files; the folder did not change", ix.Hashed-hashed)
	}
	// The manifest handed out before is unchanged.
	if before.Build != "7.00.240501A" || before.PostInstall() != "" {
		t.Errorf("the earlier manifest changed: build %q, post-install %q", before.Build, before.PostInstall())
	}

	// Only the post-install timeout changes: a new manifest still.
	ix.SetRelease(Release{Build: "7.00.240601A", Preserve: []string{"SmartClient.ini"}, PostInstall: "upgrade.sh", PostInstallTimeout: time.Minute})
	if m := current(t, ix); m == after || m.Wire().Digest == after.Wire().Digest {
		t.Error("a new PostInstallTimeout left the manifest as it was")
	}
}
