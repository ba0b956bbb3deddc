package releasemeta

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

func pub(k ed25519.PrivateKey) PublicKey { return PublicKey(k.Public().(ed25519.PublicKey)) }

var t0 = time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)

func statement(n uint64) Statement {
	return Statement{OS: "linux", Build: "7.00.240501A", Number: n, Published: t0, Expires: t0.Add(90 * 24 * time.Hour), Digest: Digest{1, 2, 3}}
}

func mustSign(t testing.TB, st Statement, chain []SignedKeyList, k ed25519.PrivateKey) []byte {
	t.Helper()
	b, err := Sign(st, chain, k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerify(t *testing.T) {
	a, b, c := testKey(1), testKey(2), testKey(3)
	ringA := KeyList{Version: 1, Keys: []PublicKey{pub(a)}}
	chainA := NewChain(a)
	// Rotation: version 2 holds b only, signed by a.
	chainB, err := Rotate(chainA, a, []PublicKey{pub(b)})
	if err != nil {
		t.Fatal(err)
	}
	// A chain whose version 2 is signed by c, a key a never named.
	forged := []SignedKeyList{chainA[0], {List: KeyList{Version: 2, Keys: []PublicKey{pub(c)}}, Signatures: []Signature{sign(c, keyListMessage(KeyList{Version: 2, Keys: []PublicKey{pub(c)}}))}}}
	expired := statement(5)
	expired.Expires = t0.Add(time.Hour)
	tampered := mustSign(t, statement(5), chainA, a)
	tampered = bytes.Replace(tampered, []byte(`"number":5`), []byte(`"number":6`), 1)
	ringB := KeyList{Version: 2, Keys: []PublicKey{pub(b)}}
	tests := []struct {
		name    string
		signed  []byte
		ring    KeyList
		now     time.Time
		os      string
		want    error
		wantVer uint64
	}{
		{"good", mustSign(t, statement(5), chainA, a), ringA, t0.Add(time.Hour), "linux", nil, 1},
		{"good, no chain", mustSign(t, statement(5), nil, a), ringA, t0, "linux", nil, 1},
		{"unknown key", mustSign(t, statement(5), NewChain(c), c), ringA, t0, "linux", ErrUnknownKey, 0},
		{"tampered", tampered, ringA, t0, "linux", ErrBadSignature, 0},
		{"wrong OS", mustSign(t, statement(5), chainA, a), ringA, t0, "windows", ErrWrongOS, 0},
		{"expired", mustSign(t, expired, chainA, a), ringA, t0.Add(2 * time.Hour), "linux", ErrExpired, 0},
		{"expiry instant", mustSign(t, expired, chainA, a), ringA, t0.Add(time.Hour), "linux", ErrExpired, 0},
		{"rotated key after rotation", mustSign(t, statement(6), chainB, b), ringA, t0, "linux", nil, 2},
		{"rotated key without the chain", mustSign(t, statement(6), nil, b), ringA, t0, "linux", ErrUnknownKey, 0},
		{"removed key after rotation", mustSign(t, statement(7), chainA, a), ringB, t0, "linux", ErrUnknownKey, 0},
		{"forged rotation", mustSign(t, statement(6), forged, c), ringA, t0, "linux", ErrUnknownKey, 0},
		{"no trusted key", mustSign(t, statement(5), chainA, a), KeyList{}, t0, "linux", ErrUnknownKey, 0},
		{"garbage", []byte("{}\n"), ringA, t0, "linux", ErrFormat, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Verify(tt.signed, tt.ring, tt.now, tt.os)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify: %v, want %v", err, tt.want)
			}
			if err == nil && v.Keys.Version != tt.wantVer {
				t.Errorf("trusted list version %d, want %d", v.Keys.Version, tt.wantVer)
			}
		})
	}
}

