package release_test

import (
	"testing"

	"github.com/erpupdate/smartsync/appserver"
	"github.com/erpupdate/smartsync/appserver/release"
)

// TestBuildAgreesWithAppserver keeps the package's own build check in step
// with appserver.ParseBuild, which it cannot import (appserver imports
// this package).
func TestBuildAgreesWithAppserver(t *testing.T) {
	for _, s := range []string{
		"7.00.240601A", "7.00.240601", " 7.0.240601Z ", "7.00.240229", "7.00.230229",
		"7.00.241301A", "7.00.240631", "7.00.240601a", "7.00.240601AB", "+7.00.240601",
		"7.00", "7.00.24060", "7.00.2406011", "", "7..240601", "7.00.000000", "99999999999999999999.0.240601",
	} {
		_, want := appserver.ParseBuild(s)
		got := release.ValidateBuild(s)
		if (got == nil) != (want == nil) {
			t.Errorf("%q: release says %v, appserver says %v", s, got, want)
		}
	}
}
