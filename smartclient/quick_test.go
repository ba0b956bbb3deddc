package smartclient

import (
	"context"
	"encoding/hex"
	"errors"
	"maps"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/pending"

	"github.com/erpupdate/smartsync/internal/pki/pkitest"
	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/installtest"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest/manifesttest"
	"github.com/erpupdate/smartsync/smartclient/internal/state"
	"github.com/erpupdate/smartsync/syncproto"
)

func TestWantRaw(t *testing.T) {
	loop := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	loop6 := &net.TCPAddr{IP: net.IPv6loopback, Port: 1}
	lan := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 1}
	tests := []struct {
		choice string
		addr   net.Addr
		raw    bool
	}{
		{CompressAuto, loop, true},
		{CompressAuto, loop6, true},
		{CompressAuto, lan, false},
		{"", lan, false},
		{CompressYes, loop, false},
		{CompressNo, lan, true},
	}
	for _, tc := range tests {
		if got := wantRaw(tc.choice, tc.addr); got != tc.raw {
			t.Errorf("wantRaw(%q, %v) = %v, want %v", tc.choice, tc.addr, got, tc.raw)
		}
	}
}

// TestUpToDateToAFreshClient: a server that says "up to date" to a client
// that named no manifest is refused, and nothing is installed.
func TestUpToDateToAFreshClient(t *testing.T) {
	ln := pkitest.Listen(t)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r, w := syncproto.NewReader(c), syncproto.NewWriter(c)
		if _, err := r.Expect(syncproto.MsgHello); err != nil {
			return
		}
		w.Write(syncproto.Welcome{ServerBuild: "7.00.240501A", Compatible: true, UpdatesEnabled: true})
		w.Flush()
		if _, err := r.Expect(syncproto.MsgGetManifest); err != nil {
			return
		}
		w.Write(syncproto.UpToDate{Build: "7.00.240501A"})
		w.Flush()
		r.Read() // the client's report, if any
	}()
	dir := t.TempDir()
	_, err := Sync(context.Background(), Options{AllowUnsigned: true, Dir: dir, Server: ln.Addr().String(), OS: "linux", Yes: true, Timeout: 5 * time.Second})
	if !errors.Is(err, syncproto.ErrUnexpected) || !strings.Contains(err.Error(), "named no manifest") {
		t.Fatalf("got %v; want the lie refused", err)
	}
	// Nothing but the client's id, kept from the first attempt on.
	if entries, _ := os.ReadDir(dir); len(entries) != 1 || entries[0].Name() != ".smartclient" {
		t.Errorf("a refused first sync left %v in the install folder", entries)
	}
	// (and the report of the refused sync, which the lying server did
	// not take, kept for the next session)
	if entries, _ := os.ReadDir(filepath.Join(dir, ".smartclient")); !slices.ContainsFunc(entries, func(e os.DirEntry) bool { return e.Name() == "client-id" }) ||
		slices.ContainsFunc(entries, func(e os.DirEntry) bool { return e.Name() != "client-id" && e.Name() != pending.Name }) {
		t.Errorf("a refused first sync left %v in .smartclient", entries)
	}
}

// TestCheckInstallFindsWhatChanged: the check goes on past a changed file,
// and names as the same only the regular files with their recorded size
// and mtime, which the plan then trusts without looking again.
func TestCheckInstallFindsWhatChanged(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) state.FileState {
		t.Helper()
		return writeRecorded(t, dir, name, content)
	}
	files := map[string]state.FileState{
		"a.dll":        write("a.dll", "a"),
		"bin/b.exe":    write("bin/b.exe", "bb"),
		"bin/c.dat":    write("bin/c.dat", "ccc"),
		"lib/d.so":     write("lib/d.so", "dddd"),
		"cfg/user.ini": write("cfg/user.ini", "x=1"),
	}
	pres := files["cfg/user.ini"]
	pres.Preserve = true
	files["cfg/user.ini"] = pres
	files["gone.txt"] = state.FileState{Size: 1, Hash: strings.Repeat("cd", 32)}
	// Changed after it was recorded: other size, then other mtime.
	write("bin/c.dat", "changed")
	later := time.Unix(0, files["lib/d.so"].MtimeNs).Add(time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "lib", "d.so"), later, later); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()

	check := state.Check(t.Context(), root, (&state.State{Files: files}).Encoded())
	got := struct {
		ok   bool
		same map[string]bool
	}{check.OK, check.Same()}
	if got.ok {
		t.Error("an install with changed and missing files was found intact")
	}
	want := map[string]bool{"a.dll": true, "bin/b.exe": true}
	if len(got.same) != len(want) {
		t.Errorf("same = %v, want %v", got.same, want)
	}
	for name := range want {
		if !got.same[name] {
			t.Errorf("%s, unchanged, is not among the same: %v", name, got.same)
		}
	}

	// The plan trusts same, and looks at the rest: the changed files are
	// fetched, the gone one too, the unchanged ones are current.
	st := &state.State{Files: files}
	var listed []manifest.File
	for _, name := range []string{"a.dll", "bin/b.exe", "bin/c.dat", "gone.txt", "lib/d.so"} {
		k := files[name]
		var h [32]byte
		hb, _ := hex.DecodeString(k.Hash)
		copy(h[:], hb)
		listed = append(listed, manifest.File{Path: name, Size: k.Size, MtimeNs: k.MtimeNs, Hash: h})
	}
	man := manifesttest.New(t, "7.00.240501A", listed...)
	for _, same := range []map[string]bool{nil, got.same} {
		p, err := makePlan(root, st, man, false, same, discard)
		if err != nil {
			t.Fatal(err)
		}
		var fetched []string
		for _, i := range p.fetch {
			fetched = append(fetched, man.File(i).Path)
		}
		if strings.Join(fetched, " ") != "bin/c.dat gone.txt lib/d.so" || len(p.current) != 2 {
			t.Errorf("with same %v: fetch %v, %d current; want bin/c.dat gone.txt lib/d.so fetched and 2 current", same, fetched, len(p.current))
		}
	}
}

