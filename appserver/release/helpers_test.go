package release

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// member is one entry of a test archive.
type member struct {
	name    string
	body    string
	mode    fs.FileMode // permission bits, plus fs.ModeDir or fs.ModeSymlink
	link    string      // symlink target (zip and tar) or hard link target (tar)
	hard    bool        // a tar hard link
	tarType byte        // overrides the tar type flag when non-zero
}

var testTime = time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)

func tarGz(t testing.TB, ms []member) []byte {
	t.Helper()
	return gz(t, tarBytes(t, ms))
}

func gz(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tarBytes(t testing.TB, ms []member) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		h := &tar.Header{Name: m.name, Mode: int64(m.mode.Perm()), ModTime: testTime, Format: tar.FormatPAX}
		switch {
		case m.tarType == tar.TypeXGlobalHeader:
			h = &tar.Header{Typeflag: m.tarType, PAXRecords: map[string]string{"comment": m.name}, Format: tar.FormatPAX}
		case m.tarType != 0:
			h.Typeflag = m.tarType
		case m.hard:
			h.Typeflag, h.Linkname = tar.TypeLink, m.link
		case m.mode&fs.ModeNamedPipe != 0:
			h.Typeflag = tar.TypeFifo
		case m.mode&fs.ModeSymlink != 0:
			h.Typeflag, h.Linkname = tar.TypeSymlink, m.link
		case m.mode.IsDir():
			h.Typeflag = tar.TypeDir
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(m.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(m.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zipBytes(t testing.TB, ms []member) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, m := range ms {
		h := &zip.FileHeader{Name: m.name, Method: zip.Deflate, Modified: testTime}
		h.SetMode(m.mode)
		if m.mode == 0 {
			h.SetMode(0o644)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		body := m.body
		if m.mode&fs.ModeSymlink != 0 {
			body = m.link
		}
		if _, err := w.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeFile(t testing.TB, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// goodMembers is a small but complete server installation.
var goodMembers = []member{
	{name: "BUILD", body: "7.00.240601A\n", mode: 0o644},
	{name: "bin/", mode: fs.ModeDir | 0o755},
	{name: "bin/appserver", body: "#!/bin/sh\necho hi\n", mode: 0o755},
	{name: "conf/readme.txt", body: "hello", mode: 0o600},
	{name: "ro/", mode: fs.ModeDir | 0o555},
	{name: "ro/data", body: "read only", mode: 0o444},
	{name: "bin/latest", mode: fs.ModeSymlink | 0o777, link: "appserver"},
	{name: "conf/up", mode: fs.ModeSymlink | 0o777, link: "../bin"},
}

// goodArchive writes a good release archive of the given kind ("tar.gz"
// or "zip") in a new temporary folder and returns its path.
func goodArchive(t testing.TB, kind string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "release."+kind)
	if kind == "zip" {
		return writeFile(t, p, zipBytes(t, goodMembers))
	}
	return writeFile(t, p, tarGz(t, goodMembers))
}

// errAny in a table's want accepts any error.
var errAny = errors.New("any error")
