package appserver

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/windows/registry"
	"golang.org/x/sys/windows/svc/eventlog"
)

// TestWindowsEventLog writes a server's warning to the real event log
// through a source registered as "appserver service install" registers
// it, and reads it back with wevtutil where Windows has it. Under Wine
// the event log takes the event but keeps nothing to read back.
func TestWindowsEventLog(t *testing.T) {
	source := fmt.Sprintf("smartsync-test-%d", os.Getpid())
	if err := eventlog.InstallAsEventCreate(source, eventlog.Error|eventlog.Warning|eventlog.Info); err != nil {
		t.Skipf("cannot register an event log source (needs Administrator): %v", err)
	}
	defer eventlog.Remove(source)
	sink, err := openEventLog(source)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	mark := fmt.Sprintf("disk low %d", os.Getpid())
	log := slog.New(newEventLogHandler(slog.DiscardHandler, sink, defaultLog, slog.LevelWarn))
	log.Warn(mark)
	if err := sink.Warning(eventWarning, mark+" direct"); err != nil {
		t.Fatalf("writing to the event log: %v", err)
	}
	if k, err := registry.OpenKey(registry.LOCAL_MACHINE, `Software\Wine`, registry.QUERY_VALUE); err == nil {
		k.Close()
		t.Skip("under Wine: the event log accepted the events, but Wine keeps no event log to read them back from")
	}
	out, err := exec.Command("wevtutil", "qe", "Application", "/q:*[System[Provider[@Name='"+source+"']]]", "/f:text", "/c:5", "/rd:true").CombinedOutput()
	if err != nil {
		t.Skipf("wevtutil: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "level=WARN msg=\""+mark+"\"") {
		t.Errorf("the event log does not hold the warning %q:\n%s", mark, out)
	}
}
