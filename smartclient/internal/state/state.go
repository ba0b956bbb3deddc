// Package state is the client's persistent record of an install folder:
// which build it holds and, for every file the client installed, its size,
// mtime and hash (State). It owns the record's files, state.bin in its
// compact binary encoding closed by a BLAKE3 checksum and the state.json
// of earlier builds, reads them from the install or from a backup, and
// checks whether the install is still as recorded (Check, the no-op
// check's look at every file).
//
// It imports the install package (for the folder's seam and layout) and
// nothing else of the client.
package state

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/zeebo/blake3"
)

// The files of the client's state, in the install's bookkeeping folder.
const (
	File = install.MetaDir + "/state.bin"

	// LegacyFile is where builds before the binary state file kept the
	// state, as JSON; it is read when there is no File, and removed once
	// a File is written.
	LegacyFile = install.MetaDir + "/state.json"
)

// FileState is what the client knows of a file it installed: the size and
// mtime the file has on disk (which the file system may have rounded), the
// hash of its content, and the server's mtime it was installed for.
//
// An empty folder of the release (a manifest entry with FlagDir) is
// recorded too, with DirHash as its hash and nothing else: the no-op
// check then sees one that is gone.
type FileState struct {
	Size          int64  `json:"size"`
	MtimeNs       int64  `json:"mtime"`
	Hash          string `json:"blake3"`
	ServerMtimeNs int64  `json:"server_mtime"`
	Preserve      bool   `json:"preserve,omitempty"`
}

// DirHash is the hash a FileState records for an empty folder of the
// release: no BLAKE3 in hex is spelled so.
const DirHash = "dir"

// IsDir reports whether f records an empty folder of the release.
func (f FileState) IsDir() bool { return f.Hash == DirHash }

// State is the client's persistent record, .smartclient/state.bin (see
// Marshal). Its JSON form is the one a journal holds, and the one of
// LegacyFile.
type State struct {
	Version     int                  `json:"version"`
	ClientID    string               `json:"client_id"`
	Build       string               `json:"build,omitempty"`
	OS          string               `json:"os,omitempty"`
	Server      string               `json:"server,omitempty"`
	LastSync    time.Time            `json:"last_sync,omitzero"`
	LastOutcome string               `json:"last_outcome,omitempty"`
	LastMessage string               `json:"last_message,omitempty"`
	Files       map[string]FileState `json:"files"`
	// Journal is the checksum of the journal whose switch wrote this
	// state: with it, recovery knows that switch was committed.
	Journal string `json:"journal,omitempty"`
	// Manifest is the digest of the server's manifest that every file
	// listed in Files came from (hex); "" when some listed file is not
	// recorded. The no-op check names it to the server.
	Manifest string `json:"manifest,omitempty"`

	exists bool // read from disk, as opposed to new
	legacy bool // read from LegacyFile
	// enc holds the files' entries as the state file holds them, while
	// Files is nil: Read leaves them encoded, so that a no-op check
	// walks them without building the map (see LoadFiles).
	enc Encoded
	// unmap gives back the mapping of the state file that enc points
	// into (see install.MapFile), once; released says it did so before
	// the files were loaded, which LoadFiles then can no longer do.
	unmap    func()
	released bool
}

// Release gives back the state file's mapping that Read left the
// encoded files in. The files are loaded by then or lost to this State,
// whose LoadFiles then fails: its caller releases it when it is done.
func (st *State) Release() {
	if st.unmap == nil {
		return
	}
	if st.Files == nil {
		st.enc, st.released = Encoded{}, true
	}
	st.unmap()
	st.unmap = nil
}

// Encoded is the files' part of a state file: n entries in increasing
// order of path (see Marshal), checked by the file's checksum. A no-op
// check walks them as they are (see Split) rather than build Files.
type Encoded struct {
	b    []byte
	n    int
	size int // the bytes of the file before the checksum, for offsets in errors
}

// reader reads the entries from the first.
func (e Encoded) reader() stateReader {
	return stateReader{b: e.b, size: e.size}
}

// Version is the State.Version this client writes and reads.
const Version = 1

// FromDisk reports whether st was read from the install, as opposed to
// made for a folder without a state.
func (st *State) FromDisk() bool { return st.exists }

// Legacy reports whether st was read from a LegacyFile.
func (st *State) Legacy() bool { return st.legacy }

