package appserver

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/handover"
)

// TestHealthCheckIsNoWarning: the hello of a health check (the readiness
// check at every start under systemd, the self-update's check) is not a
// warning in the log, while a client whose OS has no update folder still
// is.
func TestHealthCheckIsNoWarning(t *testing.T) {
	ts := startServer(t, linuxConfig(t, t.TempDir()), nil, nil)
	if err := handover.Hello(context.Background(), ts.addr); err != nil {
		t.Fatalf("health check: %v", err)
	}
	c := mustDial(t, ts.addr)
	if _, err := c.hello(srvBuild, "plan9", "client-plan9"); err == nil {
		t.Fatal("a hello for an OS without a folder was welcomed")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(ts.logs.String(), "client-plan9") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	logs := ts.logs.String()
	if !strings.Contains(logs, "level=WARN msg=session") || !strings.Contains(logs, "client-plan9") {
		t.Fatalf("the refused client is not a warning in the log:\n%s", logs)
	}
	if strings.Contains(logs, handover.HealthCheckID) {
		t.Errorf("the health check is in the log at level info or above:\n%s", logs)
	}
}
