package release

import (
	"archive/tar"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/erpupdate/smartsync/internal/testtree"
)

func TestExtractGood(t *testing.T) {
	testtree.NeedSymlinks(t)
	for _, kind := range []string{"tar.gz", "zip"} {
		t.Run(kind, func(t *testing.T) {
			archive := goodArchive(t, kind)
			dest := filepath.Join(t.TempDir(), "new")
			info, err := Extract(context.Background(), archive, dest)
			if err != nil {
				t.Fatal(err)
			}
			if info.Build != "7.00.240601A" {
				t.Errorf("build %q", info.Build)
			}
			for _, m := range goodMembers {
				p := filepath.Join(dest, filepath.FromSlash(strings.TrimSuffix(m.name, "/")))
				st, err := os.Lstat(p)
				if err != nil {
					t.Error(err)
					continue
				}
				switch {
				case m.mode&fs.ModeSymlink != 0:
					if got, err := os.Readlink(p); err != nil || got != m.link {
						t.Errorf("%s: link %q, %v; want %q", m.name, got, err, m.link)
					}
				case m.mode.IsDir():
					// The owner keeps full access to every folder (see Extract).
					if want := m.mode.Perm() | 0o700; !st.IsDir() || st.Mode().Perm() != want {
						t.Errorf("%s: mode %v, want a folder with %v", m.name, st.Mode(), want)
					}
				default:
					data, err := os.ReadFile(p)
					if err != nil || string(data) != m.body {
						t.Errorf("%s: content %q, %v; want %q", m.name, data, err, m.body)
					}
					if st.Mode() != m.mode {
						t.Errorf("%s: mode %v, want %v", m.name, st.Mode(), m.mode)
					}
					if !st.ModTime().Equal(testTime) {
						t.Errorf("%s: modified %v, want %v", m.name, st.ModTime(), testTime)
					}
				}
			}
		})
	}
}

func TestExtractTarHardlinkAndDotSlash(t *testing.T) {
	archive := writeFile(t, filepath.Join(t.TempDir(), "r.tar.gz"), tarGz(t, []member{
		{name: "./", mode: fs.ModeDir | 0o755},
		{name: "./BUILD", body: "7.00.240601\n", mode: 0o644},
		{name: "./a", body: "same", mode: 0o640},
		{name: "./b", link: "./a", hard: true},
		{name: "x", tarType: tar.TypeXGlobalHeader},
	}))
	dest := filepath.Join(t.TempDir(), "new")
	info, err := Extract(context.Background(), archive, dest)
	if err != nil {
		t.Fatal(err)
	}
	if info.Build != "7.00.240601" {
		t.Errorf("build %q", info.Build)
	}
	if data, err := os.ReadFile(filepath.Join(dest, "b")); err != nil || string(data) != "same" {
		t.Errorf("hard link b: %q, %v", data, err)
	}
}

