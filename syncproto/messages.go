package syncproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Version is the protocol version this package speaks.
const Version = 8

// Magic is the first two bytes of every frame.
var Magic = [2]byte{'S', 'C'}

// HeaderSize is the size of a frame header.
const HeaderSize = 8

// Limits of the protocol (see the package documentation).
const (
	MaxChunk = 256 << 10 // raw bytes in one FileData chunk
	MaxFiles = 1 << 20   // entries in one manifest
	MaxPath  = 4096      // bytes in one path
	// MaxManifestPathBytes bounds the paths of a whole manifest, and
	// its link targets likewise, so that a receiver's memory for one is
	// bounded too (a manifest of MaxFiles paths of MaxPath bytes would be
	// 4 GiB).
	MaxManifestPathBytes = 64 << 20
	MaxRequestBatch      = 16384 // indices in one Request frame
	MaxShortString       = 128   // builds, OS names, client ids, host and user names
	// MaxReleaseMeta bounds a Release message's signed metadata: the
	// release's statement, its signatures and the chain of key lists
	// that leads to the keys that signed it.
	MaxReleaseMeta = 64 << 10
	MaxMessage     = 4096 // human-readable messages
	// MaxChunkRefs bounds the chunk references of one DeltaRequest or
	// ChunkList frame; a file with more chunks takes several frames.
	MaxChunkRefs = 8192
	// MaxSessionChunkRefs bounds the chunk references a client may send
	// in one session (about 20 MiB of the server's memory).
	MaxSessionChunkRefs = 1 << 20
	ChunkHashSize       = 16 // truncated BLAKE3 of one content-defined chunk
	// MaxBlockFile is the largest file that may be asked for with
	// BlockRequest; MaxBlockSums bounds the sums of one BlockRequest, and
	// MinBlockSize and MaxBlockSize its block size.
	MaxBlockFile = 1 << 20
	MaxBlockSums = 8192
	MinBlockSize = 64
	MaxBlockSize = 64 << 10
	// SketchSize is the size of an entry's sketch on the wire, and
	// MaxSketchSums the sums of one Sketch frame.
	SketchSize    = 6
	MaxSketchSums = 16384
	HashSize      = 32 // BLAKE3-256
)

// MsgType is the type byte of a frame.
type MsgType uint8

// Message types. The numbers are part of the protocol.
const (
	MsgHello          MsgType = 1
	MsgWelcome        MsgType = 2
	MsgGetManifest    MsgType = 3
	MsgManifestHeader MsgType = 4
	MsgManifestEntry  MsgType = 5
	MsgRequest        MsgType = 6
	MsgRequestEnd     MsgType = 7
	MsgFileStart      MsgType = 8
	MsgFileData       MsgType = 9
	MsgFileEnd        MsgType = 10
	MsgReport         MsgType = 11
	MsgReportAck      MsgType = 12
	MsgError          MsgType = 13
	MsgUpToDate       MsgType = 14
	MsgDeltaRequest   MsgType = 15
	MsgChunkList      MsgType = 16
	MsgFileCopy       MsgType = 17
	MsgStay           MsgType = 18
	MsgNotice         MsgType = 19
	MsgAdminKey       MsgType = 20
	MsgAdmin          MsgType = 21
	MsgAdminEvent     MsgType = 22
	MsgUpdateStatus   MsgType = 23
	MsgBlockRequest   MsgType = 24
	MsgSketch         MsgType = 25
	MsgManifestSame   MsgType = 26
	MsgManifestEnd    MsgType = 27
	MsgRelease        MsgType = 28
	MsgAdminSession   MsgType = 29
)

var msgNames = map[MsgType]string{
	MsgHello: "Hello", MsgWelcome: "Welcome", MsgGetManifest: "GetManifest",
	MsgManifestHeader: "ManifestHeader", MsgManifestEntry: "ManifestEntry",
	MsgRequest: "Request", MsgRequestEnd: "RequestEnd", MsgFileStart: "FileStart",
	MsgFileData: "FileData", MsgFileEnd: "FileEnd", MsgReport: "Report",
	MsgReportAck: "ReportAck", MsgError: "Error", MsgUpToDate: "UpToDate",
	MsgDeltaRequest: "DeltaRequest", MsgChunkList: "ChunkList", MsgFileCopy: "FileCopy",
	MsgStay: "Stay", MsgNotice: "Notice", MsgAdminKey: "AdminKey", MsgAdmin: "Admin",
	MsgAdminEvent: "AdminEvent", MsgUpdateStatus: "UpdateStatus", MsgBlockRequest: "BlockRequest",
	MsgSketch: "Sketch", MsgManifestSame: "ManifestSame", MsgManifestEnd: "ManifestEnd",
	MsgRelease: "Release", MsgAdminSession: "AdminSession",
	MsgPatchOffer: "PatchOffer", MsgPatchRequest: "PatchRequest", MsgFilePatch: "FilePatch",
	MsgManifestZ: "ManifestZ",
}

