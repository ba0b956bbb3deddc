package smartclient

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// totvsClientINI is a smartclient.ini as TOTVS installs it, with sections we
// do not read and a Windows path that ends in a backslash.
const totvsClientINI = `[config]
lastmainprog=sigamdi
envserver=environment
rpoversion=120
language=1
localfiles=C:\totvs\smartclient\
browser=

[drivers]
active=tcp

[tcp]
server=erp.example.local
port=1234

[ssl]
server=erp-ssl.example.local
port=1235

[theme]
name=sunset
`

func TestParseClientINI(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    ClientINI
		wantErr string // substring of the error; "" for success
	}{
		{
			name: "minimal TCP section",
			data: "[TCP]\nServer=erp.example.local\nPort=1234\n",
			want: ClientINI{Server: "erp.example.local", Port: 1234},
		},
		{
			name: "full TOTVS file",
			data: totvsClientINI,
			want: ClientINI{Server: "erp.example.local", Port: 1234},
		},
		{
			name: "active=ssl picks [ssl]",
			data: strings.Replace(totvsClientINI, "active=tcp", "active=ssl", 1),
			want: ClientINI{Server: "erp-ssl.example.local", Port: 1235},
		},
		{
			name: "active is case-insensitive",
			data: "[Drivers]\nActive=SSL\n[SSL]\nSERVER=10.0.0.5\nPORT=7000\n",
			want: ClientINI{Server: "10.0.0.5", Port: 7000},
		},
		{
			name: "empty active means tcp",
			data: "[drivers]\nactive=\n[tcp]\nserver=a\nport=1\n",
			want: ClientINI{Server: "a", Port: 1},
		},
		{
			name: "BOM and CRLF",
			data: "\ufeff[config]\r\nlastmainprog=sigamdi\r\n\r\n[drivers]\r\nactive=tcp\r\n\r\n[tcp]\r\nserver=erp.example.local\r\nport=1234\r\n",
			want: ClientINI{Server: "erp.example.local", Port: 1234},
		},
		{
			name: "comments and spaces",
			data: "; written by hand\n# and this too\n[tcp]\n  server = erp.example.local   ; the ERP server\n  port = 1234 ; default\n",
			want: ClientINI{Server: "erp.example.local", Port: 1234},
		},
		{
			name: "port highest",
			data: "[tcp]\nport=65535\n",
			want: ClientINI{Port: 65535},
		},
		{
			name: "empty port is not set",
			data: "[tcp]\nserver=erp\nport=\n",
			want: ClientINI{Server: "erp"},
		},
		{
			name: "no tcp section",
			data: "[config]\nlastmainprog=sigamdi\n",
			want: ClientINI{},
		},
		{
			name: "empty file",
			data: "",
			want: ClientINI{},
		},
		{
			name:    "port not a number",
			data:    "[tcp]\nserver=erp\nport=abc\n",
			wantErr: `smartclient.ini: [tcp] port: "abc" is not a port number (1-65535)`,
		},
		{
			name:    "port zero",
			data:    "[tcp]\nport=0\n",
			wantErr: `smartclient.ini: [tcp] port: "0" is not a port number (1-65535)`,
		},
		{
			name:    "port too big",
			data:    "[tcp]\nport=65536\n",
			wantErr: `smartclient.ini: [tcp] port: "65536" is not a port number (1-65535)`,
		},
		{
			name:    "port huge",
			data:    "[tcp]\nport=99999999999999999999999\n",
			wantErr: `[tcp] port: "99999999999999999999999" is not a port number`,
		},
		{
			name:    "port negative",
			data:    "[tcp]\nport=-1\n",
			wantErr: `[tcp] port: "-1" is not a port number`,
		},
		{
			name:    "port with sign",
			data:    "[tcp]\nport=+80\n",
			wantErr: `[tcp] port: "+80" is not a port number`,
		},
		{
			name:    "bad port in the active section names it",
			data:    "[drivers]\nactive=ssl\n[ssl]\nport=12a4\n",
			wantErr: `smartclient.ini: [ssl] port: "12a4" is not a port number (1-65535)`,
		},
		{
			name: "bad port in an inactive section is ignored",
			data: "[drivers]\nactive=tcp\n[tcp]\nport=1234\n[ssl]\nport=bad\n",
			want: ClientINI{Port: 1234},
		},
		{
			name:    "active names a missing section",
			data:    "[drivers]\nactive=ssl\n[tcp]\nserver=erp\n",
			wantErr: `smartclient.ini: [drivers] active: "ssl" names no [ssl] section`,
		},
		{
			name:    "server with a space",
			data:    "[tcp]\nserver=erp example\n",
			wantErr: `smartclient.ini: [tcp] server: "erp example" is not a host name or address`,
		},
		{
			name:    "syntax error",
			data:    "[tcp\nport=1\n",
			wantErr: "smartclient.ini: ",
		},
		{
			name: "publisher keys and unsigned releases",
			data: "[TCP]\nServer=erp\n[UPDATE]\nPublisherKey=ed25519:" + testKeyB64 + ", ed25519:" + testKeyB64b + "\nAllowUnsigned=1\n",
			want: ClientINI{Server: "erp", PublisherKeys: []string{"ed25519:" + testKeyB64, "ed25519:" + testKeyB64b}, AllowUnsigned: true},
		},
		{
			name:    "publisher key that is not one",
			data:    "[UPDATE]\nPublisherKey=ed25519:AAAA\n",
			wantErr: `smartclient.ini: [update] publisherkey: "ed25519:AAAA" is not a publisher key`,
		},
		{
			name:    "AllowUnsigned not a boolean",
			data:    "[UPDATE]\nAllowUnsigned=maybe\n",
			wantErr: `smartclient.ini: [update] allowunsigned: "maybe" is not 0 or 1`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseClientINI("smartclient.ini", []byte(tt.data))
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseClientINI = %+v, want error containing %q", got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %q, want it to contain %q", err, tt.wantErr)
				}
				var ie *ClientINIError
				if !errors.As(err, &ie) {
					t.Fatalf("error %v (%T) is not a *ClientINIError", err, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseClientINI: %v", err)
			}
			tt.want.File = "smartclient.ini"
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseClientINI = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLoadClientINI(t *testing.T) {
	t.Run("missing file", func(t *testing.T) {
		got, err := LoadClientINI(t.TempDir())
		if err != nil {
			t.Fatalf("LoadClientINI: %v", err)
		}
		if !reflect.DeepEqual(got, ClientINI{}) {
			t.Fatalf("LoadClientINI = %+v, want zero", got)
		}
	})
	t.Run("missing folder", func(t *testing.T) {
		got, err := LoadClientINI(filepath.Join(t.TempDir(), "nowhere"))
		if err != nil || !reflect.DeepEqual(got, ClientINI{}) {
			t.Fatalf("LoadClientINI = %+v, %v; want zero, nil", got, err)
		}
	})
	t.Run("file", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "smartclient.ini")
		if err := os.WriteFile(file, []byte(totvsClientINI), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := LoadClientINI(dir)
		if err != nil {
			t.Fatalf("LoadClientINI: %v", err)
		}
		want := ClientINI{File: file, Server: "erp.example.local", Port: 1234}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("LoadClientINI = %+v, want %+v", got, want)
		}
	})
	t.Run("bad port names the path", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "smartclient.ini")
		if err := os.WriteFile(file, []byte("[TCP]\r\nPort=abc\r\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadClientINI(dir)
		want := file + `: [tcp] port: "abc" is not a port number (1-65535)`
		if err == nil || err.Error() != want {
			t.Fatalf("LoadClientINI error = %v, want %q", err, want)
		}
	})
	t.Run("unreadable is an error", func(t *testing.T) {
		// A folder where the file should be cannot be read on any system,
		// even as root, unlike a file without read permission.
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "smartclient.ini"), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadClientINI(dir); err == nil {
			t.Fatal("LoadClientINI succeeded on a folder named smartclient.ini")
		}
	})
	t.Run("fixtures", func(t *testing.T) {
		// The example update folders must hold a smartclient.ini that the
		// client accepts, since a full update copies it to workstations.
		for _, osName := range []string{"windows", "linux", "macosx"} {
			got, err := LoadClientINI(filepath.Join("..", "testdata", "update", osName))
			if err != nil {
				t.Fatalf("%s: %v", osName, err)
			}
			if got.Server != "erp.example.local" || got.Port != 1234 {
				t.Fatalf("%s: LoadClientINI = %+v, want erp.example.local:1234", osName, got)
			}
		}
	})
}

