package appserver

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/index"
	"github.com/erpupdate/smartsync/appserver/internal/releases"
	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/erpupdate/smartsync/internal/releasemeta"
	"github.com/erpupdate/smartsync/syncproto"
	"github.com/zeebo/blake3"
)

// The releases an OS is served from. An OS whose releases were published
// (appserver publish; see appserver/internal/releases) is served the
// release its pointer names, read from the store; one never published is
// served its update folder, under [UPDATE] Build, as before. Editing an
// update folder by hand still works after a publish: the most recent of
// the two wins. When a published release is first served, the server
// records the content of the OS's update folder beside it (folder.json);
// once the folder's content differs from that, the folder is served (under
// [UPDATE] Build, logged as a warning), until the next publish.

// published keeps the stored releases the server has loaded.
type published struct {
	store *releases.Store
	// readOnly: the server only reports (--check, beside a running
	// server), and writes nothing to the store.
	readOnly bool

	mu      sync.Mutex
	objects *os.Root // the store's objects, opened at the first release
	byOS    map[string]*servedOS
	// older holds the releases a staged rollout serves besides the
	// newest, by OS and number.
	older map[string]map[uint64]*storedRelease
}

// servedOS is what is known of one OS's published release.
type servedOS struct {
	pointer fs.FileInfo // the pointer file as last read
	number  uint64      // the release it names, 0 for none
	rel     *storedRelease
	err     error // why the pointer or its release could not be read

	// folder is the content digest of the update folder when release
	// number was first served; folderMan the folder manifest last
	// compared with it, and folderWins the outcome.
	folder     [32]byte
	folderMan  *index.Manifest
	folderWins bool
	warned     bool
}

// storedRelease is one stored release as a manifest, with its signed
// statement when it has one that describes it.
type storedRelease struct {
	rec     *releases.Record
	man     *index.Manifest
	meta    []byte
	st      *releasemeta.Statement
	problem string
}

// folderRecord is STATE/releases/<os>/folder.json.
type folderRecord struct {
	Number uint64 `json:"number"`
	Digest string `json:"folder_digest"`
}