func (t MsgType) String() string {
	if n, ok := msgNames[t]; ok {
		return n
	}
	return fmt.Sprintf("MsgType(%d)", uint8(t))
}

// MaxPayload returns the largest payload a frame of type t may carry, and
// false for an unknown type. Readers check it before allocating.
func MaxPayload(t MsgType) (int, bool) {
	str := 2 + MaxShortString
	switch t {
	case MsgHello:
		return 5*str + 2 + MaxPath, true
	case MsgRelease:
		return 4 + MaxReleaseMeta, true
	case MsgWelcome:
		return str + 2 + 2 + MaxMessage + 1, true
	case MsgRequestEnd, MsgReportAck, MsgStay:
		return 0, true
	case MsgNotice:
		return 1 + 4 + 2 + MaxMessage, true
	case MsgAdminKey:
		return AdminKeySize, true
	case MsgAdmin:
		return str + 2 + MaxSealed + 1 + 2 + MaxPath + 4 + 8 + 2 + MaxNotify + 1, true
	case MsgAdminEvent:
		return 2 + MaxMessage, true
	case MsgUpdateStatus:
		return 1 + 4*str + 8 + 2 + MaxPath + 2 + MaxMessage + str + 8 + str + 2*(2+MaxMessage), true
	case MsgAdminSession:
		return SealedTokenSize + 2*str + 8, true
	case MsgGetManifest:
		return HashSize + 1, true
	case MsgUpToDate:
		return str, true
	case MsgDeltaRequest:
		return 4 + 1 + 1 + 4 + MaxChunkRefs*(4+ChunkHashSize), true
	case MsgChunkList:
		return 1 + 1 + 4 + MaxChunkRefs*(4+ChunkHashSize), true
	case MsgBlockRequest:
		return 4 + 4 + 8 + 4 + MaxBlockSums*8, true
	case MsgSketch:
		return 1 + 4 + MaxSketchSums*SketchSize, true
	case MsgManifestSame:
		return 8, true
	case MsgManifestEnd:
		return HashSize, true
	case MsgFileCopy:
		return 8 + 4, true
	case MsgManifestHeader:
		return str + 4 + 8 + 2 + MaxPath + 4, true
	case MsgManifestEntry:
		return 2 + MaxPath + 8 + 8 + 4 + 1 + HashSize + 2 + MaxPath, true
	case MsgRequest:
		return 4 + 4*MaxRequestBatch, true
	case MsgFileStart:
		return 4 + 8, true
	case MsgFileData:
		// A zstd frame is never much larger than its input; the sender
		// switches to raw when it would be, so MaxChunk plus a small
		// margin bounds every legal chunk.
		return 1 + 4 + MaxChunk + 1024, true
	case MsgFileEnd:
		return HashSize, true
	case MsgReport:
		return 1 + str + 4 + 8 + 2 + MaxMessage + str + 4 + 8 + 8, true
	case MsgError:
		return 2 + 2 + MaxMessage + 2, true
	case MsgManifestZ:
		return 1 + MaxChunk, true
	}
	return maxPatchPayload(t)
}

// Message is one protocol message.
type Message interface {
	Type() MsgType
	// appendPayload appends the encoded payload to b.
	appendPayload(b []byte) []byte
}

// Hello is the client's first message.
type Hello struct {
	ClientBuild string // installed build, "" when none is installed yet
	OS          string // "windows", "linux" or "darwin"
	ClientID    string // stable per install folder
	Host        string // the workstation's host name, for the administrator
	User        string // the OS user running the client, for the administrator
	Path        string // the install folder, for the administrator (at most MaxPath bytes)
}

// Release carries the publisher's signed metadata of the release the
// server serves to the client's OS (see "Signed releases" in the package
// documentation). The server sends it, when it has one, right before its
// answer to GetManifest (UpToDate or ManifestHeader); its content is
// opaque here and verified by the client.
type Release struct {
	Meta []byte
}

// Welcome is the server's answer to Hello.
type Welcome struct {
	ServerBuild    string
	Compatible     bool   // the client's build may be updated differentially
	UpdatesEnabled bool   // false: the client changes nothing
	Message        string // why incompatible or disabled, for people
	Flags          uint8  // WelcomeRenewID; other bits are refused
}

// Welcome.Flags.
const (
	// WelcomeRenewID tells the client that its ClientID was seen from
	// another host (two workstations cloned from one disk image): the
	// client makes itself a new id, and names itself by it from its next
	// session on.
	WelcomeRenewID uint8 = 1 << 0
)

