package syncproto

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

var update = flag.Bool("update", false, "rewrite the golden frames in testdata/frames")

const goldenDir = "../testdata/frames"

// samples holds one message of every type; the golden files are made from it.
var samples = map[string]Message{
	"hello":                Hello{ClientBuild: "7.00.240501A", OS: "linux", ClientID: "0123456789abcdef", Host: "caixa-07", User: "maria", Path: `C:\TOTVS\SmartClient`},
	"hello_no_path":        Hello{ClientBuild: "7.00.240501A", OS: "linux", ClientID: "0123456789abcdef", Host: "caixa-07", User: "maria"},
	"release":              Release{Meta: []byte("smartsync-release v1\n...")},
	"notice_heartbeat":     Notice{Kind: NoticeHeartbeat},
	"welcome":              Welcome{ServerBuild: "7.00.240501A", Compatible: true, UpdatesEnabled: true},
	"welcome_renew_id":     Welcome{ServerBuild: "7.00.240501A", Compatible: true, UpdatesEnabled: true, Flags: WelcomeRenewID},
	"welcome_incompat":     Welcome{ServerBuild: "7.00.240501A", UpdatesEnabled: true, Message: "client build 7.00.200101A is older than 7.00.231101A"},
	"get_manifest":         GetManifest{Have: [32]byte{7, 7}, Flags: GetRaw},
	"up_to_date":           UpToDate{Build: "7.00.240501A"},
	"delta_request":        DeltaRequest{Index: 4, Bits: 12, Flags: DeltaWantList, Chunks: []ChunkRef{{Len: 4096, Hash: [16]byte{1}}, {Len: 100, Hash: [16]byte{2}}}},
	"chunk_list":           ChunkList{Bits: 16, More: true, Chunks: []ChunkRef{{Len: 65536, Hash: [16]byte{3}}}},
	"block_request":        BlockRequest{Index: 7, BlockSize: 128, BaseSize: 300, Sums: []BlockSum{{Weak: 1, Strong: 2}, {Weak: 3, Strong: 4}, {Weak: 0xfffffffe, Strong: 0xffffffff}}},
	"sketch":               Sketch{More: true, Sums: []uint64{0, 1, 1<<48 - 1, 0x123456789abc}},
	"sketch_empty":         Sketch{},
	"manifest_same":        ManifestSame{From: 5, Count: 17},
	"manifest_end":         ManifestEnd{Digest: [32]byte{9, 8, 7}},
	"get_manifest_sketch":  GetManifest{Have: [32]byte{1}, Flags: GetRaw | GetSketch},
	"file_copy":            FileCopy{Off: 1 << 33, Len: 65536},
	"get_manifest_patches": GetManifest{Flags: GetSketch | GetPatches},
	"patch_offer":          PatchOffer{More: true, Offers: []PatchRef{{Index: 3, Base: [32]byte{1}, Size: 4000}, {Index: 3, Base: [32]byte{2}, Size: 5000}, {Index: 9, Base: [32]byte{1}, Size: 1 << 30}}},
	"patch_offer_empty":    PatchOffer{},
	"patch_request":        PatchRequest{Index: 3, Base: [32]byte{2}},
	"file_patch":           FilePatch{Data: []byte{0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3}},
	"get_manifest_z":       GetManifest{Flags: GetSketch | GetPatches | GetZManifest},
	"manifest_z":           ManifestZ{More: true, Data: []byte{0x28, 0xb5, 0x2f, 0xfd, 4, 5, 6}},
	"manifest_z_last":      ManifestZ{Data: []byte{7}},
	"manifest_header":      ManifestHeader{Build: "7.00.240501A", Count: 3, TotalBytes: 12345, PostInstall: "tools/upgrade.sh", PostInstallTimeout: 120},
	"manifest_entry":       ManifestEntry{Path: "lib/libsmartclient.so", Size: 4096, MtimeNs: 1714521600123456789, Mode: 0o755, Flags: FlagPreserve, Hash: [32]byte{1, 2, 3}},
	"manifest_dir":         ManifestEntry{Path: "TOTVS.app/Contents/Frameworks", Mode: 0o755, Flags: FlagDir},
	"manifest_link":        ManifestEntry{Path: "smartclient.app/Contents/Frameworks/Core.framework/Core", Size: 23, MtimeNs: 1714521600000000000, Mode: 0o777, Flags: FlagSymlink, Hash: [32]byte{4}, Target: "Versions/Current/Core"},
	"request":              Request{Indices: []uint32{0, 2, 7}},
	"request_end":          RequestEnd{},
	"file_start":           FileStart{Index: 2, Size: 5},
	"file_data":            FileData{Encoding: EncodingRaw, RawLen: 5, Data: []byte("hello")},
	"file_end":             FileEnd{Hash: [32]byte{9, 9, 9}},
	"report":               Report{Outcome: OutcomeFailed, Build: "7.00.231101A", Files: 3, Bytes: 999, Message: "disk full", Step: "fetch", Duration: 61_000, ID: 0x1f2e3d4c5b6a7988},
	"report_ok":            Report{Outcome: OutcomeUpdated, Build: "7.00.240501A", Files: 12, Bytes: 1 << 33, Duration: 4_200, ID: 1},
	"report_late":          Report{Outcome: OutcomeInterrupted, Build: "7.00.231101A", Message: "context canceled", Step: "fetch", Duration: 900, At: 1795000000, ID: 0xfedcba9876543210},
	"report_ack":           ReportAck{},
	"error":                &Error{Code: CodeFileChanged, Message: "lib/x.so changed while being sent; retry"},
	"error_updating":       &Error{Code: CodeUpdating, Message: "server is updating, retry in 95 s", Retry: 95},
	"stay":                 Stay{},
	"notice":               Notice{Kind: NoticeCountdown, Seconds: 119, Message: "The server will restart for an update in 1:59. Please save your work and quit."},
	"admin_key":            AdminKey{Key: [32]byte{9: 1, 31: 2}},
	"admin":                Admin{User: "admin", Sealed: bytes.Repeat([]byte{0xa5}, 40), Op: OpUpdate, Source: "https://vendor.example/appserver-7.01.tar.gz", Countdown: 120, At: 1795000000, Notify: "admin@example.com", Flags: AdminAllowDowngrade},
	"admin_token":          Admin{User: "admin", Sealed: bytes.Repeat([]byte{0x5a}, SealedTokenSize), Op: OpStatus, Flags: AdminToken},
	"admin_session":        AdminSession{Sealed: bytes.Repeat([]byte{0x3c}, SealedTokenSize), Session: "s-0011223344556677", UpdateID: "20261123-020000-1a2b", Expires: 1795001200},
	"update_status_token":  UpdateStatus{State: StateDone, ID: "20261123-020000-1a2b", RunningBuild: "7.01.250101A", OldBuild: "7.00.240501A", NewBuild: "7.01.250101A", When: 1795000300, Session: "s-0011223344556677"},
	"update_status_feed":   UpdateStatus{State: StateNone, RunningBuild: "7.00.240501A", FeedChecked: 1795000000, NewestBuild: "7.01.250101A", NewestNotes: "Faster start-up"},
	"admin_event":          AdminEvent{Text: "release 7.01.250101A verified (key ed25519:abcd)"},
	"update_status":        UpdateStatus{State: StateReverted, ID: "20261123-020000-1a2b", RunningBuild: "7.00.240501A", OldBuild: "7.00.240501A", NewBuild: "7.01.250101A", When: 1795000300, Source: "/srv/rel/appserver-7.01.tar.gz", Message: "the new server did not answer within 30s"},
}

