package desktop

import "testing"

// TestZenityLine: a "# " line reaches zenity as one line that it
// unescapes back to the text.
func TestZenityLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Downloading", "Downloading"},
		{"two\nlines", `two\nlines`},
		{`C:\erp\smartclient.exe`, `C:\\erp\\smartclient.exe`},
		{"bell\a and <markup> & tab\t", "bell and <markup> & tab"},
	} {
		if got := zenityLine(tc.in); got != tc.want {
			t.Errorf("zenityLine(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
