package release

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/internal/version"
)

// Errors from Extract, wrapped with the archive and the entry.
var (
	// ErrUnsafeEntry is an entry that could write outside the destination,
	// or that is not a plain file, folder or contained link.
	ErrUnsafeEntry = errors.New("release: unsafe archive entry")
	// ErrTooLarge is an archive beyond Limits.
	ErrTooLarge = errors.New("release: archive beyond limits")
	// ErrNoBuild is an archive without a valid BUILD file at its root.
	ErrNoBuild = errors.New("release: archive has no valid BUILD file at its root")
	// ErrArchiveFormat is a file that is neither a gzip-compressed tar nor a
	// zip archive.
	ErrArchiveFormat = errors.New("release: not a .tar.gz or .zip archive")
	// ErrDestNotEmpty is a destination folder that already holds something.
	ErrDestNotEmpty = errors.New("release: destination folder is not empty")
)

// BuildFile is the name of the file at an archive's root holding its build.
const BuildFile = "BUILD"

// maxBuildFile bounds the BUILD file: it holds one short line.
const maxBuildFile = 64

// maxName bounds entry names and link targets, well above any real path.
const maxName = 4096

// Limits bound what Extract unpacks, so that a hostile or broken archive
// cannot fill the server's disk.
type Limits struct {
	Files int   // entries of any kind
	Bytes int64 // total bytes of regular files, uncompressed
}

// DefaultLimits are far above any real server installation (a few thousand
// files, a few hundred megabytes) and far below what would hurt a server.
var DefaultLimits = Limits{Files: 200_000, Bytes: 16 << 30}

// Extract unpacks the release archive at archive (a gzip-compressed tar or a
// zip, told apart by their first bytes) into dest, which must be an empty
// folder or not exist yet, and returns the build from its BUILD file. It
// writes only through an os.Root on dest, and refuses, naming the entry,
// anything that could reach outside dest or surprise the server later:
// absolute paths, "..", backslashes, colons (drive letters and Windows
// alternate data streams), names Windows cannot hold or would alias (device
// names, trailing dots and spaces), links that leave dest, entries under a
// symbolic link, devices, FIFOs and other special files, names given twice
// (also when they differ only in case, as they would collide on Windows and
// macOS), and archives beyond DefaultLimits. On any error it removes what it
// unpacked.
//
// Files get the archive's permission bits (without setuid, setgid and
// sticky) and modification times. Folders get the archive's permission bits
// plus full access for the owner, so that the server can later carry files
// into the new installation and remove an old one.
func Extract(ctx context.Context, archive, dest string) (Info, error) {
	return ExtractLimits(ctx, archive, dest, DefaultLimits)
}

// ExtractLimits is Extract with explicit limits.
func ExtractLimits(ctx context.Context, archive, dest string, lim Limits) (info Info, err error) {
	created, err := prepareDest(dest)
	if err != nil {
		return Info{}, err
	}
	defer func() {
		if err != nil {
			cleanDest(dest, created)
		}
	}()
	root, err := os.OpenRoot(dest)
	if err != nil {
		return Info{}, fmt.Errorf("opening destination: %w", err)
	}
	defer root.Close()
	x := &extractor{ctx: ctx, root: root, lim: lim, seen: map[string]seenEntry{}, symlinks: map[string]bool{}}
	if err := walkArchive(ctx, archive, x.add); err != nil {
		return Info{}, fmt.Errorf("extracting %s: %w", archive, err)
	}
	// Folder modes last: a read-only folder must be filled first.
	for _, d := range slices.Backward(x.dirs) {
		if err := root.Chmod(d.name, d.mode); err != nil {
			return Info{}, fmt.Errorf("extracting %s: setting mode of %q: %w", archive, d.name, err)
		}
	}
	b, err := x.build()
	if err != nil {
		return Info{}, fmt.Errorf("extracting %s: %w", archive, err)
	}
	return Info{Build: b}, nil
}

// prepareDest makes dest if it does not exist, and otherwise checks that it
// is an empty folder, so that nothing of the server's is ever overwritten.
func prepareDest(dest string) (created bool, err error) {
	err = os.Mkdir(dest, 0o755)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return false, fmt.Errorf("creating destination: %w", err)
	}
	ents, err := os.ReadDir(dest)
	if err != nil {
		return false, fmt.Errorf("reading destination: %w", err)
	}
	if len(ents) > 0 {
		return false, fmt.Errorf("%s: %w", dest, ErrDestNotEmpty)
	}
	return false, nil
}

// cleanDest removes what a failed extraction left in dest. os.RemoveAll
// does not follow symbolic links, so an unpacked link cannot make it remove
// anything outside.
func cleanDest(dest string, created bool) {
	if created {
		os.RemoveAll(dest)
		return
	}
	ents, _ := os.ReadDir(dest)
	for _, e := range ents {
		os.RemoveAll(filepath.Join(dest, e.Name()))
	}
}