func encode(t testing.TB, m Message) []byte {
	t.Helper()
	var b bytes.Buffer
	w := NewWriter(&b)
	if err := w.Write(m); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRoundTrip(t *testing.T) {
	for name, m := range samples {
		t.Run(name, func(t *testing.T) {
			frame := encode(t, m)
			r := NewReader(bytes.NewReader(frame))
			got, err := r.Read()
			if e, ok := err.(*Error); ok {
				got, err = e, nil
			}
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("got %#v, want %#v", got, m)
			}
			if r.N != int64(len(frame)) {
				t.Fatalf("reader counted %d bytes, frame has %d", r.N, len(frame))
			}
			if _, err := r.Read(); err != io.EOF {
				t.Fatalf("after the frame: %v, want io.EOF", err)
			}
		})
	}
}

// TestGolden pins the wire format: a change that alters the bytes of an
// existing message breaks old peers and must bump Version.
func TestGolden(t *testing.T) {
	for name, m := range samples {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(goldenDir, name+".bin")
			frame := encode(t, m)
			if *update {
				if err := os.MkdirAll(goldenDir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, frame, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./syncproto -update to create)", err)
			}
			if !bytes.Equal(frame, want) {
				t.Fatalf("encoding changed:\n got % x\nwant % x", frame, want)
			}
		})
	}
}