// GetManifest asks for the manifest of the client's OS folder.
type GetManifest struct {
	// Have is the ManifestDigest of the manifest the client's install
	// matches, as far as it can tell from its own records; zero for none.
	// When it is the server's current one, the server answers UpToDate
	// instead of sending the manifest again.
	Have  [HashSize]byte
	Flags uint8 // GetRaw, GetSketch, GetPatches, GetZManifest
}

// GetManifest flags.
const (
	// GetRaw asks for file data without compression: on a fast link
	// compressing costs more time than it saves.
	GetRaw uint8 = 1 << 0
	// GetSketch says that the client keeps the entries of an earlier
	// manifest and will name them by a Sketch after the ManifestHeader,
	// so that the server sends only the entries it lacks (see the
	// package documentation, "Manifests by difference").
	GetSketch uint8 = 1 << 1
)

// Sketch names the entries of the manifest a client keeps, in its order,
// by their EntrySketch values. All frames but the last have More set; a
// client with nothing to name sends one empty frame.
type Sketch struct {
	More bool
	Sums []uint64 // each below 1<<(8*SketchSize)
}

// ManifestSame, among the entries of a manifest sent to a client that
// sent a Sketch, stands for Count entries that are those the client named
// From on, in order. The runs of one manifest name increasing entries of
// the sketch: each From is past the end of the run before.
type ManifestSame struct {
	From, Count uint32
}

// ManifestEnd follows the entries of a manifest sent to a client that
// sent a Sketch: the manifest's digest, which the client checks against
// the manifest it rebuilt.
type ManifestEnd struct {
	Digest [HashSize]byte
}

// UpToDate answers a GetManifest whose Have is the server's current
// manifest: nothing to send. The client goes on with Report.
type UpToDate struct{ Build string }

// ChunkRef names one content-defined chunk of a file: its length and the
// first ChunkHashSize bytes of its BLAKE3. Offsets are implied by the
// lengths of the chunks before it.
type ChunkRef struct {
	Len  uint32
	Hash [ChunkHashSize]byte
}

// DeltaRequest asks for the file at Index, as the difference from a base
// file the client has: Chunks are the base file's chunks, cut with the
// chunking parameter Bits (see internal/cdc). A base with more than
// MaxChunkRefs chunks takes several frames for the same Index, all but
// the last with DeltaMore. An empty base asks for the whole file (with
// DeltaWantList, to get its chunk list too).
type DeltaRequest struct {
	Index  uint32
	Bits   uint8
	Flags  uint8 // DeltaMore, DeltaWantList
	Chunks []ChunkRef
}

// DeltaRequest flags.
const (
	DeltaMore     uint8 = 1 << 0 // another DeltaRequest frame for this index follows
	DeltaWantList uint8 = 1 << 1 // send the new file's chunk list (cut with Bits) before its data
)

// BlockRequest asks for the file at Index, of at most MaxBlockFile bytes,
// as the difference from a base file of BaseSize bytes that the client
// cuts into blocks of BlockSize bytes (the last may be shorter) and names
// by their sums, one per block (see internal/cdc, "Block sums"). The
// server answers as for DeltaRequest: FileCopy for the base's blocks it
// finds in the new file, at any offset, and FileData for the rest.
type BlockRequest struct {
	Index     uint32
	BlockSize uint32
	BaseSize  uint64
	Sums      []BlockSum
}

// BlockSum names one block of a base: its rolling weak sum and its strong
// sum.
type BlockSum struct {
	Weak, Strong uint32
}

// ChunkList carries the chunks of the file being sent, cut with Bits,
// after its FileStart when the client asked for it with DeltaWantList.
// All frames but the last have More set.
type ChunkList struct {
	Bits   uint8
	More   bool
	Chunks []ChunkRef
}

// FileCopy, in the data of a file requested by DeltaRequest, stands for Len
// bytes the client already has: the bytes of its base file at Off.
type FileCopy struct {
	Off uint64
	Len uint32
}

// ManifestHeader precedes Count ManifestEntry messages.
type ManifestHeader struct {
	Build      string
	Count      uint32
	TotalBytes uint64
	// PostInstall names a file of the manifest that the client runs
	// after a switch that changed files, for at most PostInstallTimeout
	// seconds; "" for none.
	PostInstall        string
	PostInstallTimeout uint32
}

// Entry flags.
const (
	FlagPreserve uint8 = 1 << 0 // copy only when missing or on a full update
	// FlagSymlink marks a symbolic link: Target is its target, a relative
	// slash path; Size is len(Target) and Hash the BLAKE3 of Target. A
	// link is never requested: the manifest says all there is.
	FlagSymlink uint8 = 1 << 1
	// FlagDir marks a folder that holds nothing in the release: Size is
	// 0, Target empty, Hash all zero and Mode its permission bits. Only
	// such leaf folders are listed; a folder with files is implied by
	// them. A folder is never requested: the client makes it.
	FlagDir uint8 = 1 << 2
)

