package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient"
)

// TestPrintStatusPublisher: status shows the signed release, its key and
// its expiry, with anything that came from a server escaped.
func TestPrintStatusPublisher(t *testing.T) {
	tests := []struct {
		name string
		p    *smartclient.PublisherStatus
		want []string
		not  []string
	}{
		{"never signed", nil, []string{"Release:         unsigned"}, nil},
		{"signed", &smartclient.PublisherStatus{KeyListVersion: 2, Keys: "0123456789abcdef", Highest: 7,
			Installed: &smartclient.InstalledRelease{Key: "0123456789abcdef", Number: 7, Build: "7.00.240501A", Expires: time.Date(2099, 1, 2, 3, 4, 0, 0, time.UTC)}},
			[]string{"Release:         7, build 7.00.240501A, signed by publisher key 0123456789abcdef, expires 2099-01-02 03:04 UTC",
				"(key list version 2), highest release installed 7"}, []string{"expired"}},
		{"expired, hostile build", &smartclient.PublisherStatus{KeyListVersion: 1, Keys: "k",
			Installed: &smartclient.InstalledRelease{Key: "k", Number: 1, Build: "7\x1b[2J", Expires: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}},
			[]string{"expired: the next sync needs a newly signed release", `7\x1b[2J`}, []string{"\x1b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			printStatus(&b, &smartclient.StatusReport{Dir: "/x", Build: "7.00.240501A", OS: "linux", Publisher: tt.p})
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("status does not say %q:\n%s", w, b.String())
				}
			}
			for _, n := range tt.not {
				if strings.Contains(b.String(), n) {
					t.Errorf("status says %q:\n%s", n, b.String())
				}
			}
		})
	}
}