func header(t MsgType, n uint32) []byte {
	h := []byte{'S', 'C', Version, byte(t), 0, 0, 0, 0}
	binary.BigEndian.PutUint32(h[4:], n)
	return h
}

func TestReaderRejects(t *testing.T) {
	hello := encode(t, samples["hello"])
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"bad magic", append([]byte("GET / HTTP/1.1\r\n"), hello...), ErrBadMagic},
		{"other version", append([]byte{'S', 'C', 9}, hello[3:]...), ErrVersion},
		{"unknown type", header(200, 0), ErrUnknownType},
		{"zero type", header(0, 0), ErrUnknownType},
		{"4 GB length", header(MsgFileData, 0xFFFFFFFF), ErrTooLarge},
		{"hello over its limit", header(MsgHello, 1<<20), ErrTooLarge},
		{"payload on empty message", append(header(MsgRequestEnd, 1), 0), ErrTooLarge},
		{"truncated header", hello[:5], io.ErrUnexpectedEOF},
		{"truncated payload", hello[:len(hello)-1], io.ErrUnexpectedEOF},
		{"trailing bytes", append(header(MsgHello, 7), make([]byte, 7)...), ErrMalformed},
		{"short string", append(header(MsgHello, 3), 0, 9, 'x'), ErrMalformed},
		{"invalid utf-8", append(header(MsgHello, 7), 0, 1, 0xff, 0, 0, 0, 0), ErrMalformed},
		{"bool 2", append(header(MsgWelcome, 7), 0, 0, 2, 0, 0, 0, 0), ErrMalformed},
		{"welcome unknown flag", append(header(MsgWelcome, 7), 0, 0, 1, 1, 0, 0, 0x80), ErrMalformed},
		{"welcome without flags", append(header(MsgWelcome, 6), 0, 0, 1, 1, 0, 0), ErrMalformed},
		{"raw chunk length lies", append(header(MsgFileData, 7), EncodingRaw, 0, 0, 0, 9, 'a', 'b'), ErrMalformed},
		{"empty chunk", append(header(MsgFileData, 5), EncodingRaw, 0, 0, 0, 0), ErrMalformed},
		{"unknown encoding", append(header(MsgFileData, 6), 7, 0, 0, 0, 1, 'a'), ErrMalformed},
		{"request count lies", append(header(MsgRequest, 8), 0, 0, 0, 5, 0, 0, 0, 1), ErrMalformed},
		{"unknown outcome", encodeRaw(MsgReport, append([]byte{99}, make([]byte, 2+4+8+2+2+4+8)...)), ErrMalformed},
		{"outcome 0", encodeRaw(MsgReport, make([]byte, 1+2+4+8+2+2+4+8)), ErrMalformed},
		{"report of version 7", encodeRaw(MsgReport, append([]byte{byte(OutcomeFailed)}, make([]byte, 2+4+8+2)...)), ErrMalformed},
		{"report before 1970", encodeRaw(MsgReport, append(append([]byte{byte(OutcomeFailed)}, make([]byte, 2+4+8+2+2+4)...), 0xff, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7)), ErrMalformed},
		{"report without its id", encodeRaw(MsgReport, append([]byte{byte(OutcomeFailed)}, make([]byte, 2+4+8+2+2+4+8)...)), ErrMalformed},
		{"step over its limit", encodeRaw(MsgReport, append(append([]byte{byte(OutcomeFailed)}, make([]byte, 2+4+8+2)...), 0, 200)), ErrMalformed},
		{"get manifest unknown flag", encodeRaw(MsgGetManifest, append(make([]byte, 32), 0x80)), ErrMalformed},
		{"get manifest without flags", encodeRaw(MsgGetManifest, make([]byte, 32)), ErrMalformed},
		{"delta unknown flag", encodeRaw(MsgDeltaRequest, []byte{0, 0, 0, 1, 12, 0x40, 0, 0, 0, 0}), ErrMalformed},
		{"delta count lies", encodeRaw(MsgDeltaRequest, append([]byte{0, 0, 0, 1, 12, 0, 0, 0, 0, 2}, make([]byte, 20)...)), ErrMalformed},
		{"delta too many chunks", encodeRaw(MsgDeltaRequest, []byte{0, 0, 0, 1, 12, 0, 0, 0, 0x20, 1}), ErrMalformed},
		{"delta empty chunk", encodeRaw(MsgDeltaRequest, append([]byte{0, 0, 0, 1, 12, 0, 0, 0, 0, 1}, make([]byte, 20)...)), ErrMalformed},
		{"chunk list bool 3", encodeRaw(MsgChunkList, []byte{12, 3, 0, 0, 0, 0}), ErrMalformed},
		{"copy of nothing", encodeRaw(MsgFileCopy, make([]byte, 12)), ErrMalformed},
		{"manifest too many files", encodeRaw(MsgManifestHeader, []byte{0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(tc.input)).Read()
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func encodeRaw(t MsgType, payload []byte) []byte {
	return append(header(t, uint32(len(payload))), payload...)
}

func TestErrorMessageIsReturnedAsError(t *testing.T) {
	frame := encode(t, &Error{Code: CodeBusy, Message: "retry in 7 s"})
	_, err := NewReader(bytes.NewReader(frame)).Read()
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != CodeBusy || !strings.Contains(err.Error(), "retry in 7 s") {
		t.Fatalf("got %v", err)
	}
}

func TestWriterRefusesOversize(t *testing.T) {
	w := NewWriter(io.Discard)
	if err := w.Write(Hello{ClientBuild: strings.Repeat("x", MaxShortString+MaxPath+1000)}); !errors.Is(err, ErrTooLarge) {
		// The string fits the frame limit only while under the hello's
		// strings and path together;
		// this one does not.
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

func TestChunks(t *testing.T) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	dec, err := NewChunkDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	random := make([]byte, MaxChunk)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		raw      []byte
		encoding uint8
	}{
		{"text compresses", bytes.Repeat([]byte("key=value\r\n"), 2000), EncodingZstd},
		{"random stays raw", random, EncodingRaw},
		{"one byte", []byte{7}, EncodingRaw},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			w := NewWriter(&b)
			if err := w.WriteChunk(enc, tc.raw); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			m, err := NewReader(&b).Expect(MsgFileData)
			if err != nil {
				t.Fatal(err)
			}
			c := m.(FileData)
			if c.Encoding != tc.encoding {
				t.Fatalf("encoding %d, want %d", c.Encoding, tc.encoding)
			}
			out, err := DecodeChunk(dec, c, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, tc.raw) {
				t.Fatal("chunk changed in transit")
			}
		})
	}
}