// Count returns the number of files st records, loaded or still encoded.
func (st *State) Count() int { return max(st.enc.n, len(st.Files)) }

// Load reads the state of the install folder dir; a folder with none
// yet gets a fresh state with a new client id.
func Load(dir string) (*State, error) {
	st, err := Read(dir)
	if err == nil {
		err = st.LoadFiles()
		st.Release()
	}
	return st, err
}

// Read is Load leaving the files encoded, in a mapping of the state
// file: its caller must call LoadFiles before it uses Files, and Release
// when it is done with the State.
func Read(dir string) (*State, error) {
	unmap := func() {}
	data, name, legacy, err := readStateFile(func(name string) ([]byte, error) {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if name != File {
			return os.ReadFile(path)
		}
		data, release, err := install.MapFile(path)
		if err == nil {
			unmap = release
		}
		return data, err
	}, "")
	if errors.Is(err, fs.ErrNotExist) {
		id := make([]byte, 16)
		rand.Read(id)
		return &State{Version: Version, ClientID: hex.EncodeToString(id), Files: map[string]FileState{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading client state: %w", err)
	}
	path := filepath.Join(dir, filepath.FromSlash(name))
	var st *State
	if legacy {
		st, err = decodeState(data, legacy)
	} else {
		st, err = parseMapped(data)
	}
	if err == nil && st.Version != Version {
		err = fmt.Errorf("version %d, this smartclient knows %d", st.Version, Version)
	}
	if err != nil {
		unmap()
		return nil, fmt.Errorf("reading client state %s: %w", path, err)
	}
	st.exists, st.unmap = true, unmap
	return st, nil
}

// readStateFile reads the state file under the folder prefix ("" for the
// install, "bkp_remote.00N/" for a backup) with readFile: File, or when
// there is none LegacyFile, which legacy reports. It returns an
// error wrapping fs.ErrNotExist when there is neither.
func readStateFile(readFile func(name string) ([]byte, error), prefix string) (data []byte, name string, legacy bool, err error) {
	name = prefix + File
	data, err = readFile(name)
	if !errors.Is(err, fs.ErrNotExist) {
		return data, name, false, err
	}
	if data, lerr := readFile(prefix + LegacyFile); !errors.Is(lerr, fs.ErrNotExist) {
		return data, prefix + LegacyFile, true, lerr
	}
	return nil, name, false, err
}

// decodeState decodes a state file that readStateFile read: a File,
// or a LegacyFile in JSON. Its Files is never nil.
func decodeState(data []byte, legacy bool) (*State, error) {
	if !legacy {
		return Unmarshal(data)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, err
	}
	if st.Files == nil {
		st.Files = map[string]FileState{}
	}
	st.legacy = true
	return &st, nil
}

// ReadRaw returns the install's state file as it is, File or LegacyFile,
// and its name; an error wrapping fs.ErrNotExist when there is neither.
// A backup keeps it so, under the same name.
func ReadRaw(d *install.Disk) (data []byte, name string, err error) {
	data, name, _, err = readStateFile(d.ReadFile, "")
	return data, name, err
}

// InBackup returns the state kept in the backup folder dir, or nil when
// it has none that can be read.
func InBackup(d *install.Disk, dir string) *State {
	data, _, legacy, err := readStateFile(d.ReadFile, dir+"/")
	if err != nil {
		return nil
	}
	st, err := decodeState(data, legacy)
	if err != nil {
		return nil
	}
	return st
}

// Current returns the install's state file as File holds it, converting
// a LegacyFile; nil when there is none.
func Current(d *install.Disk) ([]byte, error) {
	data, _, legacy, err := readStateFile(d.ReadFile, "")
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, err
	case !legacy:
		return data, nil
	}
	st, err := decodeState(data, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", LegacyFile, err)
	}
	return Marshal(st), nil
}

// Save writes the state durably; a LegacyFile goes once the new file is
// in place.
func (st *State) Save(d *install.Disk) error { return st.SaveWith(d, nil) }

// SaveWith is Save with st's files encoded already (EncodeFiles), or nil
// to encode them.
func (st *State) SaveWith(d *install.Disk, files []byte) error {
	if err := st.LoadFiles(); err != nil {
		return fmt.Errorf("saving client state: %w", err)
	}
	if files == nil {
		files = EncodeFiles(st.Files)
	}
	if err := d.WriteAtomic(File, MarshalWith(st, files)); err != nil {
		return fmt.Errorf("saving client state: %w", err)
	}
	st.exists, st.legacy = true, false
	RemoveLegacy(d)
	return nil
}

// RemoveLegacy removes a LegacyFile that a File replaced. A failure is
// harmless: Load reads the File first, so the next Save tries again.
func RemoveLegacy(d *install.Disk) {
	if d.Exists(LegacyFile) {
		d.Remove(LegacyFile)
	}
}

// The state file's encoding. Every integer is a varint of encoding/binary
// (a signed one zigzag-encoded), and every string its length and then its
// bytes:
//
//	"SCST", stateFormat (one byte)
//	Version, ClientID, Build, OS, Server
//	LastSync: 0 for none, or 1 and its UnixNano (kept in UTC)
//	LastOutcome, LastMessage, Journal, Manifest
//	the number of files, then for each, in increasing order of path:
//	    path, Size, MtimeNs, ServerMtimeNs, flags, hash
//	the BLAKE3-256 of every byte before it (32 bytes)
//
// flags is a byte of fileFlags. A Hash of 64 lowercase hex digits, as
// every file's is, takes its 32 bytes (fileRawHash); any other Hash (a
// link's "link:" one, an empty one) is stored as a string.
//
// The encoding of a state is unique: paths are in strictly increasing
// order, numbers take the fewest bytes, and a hash that can be stored raw
// is, so a decoder that accepts only that form re-encodes what it
// accepts to the same bytes.
const (
	stateMagic   = "SCST"
	stateFormat  = 1
	stateSumSize = 32
	// minFileBytes is the least a file's entry takes: a byte for each
	// of its lengths, numbers and flags.
	minFileBytes = 6
)

// Flags of a file's entry in the state file.
const (
	filePreserve = 1 << iota // FileState.Preserve
	fileRawHash              // the hash is 32 raw bytes, not a string
	fileFlags    = filePreserve | fileRawHash
)

// Marshal encodes st in the state file's binary format.
func Marshal(st *State) []byte {
	return MarshalWith(st, EncodeFiles(st.Files))
}

// EncodeFiles encodes the files of a state file: their number, then each
// in order of path. A switch encodes them once, for the journal, and
// writes the same bytes into the state file (see SaveWith).
func EncodeFiles(files map[string]FileState) []byte {
	type entry struct {
		path string
		f    FileState
	}
	sorted := make([]entry, 0, len(files))
	// The size is a close upper bound for files whose hashes are raw.
	size := binary.MaxVarintLen64
	for p, f := range files {
		sorted = append(sorted, entry{p, f})
		size += len(p) + 3*binary.MaxVarintLen64 + 2 + min(len(f.Hash), stateSumSize+binary.MaxVarintLen64)
	}
	slices.SortFunc(sorted, func(a, b entry) int { return strings.Compare(a.path, b.path) })

	b := make([]byte, 0, size)
	b = binary.AppendUvarint(b, uint64(len(sorted)))
	for _, e := range sorted {
		b = appendString(b, e.path)
		b = binary.AppendVarint(b, e.f.Size)
		b = binary.AppendVarint(b, e.f.MtimeNs)
		b = binary.AppendVarint(b, e.f.ServerMtimeNs)
		var flags byte
		if e.f.Preserve {
			flags |= filePreserve
		}
		if raw, ok := appendRawHash(append(b, flags|fileRawHash), e.f.Hash); ok {
			b = raw
		} else {
			b = appendString(append(b, flags), e.f.Hash)
		}
	}
	return b
}

// MarshalWith encodes st with files, which must be EncodeFiles(st.Files).
func MarshalWith(st *State, files []byte) []byte {
	size := 64 + len(st.ClientID) + len(st.Build) + len(st.OS) + len(st.Server) +
		len(st.LastOutcome) + len(st.LastMessage) + len(st.Journal) + len(st.Manifest) + len(files) + stateSumSize
	b := make([]byte, 0, size)
	b = append(b, stateMagic...)
	b = append(b, stateFormat)
	b = binary.AppendVarint(b, int64(st.Version))
	b = appendString(b, st.ClientID)
	b = appendString(b, st.Build)
	b = appendString(b, st.OS)
	b = appendString(b, st.Server)
	if st.LastSync.IsZero() {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = binary.AppendVarint(b, st.LastSync.UnixNano())
	}
	b = appendString(b, st.LastOutcome)
	b = appendString(b, st.LastMessage)
	b = appendString(b, st.Journal)
	b = appendString(b, st.Manifest)
	b = append(b, files...)
	sum := blake3.Sum256(b)
	return append(b, sum[:]...)
}

// appendString appends s as the state file stores a string: its length,
// then its bytes.
func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendRawHash appends the 32 bytes h spells when it is 64 lowercase hex
// digits, and reports whether it was.
func appendRawHash(b []byte, h string) ([]byte, bool) {
	if len(h) != 2*stateSumSize {
		return b, false
	}
	for i := 0; i < len(h); i += 2 {
		hi, lo := hexDigit[h[i]], hexDigit[h[i+1]]
		if hi|lo > 0xf {
			return b[:len(b)-i/2], false
		}
		b = append(b, hi<<4|lo)
	}
	return b, true
}

// rawHash reports whether h is 64 lowercase hex digits, which the state
// file stores as the 32 bytes they spell.
func rawHash(h string) bool {
	_, ok := appendRawHash(make([]byte, 0, stateSumSize), h)
	return ok
}

// hexDigit is the value of each lowercase hex digit, and 0xff for every
// other byte.
var hexDigit = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "0123456789abcdef" {
		t[c] = byte(i)
	}
	return t
}()

