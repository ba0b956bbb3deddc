package smartclient

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
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
	_, err = Sync(context.Background(), Options{Dir: dir, Server: ln.Addr().String(), OS: "linux", Yes: true, Timeout: 5 * time.Second})
	if !errors.Is(err, syncproto.ErrUnexpected) || !strings.Contains(err.Error(), "named no manifest") {
		t.Fatalf("got %v; want the lie refused", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a refused first sync left %d entries in the install folder", len(entries))
	}
}

// TestCheckInstallFindsWhatChanged: the check goes on past a changed file,
// and names as the same only the regular files with their recorded size
// and mtime, which the plan then trusts without looking again.
func TestCheckInstallFindsWhatChanged(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) FileState {
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
		return FileState{Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano(), ServerMtimeNs: fi.ModTime().UnixNano(), Hash: strings.Repeat("ab", 32)}
	}
	files := map[string]FileState{
		"a.dll":        write("a.dll", "a"),
		"bin/b.exe":    write("bin/b.exe", "bb"),
		"bin/c.dat":    write("bin/c.dat", "ccc"),
		"lib/d.so":     write("lib/d.so", "dddd"),
		"cfg/user.ini": write("cfg/user.ini", "x=1"),
	}
	pres := files["cfg/user.ini"]
	pres.Preserve = true
	files["cfg/user.ini"] = pres
	files["gone.txt"] = FileState{Size: 1, Hash: strings.Repeat("cd", 32)}
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

	check := checkInstall(t.Context(), root, files)
	got := struct {
		ok   bool
		same map[string]bool
	}{check.ok, check.same()}
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
	st := &State{Files: files}
	man := &manifest{}
	for _, name := range []string{"a.dll", "bin/b.exe", "bin/c.dat", "gone.txt", "lib/d.so"} {
		k := files[name]
		var h [32]byte
		hb, _ := hex.DecodeString(k.Hash)
		copy(h[:], hb)
		man.Files = append(man.Files, remoteFile{Path: name, Size: k.Size, MtimeNs: k.MtimeNs, Hash: h})
	}
	for _, same := range []map[string]bool{nil, got.same} {
		p, err := makePlan(root, st, man, false, same, discard)
		if err != nil {
			t.Fatal(err)
		}
		var fetched []string
		for _, i := range p.fetch {
			fetched = append(fetched, man.Files[i].Path)
		}
		if strings.Join(fetched, " ") != "bin/c.dat gone.txt lib/d.so" || len(p.current) != 2 {
			t.Errorf("with same %v: fetch %v, %d current; want bin/c.dat gone.txt lib/d.so fetched and 2 current", same, fetched, len(p.current))
		}
	}
}
