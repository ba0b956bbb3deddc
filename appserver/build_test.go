package appserver

import (
	"slices"
	"strings"
	"testing"
)

func TestParseBuild(t *testing.T) {
	tests := []struct {
		in   string
		want Build // raw is checked through String
		str  string
	}{
		{"7.00.240501A", Build{Major: 7, Minor: 0, Date: 240501, Suffix: "A"}, "7.00.240501A"},
		{"7.00.240501", Build{Major: 7, Minor: 0, Date: 240501}, "7.00.240501"},
		{"  7.00.231101Z \t", Build{Major: 7, Minor: 0, Date: 231101, Suffix: "Z"}, "7.00.231101Z"},
		{"12.1.240229B", Build{Major: 12, Minor: 1, Date: 240229, Suffix: "B"}, "12.1.240229B"}, // 2024 is a leap year.
		{"0.0.000101", Build{Date: 101}, "0.0.000101"},
		{"7.00.991231", Build{Major: 7, Date: 991231}, "7.00.991231"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseBuild(tt.in)
			if err != nil {
				t.Fatalf("ParseBuild(%q): %v", tt.in, err)
			}
			if got.Major != tt.want.Major || got.Minor != tt.want.Minor || got.Date != tt.want.Date || got.Suffix != tt.want.Suffix {
				t.Errorf("ParseBuild(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if got.String() != tt.str {
				t.Errorf("String() = %q, want %q", got.String(), tt.str)
			}
			if got.IsZero() {
				t.Errorf("IsZero() = true for a parsed build")
			}
		})
	}
}

func TestParseBuildErrors(t *testing.T) {
	tests := []struct {
		in   string
		want string // substring of the error
	}{
		{"", "empty"},
		{"   ", "empty"},
		{"abc", "want MAJOR.MINOR.YYMMDD"},
		{"12.1.2310", `date "2310" must be 6 digits`},
		{"7.00", "want MAJOR.MINOR.YYMMDD"},
		{"7.00.240501A.1", "want MAJOR.MINOR.YYMMDD"},
		{"7.00.241301A", "month 13"},
		{"7.00.240001A", "month 00"},
		{"7.00.240431A", "day 31"},
		{"7.00.230229A", "day 29"}, // 2023 is not a leap year.
		{"7.00.240500A", "day 00"},
		{"7.00.240501a", `suffix "a"`},
		{"7.00.240501AB", `suffix "AB"`},
		{"7.00.240501-", `suffix "-"`},
		{"7.00.2405011", `date "2405011" must be 6 digits`},
		{".00.240501A", "major version: empty"},
		{"+7.00.240501A", `major version: "+7" is not a number`},
		{"7.x.240501A", `minor version: "x" is not a number`},
		{"7. 00.240501A", `minor version: " 00" is not a number`},
		{"99999999999999999999.0.240501", "too large"},
		{"7.00.２40501", "must be 6 digits"}, // Full-width digits are not digits here.
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			b, err := ParseBuild(tt.in)
			if err == nil {
				t.Fatalf("ParseBuild(%q) = %v, want an error", tt.in, b)
			}
			if !b.IsZero() {
				t.Errorf("ParseBuild(%q) returned %+v with the error, want the zero Build", tt.in, b)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not contain %q", msg, tt.want)
			}
			// The error must name the string, so that a message further up
			// ("[UPDATE] Build: ...") shows what was written.
			if !strings.Contains(msg, strings.TrimSpace(tt.in)) {
				t.Errorf("error %q does not name the input %q", msg, tt.in)
			}
		})
	}
}

func TestBuildCompare(t *testing.T) {
	// Each build is newer than the one before it.
	ordered := []string{
		"6.09.991231Z",
		"7.00.170101",
		"7.00.231101A",
		"7.00.240501",
		"7.00.240501A",
		"7.00.240501B",
		"7.00.240502",
		"7.01.000101",
		"12.1.230101",
	}
	builds := make([]Build, len(ordered))
	for i, s := range ordered {
		b, err := ParseBuild(s)
		if err != nil {
			t.Fatal(err)
		}
		builds[i] = b
	}
	for i := range builds {
		for j := range builds {
			want := 0
			switch {
			case i < j:
				want = -1
			case i > j:
				want = 1
			}
			if got := builds[i].Compare(builds[j]); got != want {
				t.Errorf("%v.Compare(%v) = %d, want %d", builds[i], builds[j], got, want)
			}
		}
	}

	// Sorting a shuffled copy gives the order back.
	shuffled := slices.Clone(builds)
	slices.Reverse(shuffled)
	slices.SortFunc(shuffled, Build.Compare)
	for i := range shuffled {
		if shuffled[i].String() != ordered[i] {
			t.Errorf("sorted[%d] = %v, want %v", i, shuffled[i], ordered[i])
		}
	}

	// Two spellings of one build are the same build.
	a, _ := ParseBuild("7.0.240501A")
	b, _ := ParseBuild("7.00.240501A")
	if a.Compare(b) != 0 {
		t.Errorf("%v.Compare(%v) = %d, want 0", a, b, a.Compare(b))
	}
	if a.String() == b.String() {
		t.Errorf("String() should keep each spelling, got %q for both", a.String())
	}
}

func TestBuildZero(t *testing.T) {
	var zero Build
	if !zero.IsZero() {
		t.Error("Build{}.IsZero() = false")
	}
	if zero.String() != "" {
		t.Errorf("Build{}.String() = %q, want empty", zero.String())
	}
	b, err := ParseBuild("7.00.240501A")
	if err != nil {
		t.Fatal(err)
	}
	if zero.Compare(b) != -1 || b.Compare(zero) != 1 {
		t.Errorf("the zero Build must sort before any real build")
	}
	// A Build written as a literal has no original text but still prints.
	lit := Build{Major: 7, Minor: 0, Date: 240501, Suffix: "A"}
	if lit.String() != "7.00.240501A" || lit.Compare(b) != 0 {
		t.Errorf("literal Build prints %q, compares %d", lit.String(), lit.Compare(b))
	}
}