// errStateDamaged marks a state file that cannot be decoded.
var errStateDamaged = errors.New("the state file is torn or damaged")

// Unmarshal decodes a state file's content. After the magic and the
// format it checks the checksum, before any field, and then every length
// against the bytes left before it allocates, so a torn or hostile file is
// an error; it accepts only the encoding Marshal makes. The files' paths
// and hashes share one allocation, and LastSync is in UTC.
func Unmarshal(data []byte) (*State, error) {
	st, err := parseState(data)
	if err == nil {
		err = st.LoadFiles()
	}
	if err != nil {
		return nil, err
	}
	return st, nil
}

// parseMapped is parseState on a mapping of the state file (see
// install.MapFile), whose pages a failing disk, or a program that
// truncated the file, may not deliver: touching one is then an error here
// rather than a crash. parseState's checksum touches every page first.
func parseMapped(data []byte) (st *State, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(interface{ Addr() uintptr })
			if !ok {
				panic(r)
			}
			st, err = nil, fmt.Errorf("%w: its content could not be read (fault at %#x)", errStateDamaged, f.Addr())
		}
	}()
	return parseState(data)
}

// parseState is Unmarshal leaving the files encoded (see LoadFiles).
func parseState(data []byte) (*State, error) {
	if len(data) < len(stateMagic) || string(data[:len(stateMagic)]) != stateMagic {
		return nil, fmt.Errorf("%w: not a smartclient state file", errStateDamaged)
	}
	if len(data) < len(stateMagic)+1+stateSumSize {
		return nil, fmt.Errorf("%w: %d bytes is too short", errStateDamaged, len(data))
	}
	if f := data[len(stateMagic)]; f != stateFormat {
		return nil, fmt.Errorf("state file format %d, this smartclient knows %d", f, stateFormat)
	}
	body := data[:len(data)-stateSumSize]
	if blake3.Sum256(body) != [stateSumSize]byte(data[len(body):]) {
		return nil, fmt.Errorf("%w: it does not match its checksum", errStateDamaged)
	}
	r := stateReader{b: body[len(stateMagic)+1:], size: len(body)}
	st := &State{}
	version := r.varint()
	st.Version = int(version)
	if int64(st.Version) != version {
		r.fail("version out of range")
	}
	st.ClientID = r.string()
	st.Build = r.string()
	st.OS = r.string()
	st.Server = r.string()
	switch r.byte() {
	case 0:
	case 1:
		st.LastSync = time.Unix(0, r.varint()).UTC()
	default:
		r.fail("bad time of the last sync")
	}
	st.LastOutcome = r.string()
	st.LastMessage = r.string()
	st.Journal = r.string()
	st.Manifest = r.string()
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)/minFileBytes) {
		r.fail(fmt.Sprintf("%d files cannot fit in the %d bytes left", n, len(r.b)))
	}
	if r.err != nil {
		return nil, r.err
	}
	st.enc = Encoded{b: r.b, n: int(n), size: r.size}
	return st, nil
}

