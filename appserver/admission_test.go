package appserver

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestParseConfigAdmission: [UPDATE] MaxTransfers defaults from the
// machine; the bandwidth keys take bytes with K, M or G (1024-based) and 0
// for none; a bad value is an error naming the file, section and key.
func TestParseConfigAdmission(t *testing.T) {
	type want struct {
		transfers  int
		total, per int64
	}
	def := want{max(8, 4*runtime.GOMAXPROCS(0)), 0, 0}
	tests := []struct {
		name    string
		text    string
		want    want
		key     string // of the error; "" for none
		problem string
	}{
		{"absent", "", def, "", ""},
		{"empty", "MaxTransfers=\nMaxBytesPerSecond=\n", def, "", ""},
		{"all set", "maxtransfers=2\nMaxBytesPerSecond=10M\nMaxClientBytesPerSecond=512k\n", want{2, 10 << 20, 512 << 10}, "", ""},
		{"plain bytes", "MaxBytesPerSecond=1048576\nMaxClientBytesPerSecond=0\n", want{def.transfers, 1 << 20, 0}, "", ""},
		{"gigabytes", "MaxBytesPerSecond=1G\n", want{def.transfers, 1 << 30, 0}, "", ""},
		{"largest", "MaxBytesPerSecond=1024G\n", want{def.transfers, 1 << 40, 0}, "", ""},
		{"smallest", "MaxClientBytesPerSecond=1024\n", want{def.transfers, 0, 1024}, "", ""},
		{"no transfers", "MaxTransfers=0\n", def, "MaxTransfers", `"0" is not a number of transfers from 1 to 100000`},
		{"too many transfers", "MaxTransfers=100001\n", def, "MaxTransfers", `"100001" is not a number of transfers from 1 to 100000`},
		{"transfers word", "MaxTransfers=eight\n", def, "MaxTransfers", `"eight" is not a number of transfers`},
		{"MB", "MaxBytesPerSecond=10MB\n", def, "MaxBytesPerSecond", `"10MB" is not a number of bytes a second: write 0 for no limit, or a whole number from 1024 (1K) to 1099511627776 (1024G), optionally followed by K, M or G (1024-based), as in 10M`},
		{"too small", "MaxClientBytesPerSecond=1000\n", def, "MaxClientBytesPerSecond", `"1000" is not a number of bytes a second`},
		{"too large", "MaxBytesPerSecond=1025G\n", def, "MaxBytesPerSecond", `"1025G" is not a number of bytes a second`},
		{"negative", "MaxClientBytesPerSecond=-1\n", def, "MaxClientBytesPerSecond", `"-1" is not a number of bytes a second`},
		{"unit alone", "MaxBytesPerSecond=K\n", def, "MaxBytesPerSecond", `"K" is not a number of bytes a second`},
		{"fraction", "MaxBytesPerSecond=1.5M\n", def, "MaxBytesPerSecond", `"1.5M" is not a number of bytes a second`},
		{"overflow", "MaxBytesPerSecond=99999999999999999999\n", def, "MaxBytesPerSecond", `is not a number of bytes a second`},
		{"unknown key", "MaxTransfer=2\n", def, "MaxTransfer", "unknown key (did you mean MaxTransfers?)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("AppServer.ini", []byte(baseINI+tc.text), t.TempDir())
			if tc.key == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := (want{cfg.MaxTransfers, cfg.MaxBytesPerSecond, cfg.MaxClientBytesPerSecond}); got != tc.want {
					t.Errorf("got %+v, want %+v", got, tc.want)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a ConfigError", err)
			}
			if ce.File != "AppServer.ini" || ce.Section != "UPDATE" || ce.Key != tc.key || !strings.Contains(ce.Problem, tc.problem) {
				t.Errorf("got %s (section %q, key %q), want [UPDATE] %s: ...%s...", ce, ce.Section, ce.Key, tc.key, tc.problem)
			}
		})
	}
}

// TestBusyRetryAfter: N = ceil((queued+1)/slots) × the average transfer,
// clamped to 1 s .. 5 min.
func TestBusyRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		queued, slots int
		avg, want     time.Duration
	}{
		{0, 8, 10 * time.Second, 10 * time.Second},              // next round
		{7, 8, 10 * time.Second, 10 * time.Second},              // 8 of us: still one round
		{8, 8, 10 * time.Second, 20 * time.Second},              // the ninth waits two
		{100, 8, 3 * time.Second, 39 * time.Second},             // ceil(101/8)=13 rounds
		{8, 2, 300 * time.Millisecond, 1500 * time.Millisecond}, // ceil(9/2)=5 rounds
		{0, 2, 10 * time.Millisecond, time.Second},              // floor
		{100000, 8, time.Minute, 5 * time.Minute},               // cap
		{-5, 0, 0, time.Second},                                 // nonsense in: the floor
		{1 << 40, 1, time.Hour, 5 * time.Minute},                // no overflow
	} {
		if got := busyRetryAfter(tc.queued, tc.slots, tc.avg); got != tc.want {
			t.Errorf("busyRetryAfter(%d, %d, %v) = %v, want %v", tc.queued, tc.slots, tc.avg, got, tc.want)
		}
	}
}

// TestDescribeAdmission: the summary's line shows the keys as set.
func TestDescribeAdmission(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{MaxTransfers: 3}, "[UPDATE] MaxTransfers=3 transfers at once; MaxBytesPerSecond no limit, MaxClientBytesPerSecond no limit"},
		{Config{MaxTransfers: 8, MaxBytesPerSecond: 10 << 20, MaxClientBytesPerSecond: 1500},
			"[UPDATE] MaxTransfers=8 transfers at once; MaxBytesPerSecond 10M (10485760 bytes/s), MaxClientBytesPerSecond 1500 bytes/s"},
	} {
		if got := describeAdmission(&tc.cfg); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}
