package appserver

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestCert: "appserver cert" prints the fingerprint of the key the server
// serves with (made in the state folder if it is not there yet, and the
// same key the server then uses), and with --host makes a key and
// certificate that the server loads from [SSL], never over existing files.
func TestCert(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, filepath.Join(dir, "linux"), map[string]string{"a": "a"}, oldTime)
	cfgPath := filepath.Join(dir, "AppServer.ini")
	writeFile(t, cfgPath, "[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nPathLinux=linux\nBuild="+srvBuild+"\n")
	var out bytes.Buffer
	if err := Cert(CertOptions{Config: cfgPath}, &out); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(t.Context(), discardLogger(), cfg, filepath.Join(dir, "appserver-state"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if !strings.Contains(out.String(), "Fingerprint: "+srv.Fingerprint()+"\n") || !strings.Contains(out.String(), "[SSL]\nFingerprint="+srv.Fingerprint()) {
		t.Errorf("cert printed\n%s\nwant the server's fingerprint %s", out.String(), srv.Fingerprint())
	}

	prefix := filepath.Join(dir, "erp")
	out.Reset()
	if err := Cert(CertOptions{Hosts: []string{"erp.example.com", "10.0.0.5"}, Out: prefix}, &out); err != nil {
		t.Fatal(err)
	}
	// Windows keeps no Unix modes (its ACLs decide who reads the key).
	if fi, err := os.Stat(prefix + ".key"); err != nil || runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("the key file: %v, %v; want mode 0600", fi, err)
	}
	writeFile(t, cfgPath, "[TCP]\nPort=1234\n[UPDATE]\nEnable=1\nPathLinux=linux\nBuild="+srvBuild+"\n[SSL]\nCertificate=erp.crt\nKey=erp.key\n")
	cfg, err = LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	srv2, err := New(t.Context(), discardLogger(), cfg, filepath.Join(dir, "state2"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	if !strings.Contains(out.String(), "Fingerprint: "+srv2.Fingerprint()+"\n") {
		t.Errorf("cert --host printed\n%s\nwant the fingerprint the server serves, %s", out.String(), srv2.Fingerprint())
	}
	if err := Cert(CertOptions{Hosts: []string{"erp.example.com"}, Out: prefix}, &out); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("cert --host over existing files: %v; want a refusal", err)
	}
}
