package cli

import (
	"context"
	"os"
	"slices"
	"testing"

	"github.com/erpupdate/smartsync/appserver/internal/service"
)

// TestMain lets the test binary be the server of an installed service:
// the service manager starts it with the server's command line (which
// names the service with --service-name), and it runs Main as
// cmd/appserver does.
func TestMain(m *testing.M) {
	if slices.Contains(os.Args[1:], "--"+service.NameFlag) {
		os.Exit(Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