// TestExtractHostile checks every refusal, in both formats where the
// format can express it: the error wraps the right sentinel and names the
// entry, nothing is left in dest, and nothing appears beside it.
func TestExtractHostile(t *testing.T) {
	testtree.NeedSymlinks(t)
	build := member{name: "BUILD", body: "7.00.240601A\n", mode: 0o644}
	file := func(name string) member { return member{name: name, body: "x", mode: 0o644} }
	sym := func(name, link string) member { return member{name: name, mode: fs.ModeSymlink | 0o777, link: link} }
	tests := []struct {
		name    string
		members []member
		tarOnly bool
		want    error
		entry   string // the entry the error must name
	}{
		{"absolute path", []member{build, file("/etc/evil")}, false, ErrUnsafeEntry, "/etc/evil"},
		{"dot dot", []member{build, file("../evil")}, false, ErrUnsafeEntry, "../evil"},
		{"dot dot inside", []member{build, file("a/../../evil")}, false, ErrUnsafeEntry, "a/../../evil"},
		{"backslash", []member{build, file(`..\evil`)}, false, ErrUnsafeEntry, `..\\evil`},
		{"drive letter", []member{build, file("C:/evil")}, false, ErrUnsafeEntry, "C:/evil"},
		{"alternate data stream", []member{build, file("a:stream")}, false, ErrUnsafeEntry, "a:stream"},
		{"trailing dot aliases BUILD", []member{build, file("BUILD.")}, false, ErrUnsafeEntry, "BUILD."},
		{"trailing space", []member{build, file("a/b ")}, false, ErrUnsafeEntry, "a/b "},
		{"Windows device name", []member{build, file("bin/nul.txt")}, false, ErrUnsafeEntry, "bin/nul.txt"},
		{"Windows forbidden character", []member{build, file("a?b")}, false, ErrUnsafeEntry, "a?b"},
		{"control character", []member{build, file("a\nb")}, false, ErrUnsafeEntry, `a\nb`},
		{"unclean path", []member{build, file("a//b")}, false, ErrUnsafeEntry, "a//b"},
		{"duplicate", []member{build, file("a"), file("a")}, false, ErrUnsafeEntry, `"a"`},
		{"duplicate in case", []member{build, file("a"), file("A")}, false, ErrUnsafeEntry, `"A"`},
		{"duplicate BUILD", []member{build, build}, false, ErrUnsafeEntry, "BUILD"},
		{"symlink absolute", []member{build, sym("l", "/etc")}, false, ErrUnsafeEntry, `"l"`},
		{"symlink escapes", []member{build, sym("a/l", "../../x")}, false, ErrUnsafeEntry, "a/l"},
		{"symlink through symlink", []member{build, sym("s", "a"), sym("t", "s/..")}, false, ErrUnsafeEntry, `"t"`},
		{"symlink backslash", []member{build, sym("l", `..\x`)}, false, ErrUnsafeEntry, `"l"`},
		{"symlink to itself", []member{build, sym("l", ".")}, false, ErrUnsafeEntry, `"l"`},
		{"write through symlink", []member{build, {name: "a/", mode: fs.ModeDir | 0o755}, sym("l", "a"), file("l/x")}, false, ErrUnsafeEntry, "l/x"},
		{"file under file", []member{build, file("a"), file("a/b")}, false, ErrUnsafeEntry, "a/b"},
		{"hardlink escapes", []member{build, {name: "h", link: "../etc/passwd", hard: true}}, true, ErrUnsafeEntry, `"h"`},
		{"hardlink absolute", []member{build, {name: "h", link: "/etc/passwd", hard: true}}, true, ErrUnsafeEntry, `"h"`},
		{"hardlink to missing", []member{build, {name: "h", link: "nothing", hard: true}}, true, ErrUnsafeEntry, `"h"`},
		{"char device", []member{build, {name: "dev", tarType: tar.TypeChar}}, true, ErrUnsafeEntry, "dev"},
		{"block device", []member{build, {name: "dev", tarType: tar.TypeBlock}}, true, ErrUnsafeEntry, "dev"},
		{"fifo", []member{build, {name: "p", tarType: tar.TypeFifo}}, true, ErrUnsafeEntry, `"p"`},
		{"fifo zip", []member{build, {name: "p", mode: fs.ModeNamedPipe | 0o644}}, false, ErrUnsafeEntry, `"p"`},
		{"no BUILD", []member{file("a")}, false, ErrNoBuild, ""},
		{"bad BUILD", []member{{name: "BUILD", body: "7.00.241301A"}}, false, ErrNoBuild, ""},
		{"BUILD a symlink", []member{file("b"), sym("BUILD", "b")}, false, ErrNoBuild, ""},
		{"BUILD too large", []member{{name: "BUILD", body: strings.Repeat("7", 100)}}, false, ErrNoBuild, "BUILD"},
		{"too many files", []member{build, file("1"), file("2"), file("3"), file("4")}, false, ErrTooLarge, `"4"`},
		{"too many bytes", []member{build, {name: "big", body: strings.Repeat("x", 2000)}}, false, ErrTooLarge, "big"},
	}
	lim := Limits{Files: 4, Bytes: 1000}
	for _, tt := range tests {
		for _, kind := range []string{"tar.gz", "zip"} {
			if kind == "zip" && tt.tarOnly {
				continue
			}
			t.Run(tt.name+"/"+kind, func(t *testing.T) {
				parent := t.TempDir()
				var data []byte
				if kind == "zip" {
					data = zipBytes(t, tt.members)
				} else {
					data = tarGz(t, tt.members)
				}
				archive := writeFile(t, filepath.Join(parent, "r."+kind), data)
				dest := filepath.Join(parent, "new")
				info, err := ExtractLimits(context.Background(), archive, dest, lim)
				if !errors.Is(err, tt.want) {
					t.Fatalf("Extract = %+v, %v; want %v", info, err, tt.want)
				}
				if !strings.Contains(err.Error(), tt.entry) {
					t.Errorf("error %q does not name %s", err, tt.entry)
				}
				ents, _ := os.ReadDir(parent)
				if len(ents) != 1 {
					t.Errorf("after a refusal the folder holds %d entries, want only the archive", len(ents))
				}
			})
		}
	}
}