// ManifestEntry describes one file of the update folder (or a link, or
// an empty folder: see the flags).
type ManifestEntry struct {
	Path    string // slash-separated, relative to the update folder
	Size    uint64
	MtimeNs int64 // modification time, Unix nanoseconds
	Mode    uint32
	Flags   uint8
	Hash    [HashSize]byte
	Target  string // FlagSymlink: the link's target; "" otherwise
}

// Request names manifest indices the client wants.
type Request struct{ Indices []uint32 }

// RequestEnd ends the client's requests.
type RequestEnd struct{}

// FileStart begins a requested file.
type FileStart struct {
	Index uint32
	Size  uint64
}

// Chunk encodings.
const (
	EncodingRaw  uint8 = 0
	EncodingZstd uint8 = 1
)

// FileData carries one chunk. Data aliases the Reader's buffer and is valid
// only until the next Read.
type FileData struct {
	Encoding uint8
	RawLen   uint32
	Data     []byte
}

// FileEnd ends a file with the BLAKE3 hash of its whole content.
type FileEnd struct{ Hash [HashSize]byte }

// Outcome is what a sync came to, as reported to the server.
type Outcome uint8

// Outcomes. The numbers are part of the protocol.
const (
	OutcomeUpdated  Outcome = 1
	OutcomeUpToDate Outcome = 2
	OutcomeFailed   Outcome = 3
	OutcomeDeclined Outcome = 4
	OutcomeChecked  Outcome = 5
	// OutcomeInterrupted is a sync stopped by the user (Ctrl-C, a
	// signal, the program's context cancelled) or cut by a lost
	// connection.
	OutcomeInterrupted Outcome = 6
)

var outcomeNames = map[Outcome]string{
	OutcomeUpdated: "updated", OutcomeUpToDate: "up-to-date", OutcomeFailed: "failed",
	OutcomeDeclined: "declined", OutcomeChecked: "checked", OutcomeInterrupted: "interrupted",
}

// Valid reports whether o is one of the Outcome constants.
func (o Outcome) Valid() bool {
	_, ok := outcomeNames[o]
	return ok
}

func (o Outcome) String() string {
	if n, ok := outcomeNames[o]; ok {
		return n
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Report is the client's account of the sync.
type Report struct {
	Outcome Outcome
	Build   string // build installed after the sync
	Files   uint32 // files fetched
	Bytes   uint64 // bytes received on the wire for file data
	Message string // the reason, on failure
	// Step is the step of the sync that failed or was interrupted
	// ("connect", "manifest", "preflight", "fetch", "verify", "backup",
	// "install" ...), at most MaxShortString bytes; "" for a sync that
	// ended well.
	Step string
	// Duration is how long the sync took, in milliseconds.
	Duration uint32
	// At is 0 for the sync of this session; otherwise the report is of an
	// earlier sync that could not report then, and At is when that sync
	// ended, in Unix seconds (see "Reports delivered late").
	At int64
	// ID names the sync the report is of: chosen at random by the client
	// for each sync, never 0, the same however often the report is sent.
	// A report delivered twice (its ReportAck lost) is recorded once.
	ID uint64
}

// ReportAck acknowledges a Report.
type ReportAck struct{}

// Code is an error code carried by Error.
type Code uint16

// Error codes. The numbers are part of the protocol.
const (
	CodeProtocol      Code = 1  // malformed or unexpected message
	CodeVersion       Code = 2  // protocol version not supported
	CodeBadRequest    Code = 3  // request names something not in the manifest
	CodeUnknownOS     Code = 4  // no update folder for this OS
	CodeFileChanged   Code = 5  // file changed in the update folder; retry
	CodeInternal      Code = 6  // server-side failure
	CodeBusy          Code = 7  // overloaded; retry later
	CodeShuttingDown  Code = 8  // server stopping; retry later
	CodeUpdateAborted Code = 9  // client gave up (sent by the client)
	CodeUpdating      Code = 10 // the server is updating itself; retry after Error.Retry seconds
	CodeDenied        Code = 11 // administrator login refused
	CodeRefused       Code = 12 // administrator request refused (bad release, nothing to cancel, ...)
	CodePlaintext     Code = 13 // plain TCP refused: the server accepts TLS only
)

var codeNames = map[Code]string{
	CodeProtocol: "protocol error", CodeVersion: "unsupported protocol version",
	CodeBadRequest: "bad request", CodeUnknownOS: "unknown OS",
	CodeFileChanged: "file changed on server", CodeInternal: "internal server error",
	CodeBusy: "server busy", CodeShuttingDown: "server shutting down",
	CodeUpdateAborted: "update aborted", CodeUpdating: "server is updating",
	CodeDenied: "access denied", CodeRefused: "request refused",
	CodePlaintext: "TLS required",
}

func (c Code) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("code %d", uint16(c))
}

// Error is a final error from the peer. It is also a Go error, so a Reader
// can hand it to the caller as received.
type Error struct {
	Code    Code
	Message string
	// Retry is how many seconds the peer should wait before it tries
	// again, for CodeBusy, CodeShuttingDown and CodeUpdating; 0 when not
	// said. A client adds jitter so that a crowd does not come back at
	// once.
	Retry uint16
}

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code.String()
	}
	return e.Code.String() + ": " + e.Message
}