// TestWriteFileData sends parts of a file with WriteFileData over a real
// TCP connection on loopback (where the bytes go by sendfile(2)), between
// buffered messages, and reads them back as FileData messages in order.
func TestWriteFileData(t *testing.T) {
	content := make([]byte, MaxChunk+1000)
	if _, err := rand.Read(content); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sent := make(chan error, 1)
	var wrote int64
	go func() {
		c, err := ln.Accept()
		if err != nil {
			sent <- err
			return
		}
		defer c.Close()
		f, err := os.Open(path)
		if err != nil {
			sent <- err
			return
		}
		defer f.Close()
		w := NewWriter(c)
		err = errors.Join(
			w.Write(FileStart{Index: 3, Size: uint64(len(content))}),
			w.WriteFileData(f, MaxChunk),
			w.WriteFileData(f, 1000),
			w.Write(FileEnd{Hash: [32]byte{9}}),
			w.Flush())
		wrote = w.N
		sent <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := NewReader(c)
	if m, err := r.Expect(MsgFileStart); err != nil || m.(FileStart).Index != 3 {
		t.Fatalf("got %v, %v, want FileStart of file 3", m, err)
	}
	var got []byte
	for range 2 {
		m, err := r.Expect(MsgFileData)
		if err != nil {
			t.Fatal(err)
		}
		d := m.(FileData)
		if d.Encoding != EncodingRaw || int(d.RawLen) != len(d.Data) {
			t.Fatalf("FileData encoding %d, raw length %d for %d bytes; want raw and equal", d.Encoding, d.RawLen, len(d.Data))
		}
		got = append(got, d.Data...)
	}
	if m, err := r.Expect(MsgFileEnd); err != nil || m.(FileEnd).Hash != [32]byte{9} {
		t.Fatalf("got %v, %v, want the FileEnd", m, err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, content) {
		t.Error("the file's bytes changed on the way")
	}
	if wrote != r.N {
		t.Errorf("the writer counted %d bytes, the reader read %d", wrote, r.N)
	}
}

// TestWriteFileDataRefuses: a size out of range is refused before anything
// is written, and a file that ends early is an error that says so.
func TestWriteFileDataRefuses(t *testing.T) {
	tests := []struct {
		name    string
		have, n int
		wrote   bool
		want    error
	}{
		{"nothing", 10, 0, false, nil},
		{"more than a chunk", MaxChunk + 1, MaxChunk + 1, false, nil},
		{"file ends early", 10, 20, true, io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			w := NewWriter(&b)
			err := w.WriteFileData(bytes.NewReader(make([]byte, tc.have)), tc.n)
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want an error (%v)", err, tc.want)
			}
			if wrote := b.Len() > 0; wrote != tc.wrote {
				t.Errorf("wrote %d bytes; want some written: %v", b.Len(), tc.wrote)
			}
		})
	}
}

