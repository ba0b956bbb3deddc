package appserver

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
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
	// missed marks the releases a rollout serves and the history lacks,
	// logged once each.
	missed map[string]bool
}

// servedOS is what is known of one OS's published release.
type servedOS struct {
	pointer fs.FileInfo // the pointer file as last loaded
	number  uint64      // the release it names, 0 for none
	rel     *storedRelease
	loading bool   // a load of a new pointer is under way
	lastErr string // the last error of a load, logged once

	// folder is the content digest of the update folder when release
	// number was first served (haveBase: known); folderMan the folder
	// manifest last compared with it, and folderWins the outcome.
	folder     [32]byte
	haveBase   bool
	folderMan  *index.Manifest
	folderWins bool
	warned     bool
	// content is the content digest of the release itself: a folder
	// that holds just that (the administrator published the folder he
	// edited) is no edit after the publish, whenever its scan saw the
	// edit.
	content [32]byte
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
		binary.BigEndian.PutUint64(b[:], uint64(f.Size))
		h.Write(b[:])
		binary.BigEndian.PutUint64(b[:], uint64(f.Mode))
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

// servedManifest returns the manifest ix's OS is served now, and its
// signed metadata (nil for none). light looks only at what is known (for
// a hello); otherwise the folder is brought up to date first, and whether
// a folder edited by hand wins over the published release is decided
// again.
//
// hello, when not nil, is the client's: a staged rollout may serve it an
// older release of the history; number is the release served, 0 for the
// folder.
func (s *Server) servedManifest(ctx context.Context, ix *index.Index, light bool, hello *syncproto.Hello) (man *index.Manifest, signed *signedRelease, number uint64, err error) {
	var folder *index.Manifest
	fresh := !light
	if fresh {
		// A folder that cannot be read does not stop a published
		// release from being served; it is the folder's error only
		// when the folder is what is served.
		folder, err = ix.Current(ctx)
	}
	if r := s.pub.served(ctx, s, ix, folder, fresh); r != nil {
		if hello != nil {
			if n := s.rollouts.choose(ix.OS, *hello); n != 0 && n != r.rec.Number {
				if older, err := s.pub.numbered(s, ix.OS, n); err == nil {
					r = older
				} else {
					s.pub.missing(s, ix.OS, n, err)
				}
			}
		}
		return r.man, &signedRelease{man: r.man, meta: r.meta, st: r.st, problem: r.problem}, r.rec.Number, nil
	}
	if err != nil {
		return nil, nil, 0, err
	}
	if folder == nil {
		folder = ix.Latest()
	}
	return folder, s.releaseMeta(ix, folder), 0, nil
}

// missing logs, once per release, that a rollout serves a release the
// history lacks.
func (p *published) missing(s *Server, osName string, n uint64, err error) {
	p.mu.Lock()
	key := fmt.Sprintf("%s/%d", osName, n)
	first := !p.missed[key]
	if p.missed == nil {
		p.missed = map[string]bool{}
	}
	p.missed[key] = true
	p.mu.Unlock()
	if first {
		s.log.Error("the staged rollout serves a release the history does not have; serving the newest", "os", osName, "release", n, "err", err)
	}
}

// numbered returns release n of osName, which a staged rollout serves
// beside the newest.
func (p *published) numbered(s *Server, osName string, n uint64) (*storedRelease, error) {
	p.mu.Lock()
	r := p.older[osName][n]
	p.mu.Unlock()
	if r != nil {
		return r, nil
	}
	// Read outside the lock: a record of 20,000 files takes a while, and
	// every hello takes the lock.
	r, err := p.release(s, osName, n)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
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

// served returns the stored release served for ix's OS, or nil when the
// folder is: none was published, or the folder changed by hand after.
// folder is the folder's manifest when fresh (just brought up to date),
// else nil or the last known. A new pointer is loaded by one caller at a
// time, outside the lock; the others go on with what was served before.
func (p *published) served(ctx context.Context, s *Server, ix *index.Index, folder *index.Manifest, fresh bool) *storedRelease {
	if p == nil || p.store == nil {
		return nil
	}
	osName := ix.OS
	fi, err := os.Stat(p.store.PointerFile(osName))
	p.mu.Lock()
	if p.byOS == nil {
		p.byOS = map[string]*servedOS{}
	}
	o := p.byOS[osName]
	if o == nil {
		o = &servedOS{}
		p.byOS[osName] = o
	}
	if err != nil {
		if o.number != 0 {
			s.log.Warn("the release pointer is gone; serving the update folder", "os", osName, "file", p.store.PointerFile(osName), "err", err)
			*o = servedOS{}
		}
		p.mu.Unlock()
		return nil
	}
	if !o.loading && (o.pointer == nil || !os.SameFile(o.pointer, fi) || o.pointer.Size() != fi.Size() || !o.pointer.ModTime().Equal(fi.ModTime())) {
		o.loading = true
		p.mu.Unlock()
		p.load(ctx, s, ix, fi, o)
		p.mu.Lock()
	}
	defer p.mu.Unlock()
	if o.rel == nil {
		return nil
	}
	if fresh && folder != nil && folder != o.folderMan {
		d := contentDigest(folder)
		if !o.haveBase {
			// The folder could not be read when the release was
			// loaded: its first content seen since is the baseline.
			o.folder, o.haveBase = d, true
			p.saveBase(s, osName, o.number, d)
		}
		o.folderMan = folder
		o.folderWins = d != o.folder && d != o.content
	}
	if o.folderWins {
		if !o.warned {
			o.warned = true
			s.log.Warn("the update folder was changed by hand after a release was published: serving the folder, under [UPDATE] Build, until the next publish",
				"os", osName, "folder", ix.Dir, "release", o.number)
		}
		return nil
	}
	o.warned = false
	return o.rel
}

// load reads the pointer and the release it names, and records the
// folder's content beside it, then makes it o's. It is called with
// o.loading set and p.mu not held. A release that cannot be read leaves
// the previous one served (logged once for each error) and is tried again
// at the next call.
func (p *published) load(ctx context.Context, s *Server, ix *index.Index, fi fs.FileInfo, o *servedOS) {
	osName, start := ix.OS, time.Now()
	fail := func(err error) {
		p.mu.Lock()
		o.loading = false
		again := o.lastErr == err.Error()
		o.lastErr = err.Error()
		p.mu.Unlock()
		if !again {
			s.log.Error("cannot serve the published release; the release served before stays, and it is tried again", "os", osName, "err", err)
		}
	}
	n, err := p.store.Current(osName)
	if err == nil && n == 0 {
		err = errors.New("no release number")
	}
	if err != nil {
		fail(err)
		return
	}
	p.mu.Lock()
	same := o.number == n && o.rel != nil
	p.mu.Unlock()
	if same {
		p.mu.Lock()
		o.pointer, o.loading = fi, false
		p.mu.Unlock()
		return
	}
	rel, err := p.release(s, osName, n)
	if err != nil {
		fail(err)
		return
	}
	// The folder's content when this release was first served: read
	// from folder.json when it is this release's, else the folder as it
	// is now (scanned: a scan from before the publish may miss an edit
	// the administrator made just before publishing that very folder).
	var base [32]byte
	haveBase := false
	fr := folderRecord{}
	path := filepath.Join(p.store.Dir, osName, "folder.json")
	d, derr := []byte(nil), atomicfile.ReadJSON(path, &fr)
	if derr == nil {
		d, derr = hex.DecodeString(fr.Digest)
	}
	// The folder as it is now, when needed below.
	var now [32]byte
	haveNow := false
	current := func() bool {
		if !haveNow {
			if folder, err := ix.Current(ctx); err == nil {
				now, haveNow = contentDigest(folder), true
			}
		}
		return haveNow
	}
	p.mu.Lock()
	firstLoad := o.pointer == nil
	p.mu.Unlock()
	// At the first load since the server started, what everyone was
	// served before comes from the disk: the release the rollout
	// recorded, when folder.json says the folder had not changed by
	// hand since (a release published while the server was stopped
	// still goes to the pilot ring first).
	servedBefore := false
	if firstLoad && derr == nil && len(d) == 32 && fr.Number != n && !p.readOnly {
		if r := s.rollouts.of(osName).Status(time.Now()).Release; r != 0 && r == fr.Number && current() && [32]byte(d) == now {
			servedBefore = true
		}
	}
	if derr == nil && fr.Number == n && len(d) == 32 {
		copy(base[:], d)
		haveBase = true
	} else if current() {
		base, haveBase = now, true
		p.saveBase(s, osName, n, base)
	}
	content := contentDigest(rel.man)
	if rel.st != nil && time.Until(rel.st.Expires) < expiryWarning {
		s.log.Warn("the published release's signature expires soon; clients refuse it once it has: publish it again with the publisher's key to renew it",
			"os", osName, "release", n, "expires", rel.st.Expires.Format(time.RFC3339))
	}
	p.mu.Lock()
	// What everyone was served before: a new rollout falls back to it.
	// When the folder was served (nothing published yet, or edited by
	// hand), there is nothing stored to fall back to.
	folderServed := o.rel == nil || o.folderWins
	if firstLoad {
		folderServed = !servedBefore
	}
	*o = servedOS{pointer: fi, number: n, rel: rel, folder: base, haveBase: haveBase, content: content}
	p.mu.Unlock()
	s.metrics.published(osName, time.Since(start))
	s.log.Info("serving a published release", "os", osName, "release", n, "build", rel.rec.Build,
		"published", rel.rec.Published.Format(time.RFC3339), "files", len(rel.rec.Files), "signed", rel.st != nil)
	if !p.readOnly {
		s.rollouts.begin(osName, n, rel.rec.Build, folderServed, func(prev uint64) bool {
			// A release that is the previous one signed anew (same
			// build and files) goes to everyone: the pilots, already
			// up to date, would never report it, and everyone else
			// would keep the signature that expires.
			r, err := p.store.Record(osName, prev)
			return err == nil && r.Build == rel.rec.Build && slices.Equal(r.Files, rel.rec.Files)
		})
		// Reading the records of the older releases takes a while:
		// not under the lock every manifest takes.
		s.wg.Go(func() { s.patches.plan(osName, n) })
	}
	if rel.problem != "" {
		s.log.Warn("the published release's signature does not describe it; its clients refuse it until it is published again", "os", osName, "release", n, "problem", rel.problem)
	}
}

// expiryWarning is how long before its signature expires a published
// release is warned of.
const expiryWarning = 14 * 24 * time.Hour

// saveBase records the folder's content beside release n, unless the
// server only reports.
func (p *published) saveBase(s *Server, osName string, n uint64, d [32]byte) {
	if p.readOnly {
		return
	}
	path := filepath.Join(p.store.Dir, osName, "folder.json")
	if err := atomicfile.WriteJSON(path, folderRecord{Number: n, Digest: hex.EncodeToString(d[:])}, 0o644); err != nil {
		s.log.Warn("recording the update folder's content beside the published release", "os", osName, "err", err)
	}
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
	files := make([]index.File, len(rec.Files))
	for i, e := range rec.Files {
		files[i] = index.File{Path: e.Path, Size: e.Size, MtimeNs: e.MtimeNs, Mode: fs.FileMode(e.Mode).Perm(),
			Hash: e.Hash, Target: e.Target, Dir: e.Dir}
	}
	// The release carries the Preserve and post-install settings it was
	// published (and signed) with, whatever the configuration says now.
	man := index.Stored(osName, files, index.Release{Build: rec.Build, Preserve: rec.Preserve,
		PostInstall: rec.PostInstall, PostInstallTimeout: time.Duration(rec.PostInstallTimeout) * time.Second}, p.objects, releases.ObjectName)
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
	ix := s.Indexes()[osName]
	if ix == nil {
		return ""
	}
	r := s.pub.served(context.Background(), s, ix, nil, false)
	s.pub.mu.Lock()
	o := s.pub.byOS[osName]
	s.pub.mu.Unlock()
	switch {
	case r != nil:
		signed := "unsigned"
		if r.st != nil {
			signed = fmt.Sprintf("signed release %d, expires %s", r.st.Number, r.st.Expires.Format(time.RFC3339))
			switch left := time.Until(r.st.Expires); {
			case left <= 0:
				signed += " (EXPIRED: clients refuse it; publish it again with the publisher's key)"
			case left < expiryWarning:
				signed += fmt.Sprintf(" (in %d days: publish it again with the publisher's key before)", int(left.Hours()/24))
			}
		} else if r.problem != "" {
			signed = "signature NOT SERVED: " + r.problem
		}
		return fmt.Sprintf("serving published release %d: build %s, %d files, %s bytes, published %s; %s (the update folder is not served)",
			r.rec.Number, r.rec.Build, len(r.rec.Files), GroupDigits(r.rec.Bytes()), r.rec.Published.Format(time.RFC3339), signed)
	case o != nil && o.lastErr != "" && o.rel == nil:
		return "published release NOT SERVED: " + o.lastErr + "; serving the update folder"
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
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.lookPublished(ctx)
	}
}

// lookPublished loads what was published for each OS since the last look.
func (s *Server) lookPublished(ctx context.Context) {
	for _, ix := range s.Indexes() {
		// A scan only when the folder's watch says it changed: then a
		// hand edit is seen here rather than at the next client.
		folder, err := ix.Current(ctx)
		s.pub.served(ctx, s, ix, folder, err == nil)
	}
}