// LoadFiles decodes the files that Read left encoded into Files; it does
// nothing when Files is set. It accepts only the encoding Marshal makes
// (see Unmarshal).
func (st *State) LoadFiles() error {
	if st.Files != nil {
		return nil
	}
	if st.released {
		return errors.New("smartclient: the state's files were released before they were loaded")
	}
	e := st.enc
	r := e.reader()
	files := make(map[string]FileState, e.n)
	// The paths and hashes are cut from one string rather than each
	// allocated: it takes at most what is left of the file, with each raw
	// hash twice as long in hex.
	var text strings.Builder
	text.Grow(min(2*len(r.b), len(r.b)+stateSumSize*e.n))
	cut := func(b []byte) string {
		start := text.Len()
		text.Write(b)
		return text.String()[start:]
	}
	var prev []byte
	var hexHash [2 * stateSumSize]byte
	for i := range e.n {
		fe := r.entry()
		if r.err == nil && i > 0 && string(fe.path) <= string(prev) {
			r.fail("files out of order")
		}
		prev = fe.path
		f := FileState{Size: fe.size, MtimeNs: fe.mtime, ServerMtimeNs: fe.serverMtime, Preserve: fe.flags&filePreserve != 0}
		switch {
		case r.err != nil:
		case fe.flags&fileRawHash != 0:
			hex.Encode(hexHash[:], fe.hash)
			f.Hash = cut(hexHash[:])
		case rawHash(string(fe.hash)):
			r.fail("a hash stored as a string")
		default:
			f.Hash = cut(fe.hash)
		}
		if r.err != nil {
			return r.err
		}
		files[cut(fe.path)] = f
	}
	if len(r.b) != 0 {
		r.fail(fmt.Sprintf("%d bytes after the last file", len(r.b)))
		return r.err
	}
	st.Files, st.enc = files, Encoded{}
	return nil
}