// TestChunkBomb checks that a zstd frame that expands far beyond its
// declared length is refused without decoding it all.
func TestChunkBomb(t *testing.T) {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	bomb := enc.EncodeAll(make([]byte, 64<<20), nil)
	dec, err := NewChunkDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	_, err = DecodeChunk(dec, FileData{Encoding: EncodingZstd, RawLen: MaxChunk, Data: bomb}, nil)
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v, want ErrMalformed", err)
	}
	// A frame that decodes to more than it declares is refused too.
	small := enc.EncodeAll(make([]byte, 1000), nil)
	if _, err := DecodeChunk(dec, FileData{Encoding: EncodingZstd, RawLen: 10, Data: small}, nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v, want ErrMalformed", err)
	}
}

func goldenSeeds(f *testing.F) [][]byte {
	files, _ := filepath.Glob(filepath.Join(goldenDir, "*.bin"))
	if len(files) == 0 {
		f.Fatal("no golden frames in " + goldenDir)
	}
	var seeds [][]byte
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	return seeds
}

// FuzzReader feeds arbitrary streams to the frame reader: it must never
// panic, and every message it accepts must encode back to the same bytes.
func FuzzReader(f *testing.F) {
	for _, s := range goldenSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		raw := NewReader(bytes.NewReader(data))
		for range 64 {
			m, err := r.Read()
			// ReadRaw takes the same frames, and fails only where Read
			// fails before decoding.
			rt, p, rerr := raw.ReadRaw()
			if rerr != nil && err == nil {
				t.Fatalf("ReadRaw failed with %v where Read read %#v", rerr, m)
			}
			if rerr == nil {
				dm, derr := Decode(rt, p)
				var pe *Error
				if (derr == nil) != (err == nil || errors.As(err, &pe)) {
					t.Fatalf("decoding ReadRaw's %v payload: %v; Read: %v", rt, derr, err)
				}
				if err == nil && rt == MsgManifestEntry {
					if v, _ := EntrySketch(dm.(ManifestEntry), nil); v != PayloadSketch(p) {
						t.Fatalf("the sketch of %#v is %x from its payload, %x from the entry", dm, PayloadSketch(p), v)
					}
				}
			}
			if err != nil {
				return
			}
			if m.Type() == MsgFileData {
				continue // Data aliases the buffer; checked by FuzzDecode
			}
			again, err := Decode(m.Type(), m.appendPayload(nil))
			if err != nil || !reflect.DeepEqual(again, m) {
				t.Fatalf("re-encoding %#v gave %#v, %v", m, again, err)
			}
		}
	})
}

// FuzzDecode feeds arbitrary payloads to every message decoder.
func FuzzDecode(f *testing.F) {
	for _, s := range goldenSeeds(f) {
		if len(s) >= HeaderSize {
			f.Add(s[3], s[HeaderSize:])
		}
	}
	f.Fuzz(func(t *testing.T, typ byte, payload []byte) {
		m, err := Decode(MsgType(typ), payload)
		if err != nil {
			return
		}
		if limit, _ := MaxPayload(MsgType(typ)); len(payload) > limit {
			t.Fatalf("accepted %d bytes over limit %d", len(payload), limit)
		}
		if m.Type() != MsgType(typ) {
			t.Fatalf("decoded %v as %v", MsgType(typ), m.Type())
		}
		if !bytes.Equal(m.appendPayload(nil), payload) {
			t.Fatalf("%v does not re-encode to its payload", m.Type())
		}
	})
}

// FuzzDecodeChunk checks that no chunk makes the decoder return more than
// the declared length or panic.
func FuzzDecodeChunk(f *testing.F) {
	enc, _ := zstd.NewWriter(nil)
	f.Add(uint32(11), enc.EncodeAll([]byte("hello world"), nil))
	f.Add(uint32(5), []byte("bogus"))
	dec, err := NewChunkDecoder()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, rawLen uint32, data []byte) {
		out, err := DecodeChunk(dec, FileData{Encoding: EncodingZstd, RawLen: rawLen, Data: data}, nil)
		if err == nil && len(out) != int(rawLen) {
			t.Fatalf("decoded %d bytes, declared %d", len(out), rawLen)
		}
	})
}