type entryType int

const (
	typeFile entryType = iota
	typeDir
	typeSymlink
	typeHardlink
)

// entry is one archive member, whichever the archive format.
type entry struct {
	name  string // as written in the archive
	typ   entryType
	mode  fs.FileMode // permission bits
	size  int64       // claimed size of a regular file
	link  string      // target of a link
	mtime time.Time
	open  func() (io.Reader, error) // content of a regular file
}

// walkArchive calls fn for each entry of the archive at path.
func walkArchive(ctx context.Context, path string, fn func(*entry) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		return fmt.Errorf("%w: reading the first bytes: %w", ErrArchiveFormat, err)
	}
	switch {
	case magic[0] == 0x1f && magic[1] == 0x8b:
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		return walkTarGz(ctx, f, fn)
	case string(magic[:]) == "PK\x03\x04" || string(magic[:]) == "PK\x05\x06":
		st, err := f.Stat()
		if err != nil {
			return err
		}
		return walkZip(ctx, f, st.Size(), fn)
	}
	return ErrArchiveFormat
}

func walkTarGz(ctx context.Context, r io.Reader, fn func(*entry) error) error {
	zr, err := gzip.NewReader(bufio.NewReader(r))
	if err != nil {
		return fmt.Errorf("%w: gzip: %w", ErrArchiveFormat, err)
	}
	tr := tar.NewReader(zr)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		// With GODEBUG=tarinsecurepath=0 the reader flags unsafe names
		// itself; our own checks below name the entry and the reason.
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return fmt.Errorf("reading tar: %w", err)
		}
		e := &entry{name: h.Name, mode: fs.FileMode(h.Mode) & fs.ModePerm, size: h.Size, link: h.Linkname, mtime: h.ModTime}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			e.typ = typeFile
			e.open = func() (io.Reader, error) { return tr, nil }
		case tar.TypeDir:
			e.typ = typeDir
		case tar.TypeSymlink:
			e.typ = typeSymlink
		case tar.TypeLink:
			e.typ = typeHardlink
		case tar.TypeXGlobalHeader:
			// PAX global headers (git archive writes one) carry
			// metadata for the reader, not a file.
			continue
		default:
			return unsafe(h.Name, "type %q is not a file, folder or link", string(h.Typeflag))
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

