package index

import "github.com/erpupdate/smartsync/internal/releasemeta"

// ReleaseDigest returns the digest of the manifest's release as the
// publisher signs it (see internal/releasemeta): every entry as the wire
// sends it, modification times aside, and the post-install step. The
// server checks a signed statement with it, and the publisher's
// sign-update computes it, so that both read the folder through the same
// index.
func (m *Manifest) ReleaseDigest() releasemeta.Digest {
	d := releasemeta.NewDigester()
	for _, f := range m.Files {
		d.Add(releasemeta.Entry{Path: f.Path, Size: uint64(f.Size), Mode: uint32(f.Mode), Symlink: f.Target != "",
			Dir: f.Dir, Preserve: f.Preserve, Hash: f.Hash, Target: f.Target})
	}
	post := m.PostInstall()
	if post == "" {
		return d.Sum("", 0)
	}
	return d.Sum(post, m.rel.PostInstallTimeout)
}