func (Hello) Type() MsgType          { return MsgHello }
func (Welcome) Type() MsgType        { return MsgWelcome }
func (GetManifest) Type() MsgType    { return MsgGetManifest }
func (ManifestHeader) Type() MsgType { return MsgManifestHeader }
func (ManifestEntry) Type() MsgType  { return MsgManifestEntry }
func (Request) Type() MsgType        { return MsgRequest }
func (RequestEnd) Type() MsgType     { return MsgRequestEnd }
func (FileStart) Type() MsgType      { return MsgFileStart }
func (FileData) Type() MsgType       { return MsgFileData }
func (FileEnd) Type() MsgType        { return MsgFileEnd }
func (Report) Type() MsgType         { return MsgReport }
func (ReportAck) Type() MsgType      { return MsgReportAck }
func (Error) Type() MsgType          { return MsgError }
func (UpToDate) Type() MsgType       { return MsgUpToDate }
func (Release) Type() MsgType        { return MsgRelease }
func (DeltaRequest) Type() MsgType   { return MsgDeltaRequest }
func (ChunkList) Type() MsgType      { return MsgChunkList }
func (FileCopy) Type() MsgType       { return MsgFileCopy }
func (BlockRequest) Type() MsgType   { return MsgBlockRequest }
func (Sketch) Type() MsgType         { return MsgSketch }
func (ManifestSame) Type() MsgType   { return MsgManifestSame }
func (ManifestEnd) Type() MsgType    { return MsgManifestEnd }

// Sentinel errors. Decoding errors wrap ErrMalformed.
var (
	ErrMalformed   = errors.New("syncproto: malformed message")
	ErrBadMagic    = errors.New("syncproto: bad frame magic (not a SmartClient update peer)")
	ErrVersion     = errors.New("syncproto: unsupported protocol version")
	ErrUnknownType = errors.New("syncproto: unknown message type")
	ErrTooLarge    = errors.New("syncproto: frame length over the limit for its type")
	ErrUnexpected  = errors.New("syncproto: unexpected message")
)

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func (m Hello) appendPayload(b []byte) []byte {
	b = appendString(b, m.ClientBuild)
	b = appendString(b, m.OS)
	b = appendString(b, m.ClientID)
	b = appendString(b, m.Host)
	b = appendString(b, m.User)
	return appendString(b, m.Path)
}

func (m Release) appendPayload(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Meta)))
	return append(b, m.Meta...)
}

func (m Welcome) appendPayload(b []byte) []byte {
	b = appendString(b, m.ServerBuild)
	b = appendBool(b, m.Compatible)
	b = appendBool(b, m.UpdatesEnabled)
	b = appendString(b, m.Message)
	return append(b, m.Flags)
}

func (RequestEnd) appendPayload(b []byte) []byte { return b }
func (ReportAck) appendPayload(b []byte) []byte  { return b }

func (m GetManifest) appendPayload(b []byte) []byte {
	b = append(b, m.Have[:]...)
	return append(b, m.Flags)
}

func (m UpToDate) appendPayload(b []byte) []byte { return appendString(b, m.Build) }

func appendRefs(b []byte, refs []ChunkRef) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(refs)))
	for _, r := range refs {
		b = binary.BigEndian.AppendUint32(b, r.Len)
		b = append(b, r.Hash[:]...)
	}
	return b
}

func (m DeltaRequest) appendPayload(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, m.Index)
	b = append(b, m.Bits, m.Flags)
	return appendRefs(b, m.Chunks)
}

func (m BlockRequest) appendPayload(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, m.Index)
	b = binary.BigEndian.AppendUint32(b, m.BlockSize)
	b = binary.BigEndian.AppendUint64(b, m.BaseSize)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Sums)))
	for _, s := range m.Sums {
		b = binary.BigEndian.AppendUint32(b, s.Weak)
		b = binary.BigEndian.AppendUint32(b, s.Strong)
	}
	return b
}

func (m Sketch) appendPayload(b []byte) []byte {
	b = appendBool(b, m.More)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Sums)))
	for _, v := range m.Sums {
		b = binary.BigEndian.AppendUint16(b, uint16(v>>32))
		b = binary.BigEndian.AppendUint32(b, uint32(v))
	}
	return b
}