func walkZip(ctx context.Context, r io.ReaderAt, size int64, fn func(*entry) error) error {
	zr, err := zip.NewReader(r, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return fmt.Errorf("%w: zip: %w", ErrArchiveFormat, err)
	}
	for _, zf := range zr.File {
		if err := ctx.Err(); err != nil {
			return err
		}
		m := zf.Mode()
		e := &entry{name: zf.Name, mode: m & fs.ModePerm, size: int64(zf.UncompressedSize64), mtime: zf.Modified}
		switch {
		case m.IsDir():
			e.typ = typeDir
		case m&fs.ModeSymlink != 0:
			// A zip symbolic link holds its target as its content.
			e.typ = typeSymlink
			rc, err := zf.Open()
			if err != nil {
				return fmt.Errorf("entry %q: %w", zf.Name, err)
			}
			b, err := io.ReadAll(io.LimitReader(rc, maxName+1))
			rc.Close()
			if err != nil {
				return fmt.Errorf("entry %q: reading link target: %w", zf.Name, err)
			}
			e.link = string(b)
		case m.IsRegular():
			e.typ = typeFile
			e.open = func() (io.Reader, error) { return zf.Open() }
		default:
			return unsafe(zf.Name, "mode %v is not a file, folder or link", m)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

func unsafe(name, format string, args ...any) error {
	return fmt.Errorf("entry %q: %w: %s", name, ErrUnsafeEntry, fmt.Sprintf(format, args...))
}

// seenEntry is what the extractor remembers of a name it has created.
type seenEntry struct {
	name     string // exact name, to tell a case-only difference
	typ      entryType
	implicit bool // a parent folder made for an entry, not listed itself
	size     int64
}

type dirMode struct {
	name string
	mode fs.FileMode
}

type extractor struct {
	ctx      context.Context
	root     *os.Root
	lim      Limits
	seen     map[string]seenEntry // by strings.ToLower(name)
	symlinks map[string]bool      // exact names of symbolic links
	dirs     []dirMode
	files    int
	bytes    int64
}

// cleanName checks an entry's name and returns it without a leading "./"
// or trailing "/"; "" is the archive's root folder.
func cleanName(name string) (string, error) {
	switch {
	case name == "":
		return "", unsafe(name, "empty name")
	case len(name) > maxName:
		return "", unsafe(abbrev(name), "name longer than %d bytes", maxName)
	case strings.ContainsRune(name, 0):
		return "", unsafe(name, "NUL in name")
	case strings.Contains(name, `\`):
		return "", unsafe(name, "backslash in name")
	case strings.HasPrefix(name, "/"):
		return "", unsafe(name, "absolute path")
	case strings.Contains(name, ":"):
		return "", unsafe(name, "colon in name (a drive letter or an alternate data stream on Windows)")
	}
	n := strings.TrimPrefix(name, "./")
	n = strings.TrimSuffix(n, "/")
	if n == "" || n == "." {
		return "", nil
	}
	if slices.Contains(strings.Split(n, "/"), "..") {
		return "", unsafe(name, `".." in path`)
	}
	if !fs.ValidPath(n) {
		return "", unsafe(name, "not a clean relative path")
	}
	for _, el := range strings.Split(n, "/") {
		if why := windowsProblem(el); why != "" {
			return "", unsafe(name, "%s", why)
		}
	}
	return n, nil
}

// windowsProblem says why el cannot be a file name on Windows, or returns
// "". The server runs on Windows too, where such a name fails to unpack or,
// worse, names another file: "BUILD." and "BUILD " are both "BUILD" there.
func windowsProblem(el string) string {
	if strings.ContainsAny(el, `<>"|?*`) {
		return fmt.Sprintf("name %q holds a character Windows does not allow", el)
	}
	for _, r := range el {
		if r < 0x20 {
			return fmt.Sprintf("name %q holds a control character", el)
		}
	}
	if strings.HasSuffix(el, ".") || strings.HasSuffix(el, " ") {
		return fmt.Sprintf("name %q ends in a dot or space, which Windows drops", el)
	}
	base, _, _ := strings.Cut(el, ".")
	switch strings.ToUpper(strings.TrimRight(base, " ")) {
	case "CON", "PRN", "AUX", "NUL",
		"COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9",
		"LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9":
		return fmt.Sprintf("name %q is a Windows device name", el)
	}
	return ""
}

func (x *extractor) add(e *entry) error {
	name, err := cleanName(e.name)
	if err != nil {
		return err
	}
	if name == "" {
		if e.typ != typeDir {
			return unsafe(e.name, "names the destination folder itself")
		}
		return nil // The root folder: dest itself.
	}
	x.files++
	if x.files > x.lim.Files {
		return fmt.Errorf("entry %q: %w: more than %d entries", e.name, ErrTooLarge, x.lim.Files)
	}
	if e.typ != typeFile && strings.HasSuffix(e.name, "/") && e.typ != typeDir {
		return unsafe(e.name, "a link whose name ends in /")
	}
	if e.typ == typeFile && strings.HasSuffix(e.name, "/") {
		return unsafe(e.name, "a file whose name ends in /")
	}
	key := strings.ToLower(name)
	if prev, ok := x.seen[key]; ok {
		if prev.name != name {
			return unsafe(e.name, "differs only in case from %q", prev.name)
		}
		if !(prev.implicit && e.typ == typeDir) {
			return unsafe(e.name, "given twice")
		}
	}
	if err := x.parents(e.name, name); err != nil {
		return err
	}
	switch e.typ {
	case typeDir:
		if _, ok := x.seen[key]; !ok {
			if err := x.root.Mkdir(name, 0o755); err != nil {
				return fmt.Errorf("entry %q: %w", e.name, err)
			}
		}
		// Keep the owner able to fill and later remove the folder.
		x.dirs = append(x.dirs, dirMode{name, e.mode | 0o700})
	case typeFile:
		if err := x.file(e, name); err != nil {
			return err
		}
	case typeSymlink:
		if err := checkSymlink(e.name, name, e.link); err != nil {
			return err
		}
		if err := x.root.Symlink(e.link, name); err != nil {
			return fmt.Errorf("entry %q: %w", e.name, err)
		}
		x.symlinks[name] = true
	case typeHardlink:
		target, err := cleanName(e.link)
		if err != nil {
			return unsafe(e.name, "hard link target %q: %v", e.link, err)
		}
		t, ok := x.seen[strings.ToLower(target)]
		if target == "" || !ok || t.name != target || t.typ != typeFile {
			return unsafe(e.name, "hard link to %q, which is not a file earlier in the archive", e.link)
		}
		if err := x.root.Link(target, name); err != nil {
			return fmt.Errorf("entry %q: %w", e.name, err)
		}
		e.size = t.size
	}
	x.seen[key] = seenEntry{name: name, typ: e.typ, size: e.size}
	return nil
}

// parents checks that no folder above name is a symbolic link (a link to
// a folder inside dest is fine in itself, but writing through it would let
// one entry replace another) or a file, and makes the missing ones.
func (x *extractor) parents(raw, name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	elems := strings.Split(dir, "/")
	for i := range elems {
		p := strings.Join(elems[:i+1], "/")
		if x.symlinks[p] {
			return unsafe(raw, "inside the symbolic link %q", p)
		}
		prev, ok := x.seen[strings.ToLower(p)]
		if !ok {
			if err := x.root.Mkdir(p, 0o755); err != nil {
				return fmt.Errorf("entry %q: making folder %q: %w", raw, p, err)
			}
			x.seen[strings.ToLower(p)] = seenEntry{name: p, typ: typeDir, implicit: true}
			continue
		}
		if prev.name != p {
			return unsafe(raw, "folder %q differs only in case from %q", p, prev.name)
		}
		if prev.typ != typeDir {
			return unsafe(raw, "inside %q, which is not a folder", p)
		}
	}
	return nil
}

// checkSymlink allows only a relative target that stays inside dest: some
// leading "..", no further than the link's own depth, then plain names.
// A ".." after a name could climb out of a folder reached through another
// link, which a check of the text alone cannot see, so it is refused.
func checkSymlink(raw, name, link string) error {
	switch {
	case link == "":
		return unsafe(raw, "symbolic link with an empty target")
	case len(link) > maxName:
		return unsafe(raw, "symbolic link target longer than %d bytes", maxName)
	case strings.ContainsAny(link, "\\:\x00"):
		return unsafe(raw, "symbolic link target %q holds a backslash, colon or NUL", link)
	case strings.HasPrefix(link, "/"):
		return unsafe(raw, "symbolic link to the absolute path %q", link)
	}
	elems := strings.Split(strings.TrimSuffix(link, "/"), "/")
	ups := 0
	for ups < len(elems) && elems[ups] == ".." {
		ups++
	}
	for _, el := range elems[ups:] {
		if el == ".." || el == "." || el == "" {
			return unsafe(raw, "symbolic link target %q is not a plain relative path", link)
		}
	}
	if depth := strings.Count(name, "/"); ups > depth {
		return unsafe(raw, "symbolic link to %q leaves the destination", link)
	}
	return nil
}

func (x *extractor) file(e *entry, name string) error {
	if e.size < 0 || e.size > x.lim.Bytes-x.bytes {
		return fmt.Errorf("entry %q: %w: more than %d bytes in all", e.name, ErrTooLarge, x.lim.Bytes)
	}
	if name == BuildFile && e.size > maxBuildFile {
		return fmt.Errorf("entry %q: %w: %d bytes, at most %d", e.name, ErrNoBuild, e.size, maxBuildFile)
	}
	r, err := e.open()
	if err != nil {
		return fmt.Errorf("entry %q: %w", e.name, err)
	}
	if c, ok := r.(io.Closer); ok {
		defer c.Close()
	}
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("entry %q: %w", e.name, err)
	}
	// Read one byte past the budget to see a zip entry longer than it says.
	budget := x.lim.Bytes - x.bytes
	n, err := io.Copy(f, io.LimitReader(ctxReader{x.ctx, r}, budget+1))
	x.bytes += n
	if err != nil {
		f.Close()
		return fmt.Errorf("entry %q: writing: %w", e.name, err)
	}
	if n > budget {
		f.Close()
		return fmt.Errorf("entry %q: %w: more than %d bytes in all", e.name, ErrTooLarge, x.lim.Bytes)
	}
	if n != e.size {
		f.Close()
		return fmt.Errorf("entry %q: %d bytes, the archive says %d", e.name, n, e.size)
	}
	if err := f.Chmod(e.mode); err != nil {
		f.Close()
		return fmt.Errorf("entry %q: setting mode: %w", e.name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("entry %q: closing: %w", e.name, err)
	}
	if !e.mtime.IsZero() {
		if err := x.root.Chtimes(name, e.mtime, e.mtime); err != nil {
			return fmt.Errorf("entry %q: setting times: %w", e.name, err)
		}
	}
	return nil
}

// build reads the BUILD file once everything is unpacked.
func (x *extractor) build() (string, error) {
	s, ok := x.seen[strings.ToLower(BuildFile)]
	if !ok || s.name != BuildFile || s.typ != typeFile {
		return "", ErrNoBuild
	}
	data, err := x.root.ReadFile(BuildFile)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", BuildFile, err)
	}
	b := strings.TrimSpace(string(data))
	if _, err := version.Parse(b); err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoBuild, err)
	}
	return b, nil
}

// ctxReader stops a long copy when ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// readBuildFile checks the archive at path as Extract would, in a temporary
// folder, and returns its build.
func readBuildFile(path string) (string, error) {
	tmp, err := os.MkdirTemp("", "smartsync-release-check-*")
	if err != nil {
		return "", fmt.Errorf("checking archive: %w", err)
	}
	defer os.RemoveAll(tmp)
	info, err := Extract(context.Background(), path, filepath.Join(tmp, "x"))
	if err != nil {
		return "", fmt.Errorf("checking archive: %w", err)
	}
	return info.Build, nil
}