// TestStateLoadsFilesWhenNeeded checks that a state read with its files
// left encoded is checked as it is, and saved whole.
func TestStateLoadsFilesWhenNeeded(t *testing.T) {
	dir := t.TempDir()
	files := map[string]state.FileState{}
	for _, name := range []string{"a.txt", "b/c.txt"} {
		files[name] = writeRecorded(t, dir, name, name)
	}
	d := installtest.OpenCachedDisk(t, dir)
	root := d.Root
	if err := os.Mkdir(filepath.Join(dir, install.MetaDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := (&state.State{Version: state.Version, ClientID: "c", Files: files}).Save(d); err != nil {
		t.Fatal(err)
	}

	st, err := state.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != nil || st.Count() != len(files) {
		t.Fatalf("state.Read decoded the files (%d), or left %d encoded, want %d", len(st.Files), st.Count(), len(files))
	}
	if !intact(t.Context(), root, st) {
		t.Error("an intact install, checked on the encoded files, is not intact")
	}
	// A sync that fails records its outcome: the files it never decoded
	// must be saved with it.
	st.LastOutcome = "failed"
	if err := st.Save(d); err != nil {
		t.Fatal(err)
	}
	again, err := state.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.LastOutcome != "failed" || !maps.Equal(again.Files, files) {
		t.Errorf("saved %q with files %v, want %q with %v", again.LastOutcome, again.Files, "failed", files)
	}
	if !intact(t.Context(), root, again) {
		t.Error("an intact install, checked on the decoded files, is not intact")
	}
	// The files the save decoded are copies: they outlive the mapping
	// of the file they were read from (a path still in it would fault).
	st.Release()
	if !maps.Equal(st.Files, files) {
		t.Errorf("after release, the files are %v, want %v", st.Files, files)
	}

	// Released before they were loaded, the files are gone from the
	// State, and a save must fail rather than write a state without them.
	gone, err := state.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	gone.Release()
	if err := gone.LoadFiles(); err == nil {
		t.Error("loadFiles after release succeeded")
	}
	if err := gone.Save(d); err == nil {
		t.Error("save after release succeeded")
	}
	if kept, err := state.Load(dir); err != nil || !maps.Equal(kept.Files, files) {
		t.Errorf("after a refused save, the state holds %v (%v), want %v", kept.Files, err, files)
	}
}

// writeRecorded writes file name of the install dir and returns its
// record.
func writeRecorded(t *testing.T, dir, name, content string) state.FileState {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return state.FileState{Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano(), ServerMtimeNs: fi.ModTime().UnixNano(), Hash: strings.Repeat("ab", 32)}
}

func TestMemoryLimit(t *testing.T) {
	tests := []struct {
		files int
		want  int64
	}{
		{0, 28 << 20},
		{20000, 28 << 20},
		{100000, 8<<20 + 100000<<10},
		{math.MaxInt, math.MaxInt64},
	}
	for _, tc := range tests {
		if got := memoryLimit(tc.files); got != tc.want {
			t.Errorf("memoryLimit(%d) = %d, want %d", tc.files, got, tc.want)
		}
	}
	// Only a process that asked for a limit gets one.
	before := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(before)
	sizeMemory(100000)
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("a sync set the memory limit to %d of a process that asked for none", got)
	}
	limiting.Store(true)
	defer limiting.Store(false)
	sizeMemory(100000)
	if got := debug.SetMemoryLimit(-1); got != memoryLimit(100000) {
		t.Errorf("after a manifest of 100,000 files the limit is %d, want %d", got, memoryLimit(100000))
	}
}