func TestVerifyMessages(t *testing.T) {
	a, c := testKey(1), testKey(3)
	ring := KeyList{Version: 1, Keys: []PublicKey{pub(a)}}
	_, err := Verify(mustSign(t, statement(5), nil, c), ring, t0, "linux")
	if err == nil || !strings.Contains(err.Error(), pub(c).ID()) || !strings.Contains(err.Error(), pub(a).ID()) {
		t.Errorf("unknown key error %v names neither the signing nor the trusted key", err)
	}
	st := statement(5)
	st.Expires = t0.Add(time.Hour)
	_, err = Verify(mustSign(t, st, nil, a), ring, t0.Add(2*time.Hour), "linux")
	if err == nil || !strings.Contains(err.Error(), "2026-12-06T04:00:00Z") {
		t.Errorf("expired error %v does not give the expiry", err)
	}
}

func TestFirstUse(t *testing.T) {
	a, b := testKey(1), testKey(2)
	chain, _ := Rotate(NewChain(a), a, []PublicKey{pub(b)})
	signed := mustSign(t, statement(3), chain, b)
	ring, err := FirstUse(signed)
	if err != nil || ring.Version != 1 || !ring.Has(pub(a).ID()) {
		t.Fatalf("FirstUse: %v %v", ring, err)
	}
	v, err := Verify(signed, ring, t0, "linux")
	if err != nil || v.Keys.Version != 2 || !v.Keys.Has(pub(b).ID()) || v.Keys.Has(pub(a).ID()) {
		t.Fatalf("Verify after first use: %+v %v", v, err)
	}
	if _, err := FirstUse(mustSign(t, statement(3), nil, a)); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("FirstUse without a chain: %v", err)
	}
	// A version 1 list that its own key did not sign.
	bad := NewChain(a)
	bad[0].List.Keys = []PublicKey{pub(b)}
	if _, err := FirstUse(mustSignRaw(t, statement(3), bad, b)); !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrBadSignature) {
		t.Errorf("FirstUse with an unsigned version 1: %v", err)
	}
}

