package throttle

import (
	"testing"
	"time"
)

func TestRule(t *testing.T) {
	var results []string
	th := &Logins{Observe: func(r string) { results = append(results, r) }}
	if w := th.Begin("h"); w != 0 {
		t.Fatalf("first attempt waits %v", w)
	}
	if w := th.Begin("h"); w == 0 {
		t.Fatal("a second attempt is checked while the first one is")
	}
	th.End("h", false)
	if w := th.Begin("h"); w != 0 {
		t.Fatalf("after one failure: wait %v, want none", w)
	}
	if n := th.End("h", false); n != 2 || th.Failures("h") != 2 {
		t.Fatalf("after two failures: End = %d, Failures = %d", n, th.Failures("h"))
	}
	if w := th.Begin("h"); w <= 0 || w > time.Second {
		t.Fatalf("after two failures: wait %v, want up to 1 s", w)
	}
	if w := th.Begin("other"); w != 0 {
		t.Fatalf("another address waits %v", w)
	}
	if n := th.End("other", true); n != 0 {
		t.Fatalf("a success: End = %d", n)
	}
	want := []string{ResultThrottled, ResultFailed, ResultFailed, ResultThrottled, ResultOK}
	if len(results) != len(want) {
		t.Fatalf("observed %q, want %q", results, want)
	}
	for i := range want {
		if results[i] != want[i] {
			t.Errorf("observed %q, want %q", results, want)
			break
		}
	}
	for n, want := range map[int]time.Duration{1: 0, 2: time.Second, 3: 2 * time.Second, 7: 30 * time.Second, 9: 30 * time.Second} {
		if got := Delay(n); got != want {
			t.Errorf("Delay(%d) = %v, want %v", n, got, want)
		}
	}
	th.Fail("x", 7)
	if w := th.Begin("x"); w < 29*time.Second {
		t.Errorf("after Fail(7): wait %v, want about 30 s", w)
	}
	th.Forget()
	if w := th.Begin("x"); w != 0 || th.Failures("x") != 0 {
		t.Errorf("after Forget: wait %v, failures %d", w, th.Failures("x"))
	}
}

func TestKey(t *testing.T) {
	for addr, want := range map[string]string{
		"10.0.0.7:5123":              "10.0.0.7",
		"10.0.0.7":                   "10.0.0.7",
		"[2001:db8:1:2:aaaa::1]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::9]:443": "2001:db8:1:2::/64",
		"[::ffff:10.0.0.7]:1":        "10.0.0.7",
		"[fe80::1%eth0]:22":          "fe80::/64",
		"not an address":             "not an address",
	} {
		if got := Key(addr); got != want {
			t.Errorf("Key(%q) = %q, want %q", addr, got, want)
		}
	}
}
