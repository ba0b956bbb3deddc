package rollout

import (
	"bytes"
	"testing"
	"time"
)

// FuzzLoad: the state file decoder never panics, and what it accepts is
// written back the same way every time: encode(decode(x)) decodes, and
// encodes to the same bytes again.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(`{"format":1,"phase":"none"}`))
	f.Add([]byte(`{"format":1,"phase":"halted","halted_in":"pilot","release":3,"build":"B3","previous":1,` +
		`"started":"2026-12-06T12:00:00+02:00","pilot":{"succeeded":["b","a"],"failed":["a"],"dropped":2}}`))
	f.Add([]byte(`{"format":1,"phase":"pilot","release":2,"previous":1,"since":"0001-01-01T00:00:00+01:00"}`))
	f.Add([]byte(`garbage`))
	s := newState()
	s.phase, s.release, s.build, s.previous = PhasePromoted, 7, "7.00.240601A", 6
	s.started, s.since, s.delayFrom = t0, t0.Add(time.Hour), t0
	s.pilot.ok["0123456789abcdef0123456789abcdef"] = struct{}{}
	s.everyone.failed["host:caixa-07"] = struct{}{}
	f.Add(s.encode())
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := decode(data)
		if err != nil {
			return
		}
		b1 := st.encode()
		st2, err := decode(b1)
		if err != nil {
			t.Fatalf("what was accepted does not decode once written: %v\n%s", err, b1)
		}
		if b2 := st2.encode(); !bytes.Equal(b1, b2) {
			t.Fatalf("written twice, it differs:\n%s\n%s", b1, b2)
		}
	})
}