// TestDeployed: a workstation deployed with the current key after a
// rotation trusts releases that key signs (the chain's earlier lists,
// which its key did not sign, are skipped); one deployed with the retired
// key walks the chain as before; and a list forged with the retired key
// cannot make a key of the forger's trusted by a workstation deployed
// with the current one.
func TestDeployed(t *testing.T) {
	a, b, evil := testKey(1), testKey(2), testKey(3)
	chain, err := Rotate(NewChain(a), a, []PublicKey{pub(b)})
	if err != nil {
		t.Fatal(err)
	}
	signed := mustSign(t, statement(3), chain, b)
	for _, deployed := range []PublicKey{pub(b), pub(a)} {
		ring, err := Deployed(signed, []PublicKey{deployed})
		if err != nil {
			t.Fatal(err)
		}
		if v, err := Verify(signed, ring, t0, "linux"); err != nil || v.Keys.Version != 2 {
			t.Errorf("deployed with %s: %+v %v", deployed.ID(), v, err)
		}
	}
	// The retired key a signs a list that names b and a key of its own,
	// and the release is signed with that key.
	forged, err := Rotate(NewChain(a), a, []PublicKey{pub(b), pub(evil)})
	if err != nil {
		t.Fatal(err)
	}
	bad := mustSign(t, statement(4), forged, evil)
	ring, err := Deployed(bad, []PublicKey{pub(b)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(bad, ring, t0, "linux"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("a release signed by a key a retired key added: %v, want %v", err, ErrUnknownKey)
	}
}

// mustSignRaw signs without Sign's checks of the chain.
func mustSignRaw(t testing.TB, st Statement, chain []SignedKeyList, k ed25519.PrivateKey) []byte {
	st.Format = Format
	f := &File{Format: Format, Chain: chain, Statement: st, Signatures: []Signature{sign(k, statementMessage(st))}}
	return f.Encode()
}

func TestCheckNumberAndRelease(t *testing.T) {
	tests := []struct {
		name     string
		n        uint64
		rollback bool
		highest  uint64
		latest   time.Time // the latest Published seen
		want     error
	}{
		{"first", 1, false, 0, time.Time{}, nil},
		{"same", 5, false, 5, t0, nil},
		{"newer", 6, false, 5, t0, nil},
		{"older", 4, false, 5, t0.Add(-time.Hour), ErrRollback},
		{"older, signed rollback after every release seen", 4, true, 5, t0.Add(-time.Hour), nil},
		{"older, a rollback signed before a release seen since (replayed)", 4, true, 5, t0.Add(time.Hour), ErrRollback},
		{"older, a rollback signed at the same second as the latest", 4, true, 5, t0, ErrRollback},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := statement(tt.n)
			st.Rollback = tt.rollback
			if err := CheckNumber(st, tt.highest, tt.latest); !errors.Is(err, tt.want) {
				t.Errorf("CheckNumber: %v, want %v", err, tt.want)
			}
		})
	}
	st := statement(1)
	if err := CheckRelease(st, st.Build, st.Digest); err != nil {
		t.Error(err)
	}
	if err := CheckRelease(st, "7.00.240502A", st.Digest); !errors.Is(err, ErrDigest) {
		t.Errorf("other build: %v", err)
	}
	if err := CheckRelease(st, st.Build, Digest{9}); !errors.Is(err, ErrDigest) {
		t.Errorf("other digest: %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	a := testKey(1)
	good := string(mustSign(t, statement(5), NewChain(a), a))
	tests := []struct{ name, in string }{
		{"no newline", strings.TrimSuffix(good, "\n")},
		{"CRLF", strings.TrimSuffix(good, "\n") + "\r\n"},
		{"spaces", strings.Replace(good, `"format":1,`, `"format": 1,`, 1)},
		{"unknown field", strings.Replace(good, `{"format":1,`, `{"format":1,"x":1,`, 1)},
		{"field order", strings.Replace(good, `"os":"linux","build":"7.00.240501A"`, `"build":"7.00.240501A","os":"linux"`, 1)},
		{"local time", strings.Replace(good, `"published":"2026-12-06T03:00:00Z"`, `"published":"2026-12-06T04:00:00+01:00"`, 1)},
		{"fractional time", strings.Replace(good, `"published":"2026-12-06T03:00:00Z"`, `"published":"2026-12-06T03:00:00.5Z"`, 1)},
		{"upper-case hex", strings.Replace(good, `"digest":"0102`, `"digest":"0A02`, 1)},
		{"other OS", strings.Replace(good, `"os":"linux"`, `"os":"plan9"`, 1)},
		{"number 0", strings.Replace(good, `"number":5`, `"number":0`, 1)},
		{"duplicate field", strings.Replace(good, `"number":5`, `"number":5,"number":5`, 1)},
		{"two objects", good[:len(good)-1] + "{}\n"},
		{"too big", strings.Repeat(" ", MaxSize+1)},
		{"format 2", strings.Replace(good, `{"format":1,`, `{"format":2,`, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Decode([]byte(tt.in)); !errors.Is(err, ErrFormat) {
				t.Errorf("Decode: %v, want ErrFormat", err)
			}
		})
	}
	if _, err := Decode([]byte(good)); err != nil {
		t.Fatalf("Decode of the good file: %v", err)
	}
}

func TestChainFile(t *testing.T) {
	a, b := testKey(1), testKey(2)
	chain, err := Rotate(NewChain(a), a, []PublicKey{pub(b)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeChain(EncodeChain(chain))
	if err != nil || len(got) != 2 {
		t.Fatalf("DecodeChain: %v %v", got, err)
	}
	if _, err := Rotate(chain, a, []PublicKey{pub(a)}); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Rotate by a removed key: %v", err)
	}
	if _, err := Sign(statement(1), chain, a); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Sign by a key not in the last list: %v", err)
	}
	chain[1].Signatures[0].Sig[0] ^= 1
	if _, err := DecodeChain(EncodeChain(chain)); !errors.Is(err, ErrBadSignature) {
		t.Errorf("DecodeChain of a bad signature: %v", err)
	}
}

func TestDigest(t *testing.T) {
	entries := []Entry{
		{Path: "a.txt", Size: 3, Mode: 0o644, Hash: [32]byte{1}},
		{Path: "bin", Size: 5, Mode: 0o777, Symlink: true, Target: "a.txt", Hash: [32]byte{2}},
		{Path: "empty", Mode: 0o755, Dir: true},
	}
	sum := func(es []Entry, post string, to time.Duration) Digest {
		d := NewDigester()
		for _, e := range es {
			d.Add(e)
		}
		return d.Sum(post, to)
	}
	base := sum(entries, "a.txt", time.Minute)
	changes := map[string]func([]Entry) ([]Entry, string, time.Duration){
		"mode":     func(e []Entry) ([]Entry, string, time.Duration) { e[0].Mode = 0o755; return e, "a.txt", time.Minute },
		"size":     func(e []Entry) ([]Entry, string, time.Duration) { e[0].Size = 4; return e, "a.txt", time.Minute },
		"hash":     func(e []Entry) ([]Entry, string, time.Duration) { e[0].Hash[0] = 9; return e, "a.txt", time.Minute },
		"preserve": func(e []Entry) ([]Entry, string, time.Duration) { e[0].Preserve = true; return e, "a.txt", time.Minute },
		"target": func(e []Entry) ([]Entry, string, time.Duration) {
			e[1].Target = "b.txt"
			return e, "a.txt", time.Minute
		},
		"order": func(e []Entry) ([]Entry, string, time.Duration) {
			e[0], e[2] = e[2], e[0]
			return e, "a.txt", time.Minute
		},
		"post":    func(e []Entry) ([]Entry, string, time.Duration) { return e, "", time.Minute },
		"timeout": func(e []Entry) ([]Entry, string, time.Duration) { return e, "a.txt", 2 * time.Minute },
		"dropped": func(e []Entry) ([]Entry, string, time.Duration) { return e[:2], "a.txt", time.Minute },
		// Path and target are length-prefixed: moving a byte from one to
		// the other changes the digest.
		"boundary": func(e []Entry) ([]Entry, string, time.Duration) {
			e[1].Path, e[1].Target = "bina", ".txt"
			return e, "a.txt", time.Minute
		},
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			es, post, to := change(append([]Entry(nil), entries...))
			if sum(es, post, to) == base {
				t.Errorf("the digest did not change")
			}
		})
	}
	// Bits beyond the permissions are not the release's.
	es := append([]Entry(nil), entries...)
	es[0].Mode |= 0o4000
	if sum(es, "a.txt", time.Minute) != base {
		t.Error("setuid bit changed the digest")
	}
}