func TestDigest(t *testing.T) {
	h := ManifestHeader{Build: "7.00.240501A", Count: 2, TotalBytes: 3}
	a := ManifestEntry{Path: "a", Size: 1, MtimeNs: 5, Hash: [32]byte{1}}
	b := ManifestEntry{Path: "b", Size: 2, MtimeNs: 6, Hash: [32]byte{2}}
	sum := func(h ManifestHeader, es ...ManifestEntry) [32]byte {
		d := NewDigester(h)
		for _, e := range es {
			d.Add(e)
		}
		return d.Sum()
	}
	base := sum(h, a, b)
	if base != sum(h, a, b) {
		t.Fatal("the same manifest gave two digests")
	}
	touched := b
	touched.MtimeNs++
	preserved := b
	preserved.Flags = FlagPreserve
	other := h
	other.PostInstall = "x"
	// "a"+"b" must not collide with "ab"+"" (lengths are part of the digest).
	ab := ManifestEntry{Path: "ab", Size: 1, MtimeNs: 5, Hash: [32]byte{1}}
	tests := []struct {
		name string
		sum  [32]byte
	}{
		{"order", sum(h, b, a)},
		{"mtime", sum(h, a, touched)},
		{"flags", sum(h, a, preserved)},
		{"header", sum(other, a, b)},
		{"one entry fewer", sum(h, a)},
		{"split path", sum(h, ab)},
	}
	for _, tc := range tests {
		if tc.sum == base {
			t.Errorf("%s: digest did not change", tc.name)
		}
	}
}

// TestSealRequest: the credential opens on the server's side only as it
// was sealed, with every field of the request as it was sent; a change to
// any one field on the way makes it fail to open.
func TestSealRequest(t *testing.T) {
	cpriv, ckey, err := NewAdminKey()
	if err != nil {
		t.Fatal(err)
	}
	spriv, skey, err := NewAdminKey()
	if err != nil {
		t.Fatal(err)
	}
	req := Admin{User: "admin", Op: OpUpdate, Source: "https://vendor.example/r.tar.gz", Countdown: 120, At: 1795000000,
		Notify: "admin@example.com", Flags: AdminAllowDowngrade}
	if err := SealRequest(cpriv, skey, &req, []byte("s3cret pässword")); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(req.Sealed, []byte("s3cret")) {
		t.Fatal("the sealed password contains the password")
	}
	got, err := OpenRequest(spriv, ckey, req)
	if err != nil || string(got) != "s3cret pässword" {
		t.Fatalf("OpenRequest = %q, %v", got, err)
	}
	_, otherKey, _ := NewAdminKey()
	for _, tc := range []struct {
		name   string
		client AdminKey
		change func(a *Admin)
	}{
		{"sealed bytes", ckey, func(a *Admin) { a.Sealed[len(a.Sealed)-1] ^= 1 }},
		{"short seal", ckey, func(a *Admin) { a.Sealed = a.Sealed[:20] }},
		{"other client", otherKey, func(a *Admin) {}},
		{"zero client key", AdminKey{}, func(a *Admin) {}},
		{"user", ckey, func(a *Admin) { a.User = "root" }},
		{"op", ckey, func(a *Admin) { a.Op = OpCancel }},
		{"source", ckey, func(a *Admin) { a.Source = "https://evil.example/r.tar.gz" }},
		{"countdown", ckey, func(a *Admin) { a.Countdown = 60 }},
		{"at", ckey, func(a *Admin) { a.At++ }},
		{"notify", ckey, func(a *Admin) { a.Notify = "mallory@example.com" }},
		{"flags", ckey, func(a *Admin) { a.Flags = 0 }},
		{"token flag", ckey, func(a *Admin) { a.Flags |= AdminToken }},
		// Moving bytes from one field to the next keeps the plain
		// concatenation; the length prefixes keep the data apart.
		{"bytes moved between fields", ckey, func(a *Admin) { a.Source, a.Notify = a.Source+"a", "dmin@example.com" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := req
			a.Sealed = bytes.Clone(req.Sealed)
			tc.change(&a)
			if _, err := OpenRequest(spriv, tc.client, a); err == nil {
				t.Fatal("the changed request opened")
			} else if tc.client != (AdminKey{}) && !errors.Is(err, ErrSeal) {
				t.Fatalf("OpenRequest = %v, want ErrSeal", err)
			}
		})
	}
	if err := SealRequest(cpriv, skey, &req, bytes.Repeat([]byte("x"), MaxPassword+1)); err == nil {
		t.Fatal("an over-long password was sealed")
	}
}