func (m ManifestSame) appendPayload(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, m.From)
	return binary.BigEndian.AppendUint32(b, m.Count)
}

func (m ManifestEnd) appendPayload(b []byte) []byte { return append(b, m.Digest[:]...) }

func (m ChunkList) appendPayload(b []byte) []byte {
	b = append(b, m.Bits)
	b = appendBool(b, m.More)
	return appendRefs(b, m.Chunks)
}

func (m FileCopy) appendPayload(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, m.Off)
	return binary.BigEndian.AppendUint32(b, m.Len)
}

func (m ManifestHeader) appendPayload(b []byte) []byte {
	b = appendString(b, m.Build)
	b = binary.BigEndian.AppendUint32(b, m.Count)
	b = binary.BigEndian.AppendUint64(b, m.TotalBytes)
	b = appendString(b, m.PostInstall)
	return binary.BigEndian.AppendUint32(b, m.PostInstallTimeout)
}

func (m ManifestEntry) appendPayload(b []byte) []byte {
	b = appendString(b, m.Path)
	b = binary.BigEndian.AppendUint64(b, m.Size)
	b = binary.BigEndian.AppendUint64(b, uint64(m.MtimeNs))
	b = binary.BigEndian.AppendUint32(b, m.Mode)
	b = append(b, m.Flags)
	b = append(b, m.Hash[:]...)
	return appendString(b, m.Target)
}

func (m Request) appendPayload(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Indices)))
	for _, i := range m.Indices {
		b = binary.BigEndian.AppendUint32(b, i)
	}
	return b
}

func (m FileStart) appendPayload(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, m.Index)
	return binary.BigEndian.AppendUint64(b, m.Size)
}

func (m FileData) appendPayload(b []byte) []byte {
	b = append(b, m.Encoding)
	b = binary.BigEndian.AppendUint32(b, m.RawLen)
	return append(b, m.Data...)
}

func (m FileEnd) appendPayload(b []byte) []byte { return append(b, m.Hash[:]...) }

func (m Report) appendPayload(b []byte) []byte {
	b = append(b, uint8(m.Outcome))
	b = appendString(b, m.Build)
	b = binary.BigEndian.AppendUint32(b, m.Files)
	b = binary.BigEndian.AppendUint64(b, m.Bytes)
	b = appendString(b, m.Message)
	b = appendString(b, m.Step)
	b = binary.BigEndian.AppendUint32(b, m.Duration)
	b = binary.BigEndian.AppendUint64(b, uint64(m.At))
	return binary.BigEndian.AppendUint64(b, m.ID)
}

func (m Error) appendPayload(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(m.Code))
	b = appendString(b, m.Message)
	return binary.BigEndian.AppendUint16(b, m.Retry)
}