func TestExtractDest(t *testing.T) {
	testtree.NeedSymlinks(t)
	archive := goodArchive(t, "tar.gz")
	dest := t.TempDir()
	writeFile(t, filepath.Join(dest, "keep"), []byte("x"))
	if _, err := Extract(context.Background(), archive, dest); !errors.Is(err, ErrDestNotEmpty) {
		t.Errorf("Extract into a non-empty folder = %v, want ErrDestNotEmpty", err)
	}
	if _, err := os.Stat(filepath.Join(dest, "keep")); err != nil {
		t.Errorf("the folder's content was touched: %v", err)
	}
	empty := t.TempDir()
	if _, err := Extract(context.Background(), archive, empty); err != nil {
		t.Errorf("Extract into an empty existing folder: %v", err)
	}
	notArchive := writeFile(t, filepath.Join(t.TempDir(), "r.tar.gz"), []byte("hello, world"))
	if _, err := Extract(context.Background(), notArchive, filepath.Join(t.TempDir(), "x")); !errors.Is(err, ErrArchiveFormat) {
		t.Errorf("Extract(not an archive) = %v, want ErrArchiveFormat", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Extract(ctx, archive, filepath.Join(t.TempDir(), "x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Extract(cancelled) = %v, want context.Canceled", err)
	}
}

// FuzzExtractTar checks that no tar content makes Extract panic or write
// outside its destination. The fuzzer mutates the tar itself, compressed
// afterwards, so that its changes reach the tar reader and our checks.
func FuzzExtractTar(f *testing.F) {
	f.Add(tarBytes(f, goodMembers))
	f.Add(tarBytes(f, []member{{name: "../x", body: "x"}}))
	f.Add(tarBytes(f, []member{{name: "a/", mode: fs.ModeDir | 0o755}, {name: "l", mode: fs.ModeSymlink, link: "a"}, {name: "l/x", body: "x"}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		archive := writeFile(t, filepath.Join(parent, "r.tar.gz"), gz(t, data))
		dest := filepath.Join(parent, "new")
		_, err := ExtractLimits(context.Background(), archive, dest, Limits{Files: 100, Bytes: 1 << 20})
		ents, _ := os.ReadDir(parent)
		want := 2
		if err != nil {
			want = 1
		}
		if len(ents) != want {
			t.Fatalf("Extract: %v; the parent folder holds %d entries, want %d", err, len(ents), want)
		}
	})
}

// FuzzExtractZip is FuzzExtractTar for zip archives.
func FuzzExtractZip(f *testing.F) {
	f.Add(zipBytes(f, goodMembers))
	f.Add(zipBytes(f, []member{{name: "../x", body: "x"}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		archive := writeFile(t, filepath.Join(parent, "r.zip"), data)
		dest := filepath.Join(parent, "new")
		_, err := ExtractLimits(context.Background(), archive, dest, Limits{Files: 100, Bytes: 1 << 20})
		ents, _ := os.ReadDir(parent)
		want := 2
		if err != nil {
			want = 1
		}
		if len(ents) != want {
			t.Fatalf("Extract: %v; the parent folder holds %d entries, want %d", err, len(ents), want)
		}
	})
}
