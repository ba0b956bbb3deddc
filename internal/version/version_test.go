package version

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in     string
		scheme Scheme
		str    string
	}{
		// TOTVS builds.
		{"7.00.240501A", TOTVS, "7.00.240501A"},
		{"7.00.240501", TOTVS, "7.00.240501"},
		{"  7.00.231101Z \t", TOTVS, "7.00.231101Z"},
		{"12.1.240229B", TOTVS, "12.1.240229B"}, // 2024 is a leap year.
		{"0.0.000101", TOTVS, "0.0.000101"},
		{"7.00.991231", TOTVS, "7.00.991231"},
		{"7.00.210324P-20231030", TOTVS, "7.00.210324P-20231030"},
		{"7.00.210324-20231030", TOTVS, "7.00.210324-20231030"},
		// Dotted versions of 2 to 4 parts.
		{"17.3.0.14", Dotted, "17.3.0.14"},
		{"17.3.0.9", Dotted, "17.3.0.9"},
		{"20.3.1.2", Dotted, "20.3.1.2"},
		{"2.0", Dotted, "2.0"},
		{"7.00", Dotted, "7.00"},
		{"12.1.2310", Dotted, "12.1.2310"},
		{" 1.2.3 ", Dotted, "1.2.3"},
		{"1.2.1234567", Dotted, "1.2.1234567"}, // seven digits are not a date
		{"17.3.0", Dotted, "17.3.0"},
		{"7.0.1", Dotted, "7.0.1"}, // a minor of one digit is not TOTVS's "00"
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got.Scheme() != tt.scheme {
				t.Errorf("Parse(%q).Scheme() = %v, want %v", tt.in, got.Scheme(), tt.scheme)
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

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in   string
		want string // substring of the error
	}{
		{"", "empty"},
		{"   ", "empty"},
		{"abc", "1 parts; want MAJOR.MINOR.YYMMDD"},
		{"7", "1 parts"},
		{"1.2.3.4.5", "5 parts"},
		{"7.00.240501A.1", `third part: "240501A" is not a number`},
		{"7.00.241301A", "month 13"},
		{"7.00.240001A", "month 00"},
		{"7.00.240431A", "day 31"},
		{"7.00.230229A", "day 29"}, // 2023 is not a leap year.
		{"7.00.240500A", "day 00"},
		{"7.00.240501a", `suffix "a"`},
		{"7.00.240501AB", `suffix "AB"`},
		{"7.00.240501-", "patch date"},
		{"7.00.210324P-2023103", `patch date "2023103" must be 8 digits`},
		{"7.00.210324P-20231301", "month 13 in patch date 20231301"},
		{"7.00.210324P-20230229", "day 29 in patch date 20230229"},
		{"7.00.210324P-2023103x", `patch date "2023103x"`},
		{".00.240501A", "major version: empty"},
		{"+7.00.240501A", `major version: "+7" is not a number`},
		{"7.x.240501A", `minor version: "x" is not a number`},
		{"7. 00.240501A", `minor version: " 00" is not a number`},
		{"99999999999999999999.0.240501", "too large"},
		{"7.00.２40501", "must be 6 digits"}, // Full-width digits are not digits here.
		{"17.3.0.1a", `fourth part: "1a" is not a number`},
		{"12.1.2310A", `date "2310" must be 6 digits`},
		// A minor written as TOTVS writes it marks a TOTVS build: a date
		// of other than six digits is a typo, not a dotted version.
		{"7.00.2405011", `date "2405011" must be 6 digits`},
		{"7.00.24050", `date "24050" must be 6 digits`},
		{"7.00.24050A", `date "24050" must be 6 digits`},
		{"-1.2", `major version: "-1" is not a number`},
		{"1..2", "minor version: empty"},
		{"1.2.", "third part: empty"},
		{"v1.2", `major version: "v1"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			b, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want an error", tt.in, b)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !b.IsZero() {
				t.Errorf("Parse(%q) returned %+v with the error, want the zero Build", tt.in, b)
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

// TestCompare checks that each list is in order, oldest first, for every
// pair of its builds, and that sorting a reversed copy gives it back.
func TestCompare(t *testing.T) {
	for _, ordered := range [][]string{
		{
			"6.09.991231Z",
			"7.00.170101",
			"7.00.210324",
			"7.00.210324-20231030",
			"7.00.210324P",
			"7.00.210324P-20231029",
			"7.00.210324P-20231030",
			"7.00.231101A",
			"7.00.240501",
			"7.00.240501A",
			"7.00.240501B",
			"7.00.240502",
			"7.01.000101",
			"12.1.230101",
		},
		{
			"2.0",
			"2.0.1",
			"2.1",
			"17.3.0.9",
			"17.3.0.14", // part by part: 14 after 9, not as text
			"17.3.1",
			"17.10",
			"20.3.1.2",
		},
	} {
		builds := make([]Build, len(ordered))
		for i, s := range ordered {
			builds[i] = MustParse(s)
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
				if !builds[i].SameScheme(builds[j]) {
					t.Errorf("%v.SameScheme(%v) = false", builds[i], builds[j])
				}
			}
		}
		shuffled := slices.Clone(builds)
		slices.Reverse(shuffled)
		slices.SortFunc(shuffled, Build.Compare)
		for i := range shuffled {
			if shuffled[i].String() != ordered[i] {
				t.Errorf("sorted[%d] = %v, want %v", i, shuffled[i], ordered[i])
			}
		}
	}

	// Two spellings of one build are the same build, and keep their text.
	for _, pair := range [][2]string{{"7.0.240501A", "7.00.240501A"}, {"2.0", "2.0.0"}, {"17.3.0.14", "17.03.0.14"}} {
		a, b := MustParse(pair[0]), MustParse(pair[1])
		if a.Compare(b) != 0 {
			t.Errorf("%v.Compare(%v) = %d, want 0", a, b, a.Compare(b))
		}
		if a.String() == b.String() {
			t.Errorf("String() should keep each spelling, got %q for both", a.String())
		}
	}

	// Schemes do not mix; the zero Build mixes with both, and is older.
	totvs, dotted := MustParse("7.00.240501A"), MustParse("17.3.0.14")
	if totvs.SameScheme(dotted) || dotted.SameScheme(totvs) {
		t.Errorf("%v and %v have the same scheme", totvs, dotted)
	}
	if totvs.Compare(dotted) != -(dotted.Compare(totvs)) || totvs.Compare(dotted) == 0 {
		t.Errorf("builds of different schemes must still sort one way: %d, %d", totvs.Compare(dotted), dotted.Compare(totvs))
	}
	var zero Build
	for _, b := range []Build{totvs, dotted} {
		if !zero.SameScheme(b) || !b.SameScheme(zero) {
			t.Errorf("the zero Build has another scheme than %v", b)
		}
		if zero.Compare(b) != -1 || b.Compare(zero) != 1 {
			t.Errorf("the zero Build must sort before %v", b)
		}
	}
	if !zero.IsZero() || zero.String() != "" {
		t.Errorf("Build{}: IsZero %v, String %q", zero.IsZero(), zero.String())
	}
}

func TestCheckNewer(t *testing.T) {
	errAny := errors.New("any error")
	tests := []struct {
		running, release string
		allow            bool
		want             error // nil, ErrNotNewer, ErrSchemes, or errAny for a malformed build
	}{
		{"7.00.240501A", "7.00.240601A", false, nil},
		{"7.00.240601", "7.00.240601A", false, nil},
		{"7.00.240601A", "7.00.240601B", false, nil},
		{"7.00.240601A", "7.01.240101", false, nil},
		{"7.00.240601A", "8.0.200101", false, nil},
		{"7.00.210324P", "7.00.210324P-20231030", false, nil},
		{"17.3.0.9", "17.3.0.14", false, nil},
		{"7.00.240601A", "7.00.240601A", false, ErrNotNewer},
		{"7.00.240601A", "7.0.240601A", false, ErrNotNewer},
		{"7.00.240601A", "7.00.240501A", false, ErrNotNewer},
		{"7.00.240601A", "7.00.240601", false, ErrNotNewer},
		{"17.3.0.14", "17.3.0.9", false, ErrNotNewer},
		{"2.0", "2.0.0", false, ErrNotNewer},
		{"7.00.240601A", "7.00.240501A", true, nil},
		{"7.00.240601A", "7.00.240601A", true, nil},
		{"7.00.240601A", "17.3.0.14", false, ErrSchemes},
		{"17.3.0.14", "7.00.240601A", true, ErrSchemes}, // no flag orders two schemes
		{"7.00.240601A", "7.00.241301A", true, errAny},
		{"junk", "7.00.240601A", true, errAny},
		{"7.00.240601A", "7.00.240601a", false, errAny},
	}
	for _, tt := range tests {
		err := CheckNewer(tt.running, tt.release, tt.allow)
		switch {
		case tt.want == errAny && (err == nil || !errors.Is(err, ErrInvalid)):
			t.Errorf("CheckNewer(%q, %q, %v) = %v, want a malformed-build error", tt.running, tt.release, tt.allow, err)
		case tt.want != errAny && !errors.Is(err, tt.want):
			t.Errorf("CheckNewer(%q, %q, %v) = %v, want %v", tt.running, tt.release, tt.allow, err, tt.want)
		case tt.want == nil && err != nil:
			t.Errorf("CheckNewer(%q, %q, %v) = %v, want nil", tt.running, tt.release, tt.allow, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"7.00.240501A", "7.00.210324P-20231030", "17.3.0.14", "2.0", "", "1..2", "7.00.240501-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := Parse(s)
		if err != nil {
			if !b.IsZero() {
				t.Fatalf("Parse(%q) returned %v with an error", s, b)
			}
			return
		}
		// A parsed build reads back as itself and equals itself.
		again, err := Parse(b.String())
		if err != nil || again.Compare(b) != 0 || again.String() != b.String() {
			t.Fatalf("Parse(%q) = %v; again: %v, %v", s, b, again, err)
		}
	})
}