// decoder reads fields from a payload with a sticky error, in the manner
// of archive/zip's checksum reader: the first problem is kept and every
// later read returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.fail("%s: need %d bytes, have %d", what, n, len(d.b))
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8(what string) uint8 {
	if v := d.take(1, what); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) bool(what string) bool {
	switch d.u8(what) {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("%s: boolean is neither 0 nor 1", what)
	return false
}

func (d *decoder) u16(what string) uint16 {
	if v := d.take(2, what); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *decoder) u32(what string) uint32 {
	if v := d.take(4, what); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) u64(what string) uint64 {
	if v := d.take(8, what); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) str(what string, limit int) string {
	n := int(d.u16(what + " length"))
	if d.err != nil {
		return ""
	}
	if n > limit {
		d.fail("%s: %d bytes, limit %d", what, n, limit)
		return ""
	}
	v := d.take(n, what)
	if d.err != nil {
		return ""
	}
	if !utf8.Valid(v) {
		d.fail("%s: not valid UTF-8", what)
		return ""
	}
	return string(v)
}

func (d *decoder) hash(what string) (h [HashSize]byte) {
	copy(h[:], d.take(HashSize, what))
	return h
}

// refs reads a count and that many chunk references, none of them empty.
func (d *decoder) refs() []ChunkRef {
	n := d.u32("chunk count")
	if d.err != nil {
		return nil
	}
	if n > MaxChunkRefs {
		d.fail("%d chunks, limit %d", n, MaxChunkRefs)
		return nil
	}
	if int(n)*(4+ChunkHashSize) != len(d.b) {
		d.fail("%d chunks in %d bytes", n, len(d.b))
		return nil
	}
	refs := make([]ChunkRef, n)
	for i := range refs {
		refs[i].Len = d.u32("chunk length")
		copy(refs[i].Hash[:], d.take(ChunkHashSize, "chunk hash"))
		if refs[i].Len == 0 {
			d.fail("chunk %d is empty", i)
			return nil
		}
	}
	return refs
}

// blockRequest reads a BlockRequest: a block size in range and exactly one
// sum for each block of the base.
func (d *decoder) blockRequest() BlockRequest {
	r := BlockRequest{Index: d.u32("index"), BlockSize: d.u32("block size"), BaseSize: d.u64("base size")}
	n := d.u32("sum count")
	switch {
	case d.err != nil:
		return r
	case r.BlockSize < MinBlockSize || r.BlockSize > MaxBlockSize:
		d.fail("block size %d out of range %d..%d", r.BlockSize, MinBlockSize, MaxBlockSize)
		return r
	case r.BaseSize == 0 || (r.BaseSize-1)/uint64(r.BlockSize)+1 != uint64(n):
		d.fail("%d sums for a base of %d bytes in blocks of %d", n, r.BaseSize, r.BlockSize)
		return r
	case n > MaxBlockSums:
		d.fail("%d sums, limit %d", n, MaxBlockSums)
		return r
	case int(n)*8 != len(d.b):
		d.fail("%d sums in %d bytes", n, len(d.b))
		return r
	}
	r.Sums = make([]BlockSum, n)
	for i := range r.Sums {
		r.Sums[i] = BlockSum{Weak: d.u32("weak sum"), Strong: d.u32("strong sum")}
	}
	return r
}

// sketch reads a Sketch: a count and that many sums.
func (d *decoder) sketch() Sketch {
	k := Sketch{More: d.bool("more")}
	n := d.u32("sum count")
	switch {
	case d.err != nil:
		return k
	case n > MaxSketchSums:
		d.fail("%d sums, limit %d", n, MaxSketchSums)
		return k
	case int(n)*SketchSize != len(d.b):
		d.fail("%d sums in %d bytes", n, len(d.b))
		return k
	case k.More && n == 0:
		d.fail("an empty frame with more to come")
		return k
	}
	if n > 0 {
		k.Sums = make([]uint64, n)
	}
	for i := range k.Sums {
		hi := d.take(2, "sum")
		k.Sums[i] = uint64(binary.BigEndian.Uint16(hi))<<32 | uint64(d.u32("sum"))
	}
	return k
}

func (d *decoder) end(t MsgType) error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return fmt.Errorf("decoding %v: %w", t, d.err)
	}
	return nil
}