// contentDigest is a digest of a folder manifest's content: paths, sizes,
// modes, hashes, link targets; not times, nor the build or settings that
// the configuration gives it, so that a reload or a touch is no change.
func contentDigest(m *index.Manifest) [32]byte {
	h := blake3.New()
	var b [8]byte
	for _, f := range m.Files {
		h.WriteString(f.Path)
		h.Write([]byte{0})
		putU64(b[:], uint64(f.Size))
		h.Write(b[:])
		putU64(b[:], uint64(f.Mode))
		h.Write(b[:])
		h.Write(f.Hash[:])
		h.WriteString(f.Target)
		if f.Dir {
			h.Write([]byte{1})
		} else {
			h.Write([]byte{0})
		}
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

func putU64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
}

// servedManifest returns the manifest ix's OS is served now, and its
// signed metadata (nil for none). light looks only at what is known (for
// a hello); otherwise the folder is brought up to date first.
//
// hello, when not nil, is the client's: a staged rollout may serve it an
// older release of the history; number is the release served, 0 for the
// folder.
func (s *Server) servedManifest(ctx context.Context, ix *index.Index, light bool, hello *syncproto.Hello) (man *index.Manifest, signed *signedRelease, number uint64, err error) {
	var folder *index.Manifest
	if light {
		folder = ix.Latest()
	} else {
		if folder, err = ix.Current(ctx); err != nil {
			return nil, nil, 0, err
		}
	}
	if r := s.pub.served(s, ix, folder); r != nil {
		if hello != nil {
			if n := s.rollouts.choose(ix.OS, *hello); n != 0 && n != r.rec.Number {
				if older, err := s.pub.numbered(s, ix.OS, n); err == nil {
					r = older
				} else {
					s.log.Error("the staged rollout serves a release the history does not have; serving the newest", "os", ix.OS, "release", n, "err", err)
				}
			}
		}
		return r.man, &signedRelease{man: r.man, meta: r.meta, st: r.st, problem: r.problem}, r.rec.Number, nil
	}
	return folder, s.releaseMeta(ix, folder), 0, nil
}

// numbered returns release n of osName, which a staged rollout serves
// beside the newest.
func (p *published) numbered(s *Server, osName string, n uint64) (*storedRelease, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.older[osName][n]; r != nil {
		return r, nil
	}
	r, err := p.release(s, osName, n)
	if err != nil {
		return nil, err
	}
	if p.older == nil {
		p.older = map[string]map[uint64]*storedRelease{}
	}
	if len(p.older[osName]) >= 4 {
		clear(p.older[osName])
	}
	if p.older[osName] == nil {
		p.older[osName] = map[uint64]*storedRelease{}
	}
	p.older[osName][n] = r
	return r, nil
}

// served returns the stored release served for osName, or nil when the
// folder is: none was published, or the folder changed after.
func (p *published) served(s *Server, ix *index.Index, folder *index.Manifest) *storedRelease {
	if p == nil || p.store == nil {
		return nil
	}
	osName := ix.OS
	fi, err := os.Stat(p.store.PointerFile(osName))
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byOS == nil {
		p.byOS = map[string]*servedOS{}
	}
	o := p.byOS[osName]
	if err != nil {
		if o != nil && o.number != 0 {
			s.log.Warn("the release pointer is gone; serving the update folder", "os", osName, "file", p.store.PointerFile(osName), "err", err)
		}
		if o == nil || o.number != 0 {
			p.byOS[osName] = &servedOS{}
		}
		return nil
	}
	if o == nil || o.pointer == nil || !os.SameFile(o.pointer, fi) || o.pointer.Size() != fi.Size() || !o.pointer.ModTime().Equal(fi.ModTime()) {
		o = p.load(s, osName, fi, folder, o)
		p.byOS[osName] = o
	}
	if o.rel == nil {
		return nil
	}
	if folder != nil && folder != o.folderMan {
		o.folderMan = folder
		o.folderWins = contentDigest(folder) != o.folder
	}
	if o.folderWins {
		if !o.warned {
			o.warned = true
			s.log.Warn("the update folder was changed by hand after a release was published: serving the folder, under [UPDATE] Build, until the next publish",
				"os", osName, "folder", ix.Dir, "release", o.number, "build", folder.Build)
		}
		return nil
	}
	o.warned = false
	return o.rel
}

// load reads the pointer and the release it names, and the folder's
// record beside it. A release that cannot be read leaves the previous one
// served (logged); with none, the folder.
func (p *published) load(s *Server, osName string, fi fs.FileInfo, folder *index.Manifest, prev *servedOS) *servedOS {
	o := &servedOS{pointer: fi}
	keep := func(err error) *servedOS {
		s.log.Error("cannot serve the published release; the release served before stays", "os", osName, "err", err)
		if prev != nil && prev.rel != nil {
			prev.pointer = fi
			return prev
		}
		o.err = err
		return o
	}
	n, err := p.store.Current(osName)
	if err != nil || n == 0 {
		return keep(cmpErr(err, "no release number"))
	}
	if prev != nil && prev.number == n && prev.rel != nil {
		prev.pointer = fi
		return prev
	}
	rel, err := p.release(s, osName, n)
	if err != nil {
		return keep(err)
	}
	o.number, o.rel = n, rel
	// The folder's content when this release was first served: read
	// from folder.json when it is this release's, else recorded now.
	fr := folderRecord{}
	path := filepath.Join(p.store.Dir, osName, "folder.json")
	err = atomicfile.ReadJSON(path, &fr)
	d, derr := hex.DecodeString(fr.Digest)
	if err == nil && fr.Number == n && derr == nil && len(d) == 32 {
		copy(o.folder[:], d)
	} else if folder != nil {
		o.folder = contentDigest(folder)
		if p.readOnly {
			// --check: nothing is written.
		} else if err := atomicfile.WriteJSON(path, folderRecord{Number: n, Digest: hex.EncodeToString(o.folder[:])}, 0o644); err != nil {
			s.log.Warn("recording the update folder's content beside the published release", "os", osName, "err", err)
		}
	}
	o.folderMan = folder
	if !p.readOnly {
		s.rollouts.begin(osName, n, rel.rec.Build, p.store)
		// Reading the records of the older releases takes a while:
		// not under the lock every manifest takes.
		go s.patches.plan(osName, n)
	}
	s.log.Info("serving a published release", "os", osName, "release", n, "build", rel.rec.Build,
		"published", rel.rec.Published.Format(time.RFC3339), "files", len(rel.rec.Files), "signed", rel.st != nil)
	if rel.problem != "" {
		s.log.Warn("the published release's signature does not describe it; its clients refuse it until it is published again", "os", osName, "release", n, "problem", rel.problem)
	}
	return o
}

func cmpErr(err error, msg string) error {
	if err != nil {
		return err
	}
	return errors.New(msg)
}

// release loads release n of osName as a manifest. p.mu is held.
func (p *published) release(s *Server, osName string, n uint64) (*storedRelease, error) {
	rec, err := p.store.Record(osName, n)
	if err != nil {
		return nil, err
	}
	if p.objects == nil {
		if p.objects, err = os.OpenRoot(p.store.ObjectsDir()); err != nil {
			return nil, fmt.Errorf("opening the release store: %w", err)
		}
	}
	cfg := s.cfg
	files := make([]index.File, len(rec.Files))
	for i, e := range rec.Files {
		files[i] = index.File{Path: e.Path, Size: e.Size, MtimeNs: e.MtimeNs, Mode: fs.FileMode(e.Mode).Perm(),
			Hash: e.Hash, Target: e.Target, Dir: e.Dir}
	}
	man := index.Stored(osName, files, index.Release{Build: rec.Build, Preserve: cfg.Preserve,
		PostInstall: cfg.PostInstall, PostInstallTimeout: cfg.PostInstallTimeout}, p.objects, releases.ObjectName)
	r := &storedRelease{rec: rec, man: man}
	if len(rec.Signed) > 0 {
		r.meta, r.st, r.problem = checkSigned(rec.Signed, osName, man)
	}
	return r, nil
}

// checkSigned checks signed metadata against the manifest it is to be
// sent with: the bytes and statement to send, or why not.
func checkSigned(b []byte, osName string, man *index.Manifest) ([]byte, *releasemeta.Statement, string) {
	file, err := releasemeta.Decode(b)
	if err != nil {
		return nil, nil, err.Error()
	}
	st := file.Statement
	switch {
	case st.OS != osName:
		return nil, nil, fmt.Sprintf("it is signed for %s, the folder serves %s", st.OS, osName)
	case st.Build != man.Build:
		return nil, nil, fmt.Sprintf("it is signed for build %s, the folder holds build %s ([UPDATE] Build)", st.Build, man.Build)
	}
	if d := man.ReleaseDigest(); d != st.Digest {
		return nil, nil, fmt.Sprintf("the folder was changed after release %d was signed (digest %s, signed %s)", st.Number, d, st.Digest)
	}
	return b, &st, ""
}

func (p *published) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.objects != nil {
		p.objects.Close()
		p.objects = nil
	}
}