// TestSealToken: a token opens on the client's side with the session's
// name, update and expiry it was sealed with, and a token's seal is no
// request's seal.
func TestSealToken(t *testing.T) {
	cpriv, ckey, _ := NewAdminKey()
	spriv, skey, _ := NewAdminKey()
	token := bytes.Repeat([]byte{7}, TokenSize)
	m := AdminSession{Session: "s-1", UpdateID: "u-1", Expires: 1795001200}
	if err := SealToken(spriv, ckey, &m, token); err != nil {
		t.Fatal(err)
	}
	if len(m.Sealed) != SealedTokenSize || bytes.Contains(m.Sealed, token[:8]) {
		t.Fatalf("sealed token % x", m.Sealed)
	}
	got, err := OpenToken(cpriv, skey, m)
	if err != nil || !bytes.Equal(got, token) {
		t.Fatalf("OpenToken = % x, %v", got, err)
	}
	for name, change := range map[string]func(*AdminSession){
		"session": func(m *AdminSession) { m.Session = "s-2" },
		"update":  func(m *AdminSession) { m.UpdateID = "u-2" },
		"expires": func(m *AdminSession) { m.Expires += 3600 },
		"sealed":  func(m *AdminSession) { m.Sealed[0] ^= 1 },
	} {
		t.Run(name, func(t *testing.T) {
			c := m
			c.Sealed = bytes.Clone(m.Sealed)
			change(&c)
			if _, err := OpenToken(cpriv, skey, c); !errors.Is(err, ErrSeal) {
				t.Fatalf("OpenToken = %v, want ErrSeal", err)
			}
		})
	}
	// The seal of a token, put in a request, does not open as one.
	if _, err := OpenRequest(cpriv, skey, Admin{Sealed: m.Sealed, Op: OpStatus, Flags: AdminToken}); !errors.Is(err, ErrSeal) {
		t.Fatalf("a token's seal opened as a request: %v", err)
	}
	if err := SealToken(spriv, ckey, &m, token[:5]); err == nil {
		t.Fatal("a short token was sealed")
	}
}

