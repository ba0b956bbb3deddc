package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/appserver/internal/handover"
	"github.com/erpupdate/smartsync/appserver/internal/service"
)

// TestWindowsService installs this test binary as a Windows service
// running the server (see TestMain), starts it through the Service
// Control Manager, sees it answer a hello, stops it through the SCM and
// sees it gone, and uninstalls it.
func TestWindowsService(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "win_upd"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "win_upd", "app.exe"), []byte("app"), 0o644)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ini := filepath.Join(dir, "AppServer.ini")
	if err := os.WriteFile(ini, []byte(fmt.Sprintf("[TCP]\r\nPort=%d\r\n[UPDATE]\r\nEnable=1\r\nPathWindows=win_upd\r\nBuild=7.00.240501A\r\n", port)), 0o644); err != nil {
		t.Fatal(err)
	}
	exe, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	o := service.Options{Name: fmt.Sprintf("smartsync-test-%d", os.Getpid()), Exe: exe, Config: ini}
	if _, err := service.Install(o); err != nil {
		t.Skipf("cannot install a Windows service here (needs Administrator): %v", err)
	}
	defer func() {
		service.Stop(o)
		if err := service.Uninstall(o); err != nil {
			t.Errorf("uninstall: %v", err)
		}
	}()
	if err := service.Start(o); err != nil {
		t.Fatalf("start through the SCM: %v", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := handover.Hello(context.Background(), addr)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service's server does not answer at %s: %v", addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st, err := service.Status(o); err != nil || !strings.HasSuffix(st, ": running") {
		t.Errorf("status of the started service: %q, %v", st, err)
	}
	if err := service.Stop(o); err != nil {
		t.Fatalf("stop through the SCM: %v", err)
	}
	if err := handover.Hello(context.Background(), addr); err == nil {
		t.Error("the server still answers after the service was stopped")
	}
	if st, err := service.Status(o); err != nil || !strings.HasSuffix(st, ": installed, stopped") {
		t.Errorf("status of the stopped service: %q, %v", st, err)
	}
}