// PublishedStatus says for --check which release an OS is served: "" for
// its update folder when nothing was published, else the published
// release, or why the folder is served instead.
func (s *Server) PublishedStatus(osName string) string {
	ix := s.indexes[osName]
	if ix == nil {
		return ""
	}
	folder := ix.Latest()
	r := s.pub.served(s, ix, folder)
	s.pub.mu.Lock()
	o := s.pub.byOS[osName]
	s.pub.mu.Unlock()
	switch {
	case r != nil:
		signed := "unsigned"
		if r.st != nil {
			signed = fmt.Sprintf("signed release %d, expires %s", r.st.Number, r.st.Expires.Format(time.RFC3339))
		} else if r.problem != "" {
			signed = "signature NOT SERVED: " + r.problem
		}
		return fmt.Sprintf("serving published release %d: build %s, %d files, %s bytes, published %s; %s (the update folder is not served)",
			r.rec.Number, r.rec.Build, len(r.rec.Files), GroupDigits(r.rec.Bytes()), r.rec.Published.Format(time.RFC3339), signed)
	case o != nil && o.err != nil:
		return "published release NOT SERVED: " + o.err.Error() + "; serving the update folder"
	case o != nil && o.number != 0:
		return fmt.Sprintf("serving the update folder under [UPDATE] Build: it was changed by hand after release %d was published", o.number)
	}
	return ""
}

// watchPublished loads the releases published for every OS now and every
// interval until ctx is done: a stat of each pointer.
func (s *Server) watchPublished(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, ix := range s.indexes {
			s.pub.served(s, ix, ix.Latest())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
