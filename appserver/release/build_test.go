package release

import (
	"errors"
	"testing"
)

func TestCheckNewer(t *testing.T) {
	tests := []struct {
		running, release string
		allow            bool
		want             error // nil, ErrNotNewer, or errAny for a malformed build
	}{
		{"7.00.240501A", "7.00.240601A", false, nil},
		{"7.00.240601", "7.00.240601A", false, nil},
		{"7.00.240601A", "7.00.240601B", false, nil},
		{"7.00.240601A", "7.01.240101", false, nil},
		{"7.00.240601A", "8.0.200101", false, nil},
		{"7.00.240601A", "7.00.240601A", false, ErrNotNewer},
		{"7.00.240601A", "7.0.240601A", false, ErrNotNewer},
		{"7.00.240601A", "7.00.240501A", false, ErrNotNewer},
		{"7.00.240601A", "7.00.240601", false, ErrNotNewer},
		{"7.00.240601A", "7.00.240501A", true, nil},
		{"7.00.240601A", "7.00.240601A", true, nil},
		{"7.00.240601A", "7.00.241301A", true, errAny},
		{"junk", "7.00.240601A", true, errAny},
		{"7.00.240601A", "7.00.240601a", false, errAny},
	}
	for _, tt := range tests {
		err := CheckNewer(tt.running, tt.release, tt.allow)
		switch {
		case tt.want == errAny && (err == nil || errors.Is(err, ErrNotNewer)):
			t.Errorf("CheckNewer(%q, %q, %v) = %v, want a malformed-build error", tt.running, tt.release, tt.allow, err)
		case tt.want != errAny && !errors.Is(err, tt.want):
			t.Errorf("CheckNewer(%q, %q, %v) = %v, want %v", tt.running, tt.release, tt.allow, err, tt.want)
		}
	}
}

var errAny = errors.New("any error")
