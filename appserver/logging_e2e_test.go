package appserver

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestLogSelfUpdateEndToEnd: with [LOG] File, a real self-update leaves
// one log: the old server's records up to the hand-over, the helper's, and
// the new server's, while the servers' stderr holds none of them.
func TestLogSelfUpdateEndToEnd(t *testing.T) {
	t.Parallel()
	e := newE2E(t, false)
	logPath := filepath.Join(e.root, "logs", "appserver.log")
	e.ini = append(e.ini, "[LOG]\r\nFile="+logPath+"\r\nFormat=text\r\nLevel=info\r\n"...)
	writeFile(t, filepath.Join(e.install, "AppServer.ini"), string(e.ini))
	e.serve()
	src := e.release(e2eNew, "client v2\n", "")
	out, code := e.admin(2*time.Minute, "--from", src, "--countdown", "1s", "--notify", "admin@example.com")
	if code != 0 || !strings.Contains(out, e2eNew) {
		t.Fatalf("admin update-server exited %d:\n%s\nlog:\n%s", code, out, readString(logPath))
	}
	// The mail is sent as the helper finishes.
	if msgs := e.mails(1); len(msgs) != 1 || !strings.Contains(msgs[0].Subject, "updated to build "+e2eNew) {
		t.Fatalf("mail: %+v", msgs)
	}
	e.checkConfig()
	// In this order: the old server, the helper, the new server answering
	// the helper, the helper's outcome.
	want := []string{
		`msg=listening `,
		`msg="self-update: helper started"`,
		`msg=stopped\n`,
		`msg=phase component=selfupdate-helper phase=swapped`,
		`msg=listening `,
		`msg="server answers" component=selfupdate-helper which=new`,
		`msg=outcome component=selfupdate-helper .* state=done old=` + regexp.QuoteMeta(e2eOld) + ` new=` + regexp.QuoteMeta(e2eNew),
	}
	// inOrder is the first of want not found after the one before it.
	inOrder := func(log string) string {
		for _, w := range want {
			loc := regexp.MustCompile(w).FindStringIndex(log)
			if loc == nil {
				return w
			}
			log = log[loc[1]:]
		}
		return ""
	}
	var log string
	// The helper may still be writing its last records.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		log = readString(logPath)
		if inOrder(log) == "" || time.Now().After(deadline) {
			break
		}
	}
	if w := inOrder(log); w != "" {
		t.Errorf("the log file lacks %s, in order after %q:\n%s", w, want, log)
	}
	for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
		if !strings.HasPrefix(l, "time=") {
			t.Errorf("line %q is not a whole record: records were interleaved", l)
		}
	}
	if s := e.readLog("server.log"); strings.Contains(s, "level=") {
		t.Errorf("stderr got log records with [LOG] File set:\n%s", s)
	}
}