func FuzzParseClientINI(f *testing.F) {
	f.Add([]byte("[TCP]\nServer=erp.example.local\nPort=1234\n"))
	f.Add([]byte(totvsClientINI))
	f.Add([]byte("\ufeff[drivers]\r\nactive=ssl\r\n[ssl]\r\nserver=x\r\nport=99999\r\n"))
	f.Add([]byte("[tcp\nport=1"))
	f.Add([]byte("[UPDATE]\nMinRate=32\nRateWindow=60\nDeadline=2h\n"))
	f.Add([]byte("[update]\nminrate=off\ndeadline=1800\nratewindow=90s\n"))
	f.Add([]byte("[tcp]\nport=\"\"\"\nmulti\n\"\"\"\n"))
	f.Add([]byte("[UPDATE]\nPublisherKey=ed25519:" + testKeyB64 + " ed25519:" + testKeyB64b + "\nAllowUnsigned=yes\n"))
	for _, osName := range []string{"windows", "linux", "macosx"} {
		if data, err := os.ReadFile(filepath.Join("..", "testdata", "update", osName, "smartclient.ini")); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ParseClientINI("smartclient.ini", data)
		if err != nil {
			var ie *ClientINIError
			if !errors.As(err, &ie) {
				t.Fatalf("error %v (%T) is not a *ClientINIError", err, err)
			}
			if !reflect.DeepEqual(got, ClientINI{}) {
				t.Fatalf("ParseClientINI returned %+v with error %v", got, err)
			}
			return
		}
		if got.File != "smartclient.ini" {
			t.Fatalf("File = %q", got.File)
		}
		if got.Port < 0 || got.Port > 65535 {
			t.Fatalf("Port = %d out of range", got.Port)
		}
	})
}

// Two publisher keys' base64 (32 bytes each).
const (
	testKeyB64  = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
	testKeyB64b = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
)
