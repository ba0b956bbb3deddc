package cdc

import (
	"math/rand/v2"
	"testing"
)

// TestBlockSumsGolden pins the sums: they are part of the wire protocol,
// and a change to gear, rollK or the strong sum must fail here.
func TestBlockSumsGolden(t *testing.T) {
	p := []byte("The quick brown fox jumps over the lazy dog")
	if got, want := uint64(WeakSum(p)), uint64(0x944c2151f346ec23); got != want {
		t.Errorf("WeakSum = %#016x, want %#016x", got, want)
	}
	if got, want := WeakSum(p).Weak(), uint32(0x944c2151); got != want {
		t.Errorf("Weak = %#08x, want %#08x", got, want)
	}
	// The CRC-32C of this sentence is the one published with the
	// algorithm (RFC 3720's test vectors give the same function).
	if got, want := StrongSum(p), uint32(0x22620404); got != want {
		t.Errorf("StrongSum = %#08x, want %#08x", got, want)
	}
}

func TestRollPowers(t *testing.T) {
	k := uint64(rollK)
	if k*k != rollK2 || k*k*k != rollK3 || k*k*k*k != rollK4 {
		t.Errorf("rollK2..4 are not the powers of rollK mod 2^64")
	}
}

func TestBlockSize(t *testing.T) {
	for _, tc := range []struct {
		size int64
		want int
	}{
		{-1, 128}, {0, 128}, {1000, 128}, {7000, 128}, {7400, 136},
		{64 << 10, 384}, {1 << 20, 1536}, {1 << 31, MaxBlock}, {1 << 40, MaxBlock},
	} {
		if got := BlockSize(tc.size); got != tc.want {
			t.Errorf("BlockSize(%d) = %d, want %d", tc.size, got, tc.want)
		}
	}
}

// checkRoll rolls a window of n bytes along data and compares every step
// with the sum computed afresh.
func checkRoll(t *testing.T, data []byte, n int) {
	t.Helper()
	if n < 1 || n > len(data) {
		return
	}
	r := NewRoller(n)
	h := WeakSum(data[:n])
	for i := 1; i+n <= len(data); i++ {
		h = r.Roll(h, data[i-1], data[i+n-1])
		if want := WeakSum(data[i : i+n]); h != want {
			t.Fatalf("window %d at %d: rolled %#x, computed %#x", n, i, uint64(h), uint64(want))
		}
	}
}

func TestRollerMatchesWeakSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 4096)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, n := range []int{1, 2, 63, 64, 128, 1000} {
		checkRoll(t, data, n)
	}
}

func FuzzRoller(f *testing.F) {
	f.Add([]byte("The quick brown fox jumps over the lazy dog"), uint8(7))
	f.Add(make([]byte, 300), uint8(64))
	f.Fuzz(func(t *testing.T, data []byte, n uint8) {
		checkRoll(t, data, int(n))
	})
}