// Decode decodes the payload of a frame of type t. FileData.Data aliases
// payload; everything else is copied.
func Decode(t MsgType, payload []byte) (Message, error) {
	limit, ok := MaxPayload(t)
	if !ok {
		return nil, fmt.Errorf("decoding type %d: %w", uint8(t), ErrUnknownType)
	}
	if len(payload) > limit {
		return nil, fmt.Errorf("decoding %v: %d bytes: %w", t, len(payload), ErrTooLarge)
	}
	d := &decoder{b: payload}
	var m Message
	switch t {
	case MsgHello:
		m = Hello{
			ClientBuild: d.str("client build", MaxShortString),
			OS:          d.str("OS", MaxShortString),
			ClientID:    d.str("client id", MaxShortString),
			Host:        d.str("host", MaxShortString),
			User:        d.str("user", MaxShortString),
			Path:        d.str("path", MaxPath),
		}
	case MsgRelease:
		n := d.u32("metadata length")
		if d.err == nil && n > MaxReleaseMeta {
			d.fail("metadata of %d bytes, limit %d", n, MaxReleaseMeta)
		}
		r := Release{}
		if d.err == nil {
			r.Meta = bytes.Clone(d.take(int(n), "metadata"))
		}
		m = r
	case MsgWelcome:
		w := Welcome{
			ServerBuild:    d.str("server build", MaxShortString),
			Compatible:     d.bool("compatible"),
			UpdatesEnabled: d.bool("updates enabled"),
			Message:        d.str("message", MaxMessage),
			Flags:          d.u8("flags"),
		}
		if d.err == nil && w.Flags&^WelcomeRenewID != 0 {
			d.fail("unknown flags %#x", w.Flags)
		}
		m = w
	case MsgGetManifest:
		g := GetManifest{Have: d.hash("have"), Flags: d.u8("flags")}
		if d.err == nil && g.Flags&^(GetRaw|GetSketch|GetPatches|GetZManifest) != 0 {
			d.fail("unknown flags %#x", g.Flags)
		}
		m = g
	case MsgUpToDate:
		m = UpToDate{Build: d.str("build", MaxShortString)}
	case MsgDeltaRequest:
		r := DeltaRequest{Index: d.u32("index"), Bits: d.u8("bits"), Flags: d.u8("flags")}
		if d.err == nil && r.Flags&^(DeltaMore|DeltaWantList) != 0 {
			d.fail("unknown flags %#x", r.Flags)
		}
		r.Chunks = d.refs()
		m = r
	case MsgBlockRequest:
		m = d.blockRequest()
	case MsgSketch:
		m = d.sketch()
	case MsgManifestSame:
		r := ManifestSame{From: d.u32("from"), Count: d.u32("count")}
		if d.err == nil && r.Count == 0 {
			d.fail("a run of 0 entries")
		}
		m = r
	case MsgManifestEnd:
		m = ManifestEnd{Digest: d.hash("digest")}
	case MsgChunkList:
		l := ChunkList{Bits: d.u8("bits"), More: d.bool("more")}
		l.Chunks = d.refs()
		m = l
	case MsgFileCopy:
		c := FileCopy{Off: d.u64("offset"), Len: d.u32("length")}
		if d.err == nil && c.Len == 0 {
			d.fail("copy of 0 bytes")
		}
		m = c
	case MsgRequestEnd:
		m = RequestEnd{}
	case MsgStay:
		m = Stay{}
	case MsgReportAck:
		m = ReportAck{}
	case MsgManifestHeader:
		h := ManifestHeader{Build: d.str("build", MaxShortString), Count: d.u32("count"), TotalBytes: d.u64("total bytes"),
			PostInstall: d.str("post-install", MaxPath), PostInstallTimeout: d.u32("post-install timeout")}
		if d.err == nil && h.Count > MaxFiles {
			d.fail("manifest of %d files, limit %d", h.Count, MaxFiles)
		}
		m = h
	case MsgManifestEntry:
		m = ManifestEntry{
			Path:    d.str("path", MaxPath),
			Size:    d.u64("size"),
			MtimeNs: int64(d.u64("mtime")),
			Mode:    d.u32("mode"),
			Flags:   d.u8("flags"),
			Hash:    d.hash("hash"),
			Target:  d.str("link target", MaxPath),
		}
	case MsgRequest:
		n := d.u32("index count")
		if d.err == nil && n > MaxRequestBatch {
			d.fail("%d indices, limit %d", n, MaxRequestBatch)
		}
		if d.err == nil && int(n)*4 != len(d.b) {
			d.fail("%d indices in %d bytes", n, len(d.b))
		}
		var r Request
		if d.err == nil {
			r.Indices = make([]uint32, n)
			for i := range r.Indices {
				r.Indices[i] = d.u32("index")
			}
		}
		m = r
	case MsgFileStart:
		m = FileStart{Index: d.u32("index"), Size: d.u64("size")}
	case MsgFileData:
		fd := FileData{Encoding: d.u8("encoding"), RawLen: d.u32("raw length")}
		if d.err == nil {
			switch {
			case fd.Encoding != EncodingRaw && fd.Encoding != EncodingZstd:
				d.fail("unknown encoding %d", fd.Encoding)
			case fd.RawLen == 0 || fd.RawLen > MaxChunk:
				d.fail("chunk of %d raw bytes, must be 1..%d", fd.RawLen, MaxChunk)
			case fd.Encoding == EncodingRaw && int(fd.RawLen) != len(d.b):
				d.fail("raw chunk declares %d bytes, carries %d", fd.RawLen, len(d.b))
			}
		}
		fd.Data = d.b
		d.b = nil
		m = fd
	case MsgFileEnd:
		m = FileEnd{Hash: d.hash("hash")}
	case MsgReport:
		r := Report{
			Outcome:  Outcome(d.u8("outcome")),
			Build:    d.str("build", MaxShortString),
			Files:    d.u32("files"),
			Bytes:    d.u64("bytes"),
			Message:  d.str("message", MaxMessage),
			Step:     d.str("step", MaxShortString),
			Duration: d.u32("duration"),
			At:       int64(d.u64("at")),
			ID:       d.u64("id"),
		}
		if d.err == nil {
			if !r.Outcome.Valid() {
				d.fail("unknown outcome %d", r.Outcome)
			} else if r.At < 0 {
				d.fail("report time %d before 1970", r.At)
			}
		}
		m = r
	case MsgError:
		m = &Error{Code: Code(d.u16("code")), Message: d.str("message", MaxMessage), Retry: d.u16("retry")}
	case MsgPatchOffer, MsgPatchRequest, MsgFilePatch:
		m = decodePatch(t, d)
	case MsgManifestZ:
		z := ManifestZ{More: d.bool("more")}
		if d.err == nil && len(d.b) == 0 {
			d.fail("an empty chunk of the compressed manifest")
		}
		// Data aliases the payload, as FileData's does.
		z.Data, d.b = d.b, nil
		m = z
	default:
		m = decodeSession(t, d)
	}
	if err := d.end(t); err != nil {
		return nil, err
	}
	return m, nil
}
