//go:build unix

package appserver

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fewFDsEnv makes TestServeWhenDescriptorsRunOut the child that serves
// with few file descriptors.
const fewFDsEnv = "APPSERVER_TEST_FEW_FDS"

// TestServeWhenDescriptorsRunOut holds more connections than the server
// may have file descriptors, then syncs a good client: the server, in a
// process of its own limited to 64 descriptors, waits and accepts again
// rather than stopping with "too many open files", and serves the client
// once the silent connections it dropped give their descriptors back.
func TestServeWhenDescriptorsRunOut(t *testing.T) {
	if os.Getenv(fewFDsEnv) == "1" {
		serveWithFewFDs(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestServeWhenDescriptorsRunOut$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), fewFDsEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	addr := ""
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
		if a, ok := strings.CutPrefix(lines.Text(), "ADDR "); ok {
			addr = a
			break
		}
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		for lines.Scan() {
			out.WriteString(lines.Text() + "\n")
		}
	}()
	if addr == "" {
		io.Copy(io.Discard, stdout)
		cmd.Wait()
		t.Fatalf("the child did not serve:\n%s", out.String())
	}

	// 100 silent connections: more than the server's 64 descriptors.
	var held []net.Conn
	for range 100 {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			break // the listen queue is full too: enough
		}
		held = append(held, c)
	}
	time.Sleep(500 * time.Millisecond) // the server meets EMFILE meanwhile
	for _, c := range held {
		c.Close()
	}
	// A good client is served once the server has dropped the others.
	var welcome error = fmt.Errorf("no attempt")
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		c, err := dialClient(addr)
		if err != nil {
			welcome = err
			continue
		}
		_, welcome = c.hello(srvBuild, "linux", "good-client")
		c.conn.Close()
		if welcome == nil {
			break
		}
	}
	stdin.Close() // the child checks that it still serves, and ends
	<-read        // all of its output, before Wait closes the pipe
	err = cmd.Wait()
	if welcome != nil {
		t.Errorf("the good client was not served: %v", welcome)
	}
	if err != nil {
		t.Errorf("the child failed: %v", err)
	}
	if t.Failed() {
		t.Logf("child's output:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "too many open files") {
		t.Errorf("the server never ran out of descriptors: the test did not test anything:\n%s", out.String())
	}
}

// serveWithFewFDs is the child: a server limited to 64 file descriptors,
// serving until its stdin closes, that fails if Serve returned before.
func serveWithFewFDs(t *testing.T) {
	lim := syscall.Rlimit{Cur: 64, Max: 64}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("cannot lower the descriptor limit: %v", err)
	}
	dir := t.TempDir()
	writeTree(t, filepath.Join(dir, "linux"), map[string]string{"smartclient": "client", "lib/a.so": "a"}, oldTime)
	ts := startServer(t, linuxConfig(t, filepath.Join(dir, "linux")), func(s *Server) {
		s.HandshakeTimeout = 500 * time.Millisecond
	}, nil)
	fmt.Printf("ADDR %s\n", ts.addr)
	io.Copy(io.Discard, os.Stdin)
	fmt.Print(ts.logs.String())
	select {
	case <-ts.served:
		t.Fatalf("Serve returned while the server should be serving: %v", ts.err)
	default:
	}
}