func TestDecodeRejectsSessionMessages(t *testing.T) {
	payload := func(m Message) []byte { return m.appendPayload(nil) }
	for _, tc := range []struct {
		name string
		t    MsgType
		p    []byte
	}{
		{"notice kind 0", MsgNotice, payload(Notice{Kind: 0})},
		{"notice kind 5", MsgNotice, payload(Notice{Kind: 5})},
		{"admin op 0", MsgAdmin, payload(Admin{Sealed: make([]byte, 28), Op: 0})},
		{"admin op 4", MsgAdmin, payload(Admin{Sealed: make([]byte, 28), Op: 4})},
		{"admin flags", MsgAdmin, payload(Admin{Sealed: make([]byte, 28), Op: OpStatus, Flags: 8})},
		{"status empty feed fields", MsgUpdateStatus, append(payload(UpdateStatus{State: StateNone}), make([]byte, 8+2+2+2)...)},
		{"status short feed fields", MsgUpdateStatus, append(payload(UpdateStatus{State: StateNone}), 1)},
		{"admin session short", MsgAdminSession, payload(AdminSession{Sealed: make([]byte, SealedTokenSize-1), Session: "s", UpdateID: "u"})},
		{"admin session long", MsgAdminSession, append(payload(AdminSession{Sealed: make([]byte, SealedTokenSize), Session: "s", UpdateID: "u"}), 0)},
		{"admin sealed short", MsgAdmin, payload(Admin{Sealed: make([]byte, 27), Op: OpStatus})},
		{"admin sealed long", MsgAdmin, payload(Admin{Sealed: make([]byte, MaxSealed+1), Op: OpStatus})},
		{"status state", MsgUpdateStatus, payload(UpdateStatus{State: 99})},
		{"admin key short", MsgAdminKey, make([]byte, 31)},
		{"stay with bytes", MsgStay, []byte{0}},
		{"block size under the minimum", MsgBlockRequest, payload(BlockRequest{BlockSize: MinBlockSize - 1, BaseSize: 10, Sums: make([]BlockSum, 1)})},
		{"block size over the maximum", MsgBlockRequest, payload(BlockRequest{BlockSize: MaxBlockSize + 1, BaseSize: 10, Sums: make([]BlockSum, 1)})},
		{"block base empty", MsgBlockRequest, payload(BlockRequest{BlockSize: 128})},
		{"block sums too few", MsgBlockRequest, payload(BlockRequest{BlockSize: 128, BaseSize: 129, Sums: make([]BlockSum, 1)})},
		{"block sums too many", MsgBlockRequest, payload(BlockRequest{BlockSize: 128, BaseSize: 128, Sums: make([]BlockSum, 2)})},
		{"block sums over the limit", MsgBlockRequest, payload(BlockRequest{BlockSize: 64, BaseSize: 64 * (MaxBlockSums + 1), Sums: make([]BlockSum, MaxBlockSums+1)})},
		{"block count lies", MsgBlockRequest, payload(BlockRequest{BlockSize: 128, BaseSize: 128, Sums: make([]BlockSum, 1)})[:24]},
		{"sketch over the limit", MsgSketch, payload(Sketch{Sums: make([]uint64, MaxSketchSums+1)})},
		{"sketch count lies", MsgSketch, payload(Sketch{Sums: make([]uint64, 2)})[:11]},
		{"sketch empty with more", MsgSketch, payload(Sketch{More: true})},
		{"sketch bool 2", MsgSketch, []byte{2, 0, 0, 0, 0}},
		{"run of nothing", MsgManifestSame, payload(ManifestSame{From: 3})},
		{"digest short", MsgManifestEnd, make([]byte, HashSize-1)},
		{"get manifest flag 16", MsgGetManifest, append(make([]byte, HashSize), 16)},
		{"manifest z empty", MsgManifestZ, payload(ManifestZ{})},
		{"manifest z empty with more", MsgManifestZ, payload(ManifestZ{More: true})},
		{"manifest z bool 2", MsgManifestZ, []byte{2, 1}},
		{"patch offer out of order", MsgPatchOffer, payload(PatchOffer{Offers: []PatchRef{{Index: 2, Size: 1}, {Index: 1, Size: 1}}})},
		{"patch offer same base twice", MsgPatchOffer, payload(PatchOffer{Offers: []PatchRef{{Index: 2, Size: 1}, {Index: 2, Size: 1}}})},
		{"patch offer of 0 bytes", MsgPatchOffer, payload(PatchOffer{Offers: []PatchRef{{Index: 2}}})},
		{"patch offer empty with more", MsgPatchOffer, payload(PatchOffer{More: true})},
		{"patch offer count lies", MsgPatchOffer, []byte{0, 0, 0, 0, 1}},
		{"empty file patch", MsgFilePatch, nil},
		{"block base overflows", MsgBlockRequest, payload(BlockRequest{BlockSize: 64, BaseSize: 1<<64 - 1, Sums: make([]BlockSum, 1)})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if m, err := Decode(tc.t, tc.p); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Decode = %#v, %v; want ErrMalformed", m, err)
			}
		})
	}
}

// FuzzOpenRequest feeds arbitrary administrator requests and session
// tokens to the server's and the client's opening: nothing panics, and
// nothing opens that was not sealed under the session's key.
func FuzzOpenRequest(f *testing.F) {
	cpriv, ckey, _ := NewAdminKey()
	spriv, skey, _ := NewAdminKey()
	good := Admin{User: "admin", Op: OpStatus, Flags: AdminToken}
	if err := SealRequest(cpriv, skey, &good, bytes.Repeat([]byte{1}, TokenSize)); err != nil {
		f.Fatal(err)
	}
	f.Add(good.appendPayload(nil), false)
	for _, s := range goldenSeeds(f) {
		if len(s) >= HeaderSize && (MsgType(s[3]) == MsgAdmin || MsgType(s[3]) == MsgAdminSession) {
			f.Add(s[HeaderSize:], MsgType(s[3]) == MsgAdminSession)
		}
	}
	f.Fuzz(func(t *testing.T, payload []byte, session bool) {
		if session {
			m, err := Decode(MsgAdminSession, payload)
			if err != nil {
				return
			}
			if tok, err := OpenToken(cpriv, skey, m.(AdminSession)); err == nil {
				t.Fatalf("a forged session token opened: % x", tok)
			}
			return
		}
		m, err := Decode(MsgAdmin, payload)
		if err != nil {
			return
		}
		a := m.(Admin)
		secret, err := OpenRequest(spriv, ckey, a)
		if err == nil && !bytes.Equal(a.appendPayload(nil), good.appendPayload(nil)) {
			t.Fatalf("a request that was not sealed opened: %+v, % x", a, secret)
		}
	})
}
