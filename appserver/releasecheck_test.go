package appserver

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/erpupdate/smartsync/internal/releasecheck"
	"github.com/erpupdate/smartsync/internal/testtree"
)

// TestCheckRefusesFolderClientsRefuse: appserver --check fails, as a
// configuration error (exit 2), on an update folder that every client
// would refuse: README.TXT beside readme.txt, and a file aux.log. The
// error names both, and the output lists every problem, however many.
func TestCheckRefusesFolderClientsRefuse(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "darwin" {
		t.Skipf("%s takes README.TXT and readme.txt for one file", runtime.GOOS)
	}
	base := t.TempDir()
	files := map[string]string{"smartclient": "x", "README.TXT": "upper", "readme.txt": "lower", "logs/aux.log": "log"}
	for i := range 12 {
		files[fmt.Sprintf("zz/com%d.txt", i%10)+strings.Repeat("x", i/10)] = "x"
	}
	writeTree(t, filepath.Join(base, "linux"), files, oldTime)
	cfgPath := filepath.Join(base, "AppServer.ini")
	writeFile(t, cfgPath, "[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nPathLinux=linux\nBuild="+srvBuild+"\n")
	var out, errb testtree.Buffer
	err := RunServer(t.Context(), ServeOptions{Config: cfgPath, Check: true}, &out, &errb)
	if err == nil {
		t.Fatalf("--check passed a folder clients refuse:\n%s", out.String())
	}
	var ce *releasecheck.Error
	if !errors.Is(err, ErrUsage) || !errors.As(err, &ce) {
		t.Errorf("--check: %v; want a usage error (exit 2) holding the problems", err)
	}
	for _, want := range []string{filepath.Join(base, "linux"), `"README.TXT" and "readme.txt" are one file on Windows or macOS`,
		`"logs/aux.log": the name "aux.log" is the Windows device AUX`, "and 4 more"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	// Every problem, one a line, on the output.
	text := out.String()
	if n := strings.Count(text, "refused  "); n != 14 {
		t.Errorf("%d problems listed, want 14:\n%s", n, text)
	}
	for _, want := range []string{`refused  "zz/com9.txt": the name "com9.txt" is the Windows device COM9`,
		`refused  "README.TXT" and "readme.txt" are one file`} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}