// Encoded returns the files' entries encoded as the state file holds
// them: those Read left, or an encoding of Files.
func (st *State) Encoded() Encoded {
	if st.Files == nil {
		return st.enc
	}
	enc, err := parseState(Marshal(st))
	if err != nil {
		panic(fmt.Sprintf("smartclient: a state does not decode as it was encoded: %v", err))
	}
	return enc.enc
}

// fileEntry is a file's entry in the state file, its bytes not copied.
type fileEntry struct {
	path                     []byte
	size, mtime, serverMtime int64
	flags                    byte
	// hash is the 32 bytes of the hash when flags has fileRawHash, else
	// the string's bytes.
	hash []byte
}

// entry reads a file's entry. Unknown flags are an error, before the hash
// that they would say how to read.
func (r *stateReader) entry() (e fileEntry) {
	e.path = r.bytes(r.uvarint())
	e.size = r.varint()
	e.mtime = r.varint()
	e.serverMtime = r.varint()
	e.flags = r.byte()
	switch {
	case e.flags&^fileFlags != 0:
		r.fail("unknown flags")
	case e.flags&fileRawHash != 0:
		e.hash = r.bytes(stateSumSize)
	default:
		e.hash = r.bytes(r.uvarint())
	}
	return e
}

// stateReader reads a state file's fields in order. Its first error
// sticks: later reads return zero values.
type stateReader struct {
	b    []byte // what is left to read
	size int    // the bytes before the checksum, for offsets in errors
	err  error
}

// fail records what is wrong at the current offset, unless an error
// already is.
func (r *stateReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s at byte %d", errStateDamaged, what, r.size-len(r.b))
	}
}

// uvarint reads an unsigned varint of the fewest bytes.
func (r *stateReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n == 0 {
		r.fail("truncated")
		return 0
	}
	if n < 0 || (n > 1 && r.b[n-1] == 0) {
		r.fail("bad number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// varint reads a signed (zigzag) varint of the fewest bytes.
func (r *stateReader) varint() int64 {
	u := r.uvarint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

// byte reads one byte.
func (r *stateReader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.fail("truncated")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// bytes returns the next n bytes, without copying them.
func (r *stateReader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail(fmt.Sprintf("length %d exceeds the %d bytes left", n, len(r.b)))
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

// string reads a length and that many bytes.
func (r *stateReader) string() string {
	return string(r.bytes(r.uvarint()))
}