// TestWriteSeeds keeps testdata's fuzz seeds as Sign makes them; run with
// RELEASEMETA_SEEDS=1 to rewrite them.
func TestWriteSeeds(t *testing.T) {
	a, b := testKey(1), testKey(2)
	chain, _ := Rotate(NewChain(a), a, []PublicKey{pub(b)})
	seeds := map[string][]byte{
		"signed-chain.release": mustSign(t, statement(7), chain, b),
		"signed.release":       mustSign(t, statement(3), nil, a),
		"chain.json":           EncodeChain(chain),
	}
	for name, want := range seeds {
		p := filepath.Join("testdata", name)
		if os.Getenv("RELEASEMETA_SEEDS") != "" {
			os.MkdirAll("testdata", 0o755)
			if err := os.WriteFile(p, want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not what Sign makes now; rewrite with RELEASEMETA_SEEDS=1", p)
		}
	}
}

func seeds(f *testing.F) {
	for _, name := range []string{"signed-chain.release", "signed.release", "chain.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzDecode(f *testing.F) {
	seeds(f)
	ring := KeyList{Version: 1, Keys: []PublicKey{pub(testKey(1))}}
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("Decode error %v is not ErrFormat", err)
			}
			return
		}
		// One way to read it: what decodes encodes back to the same bytes.
		if !bytes.Equal(file.Encode(), b) {
			t.Fatalf("decoded file encodes to other bytes")
		}
		Verify(b, ring, t0, "linux")
	})
}

func FuzzDecodeChain(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		chain, err := DecodeChain(b)
		if err == nil && !bytes.Equal(EncodeChain(chain), b) {
			t.Fatalf("decoded chain encodes to other bytes")
		}
	})
}
