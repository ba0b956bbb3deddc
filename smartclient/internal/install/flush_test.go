package install

import (
	"errors"
	"sync/atomic"
	"testing"
)

// TestFlusher: a background sync starts once enough bytes are pending, one
// at a time, and one that fails fails the download.
func TestFlusher(t *testing.T) {
	if !BackgroundSync {
		t.Skip("no background sync without syncfs(2)")
	}
	for _, fail := range []bool{false, true} {
		d := openDisk(t, t.TempDir())
		var syncs atomic.Int32
		d.Faults.Op = func(op, name string) error {
			if op != "syncfs" {
				return nil
			}
			syncs.Add(1)
			if fail {
				return errInjected
			}
			return nil
		}
		fl := NewFlusher(d)
		fl.every = 10
		fl.Wrote(5)
		if err := fl.Wait(); err != nil || syncs.Load() != 0 {
			t.Fatalf("fail=%v: after 5 of 10 bytes: %d syncs, %v; want none", fail, syncs.Load(), err)
		}
		fl.Wrote(6)
		err := fl.Wait()
		if syncs.Load() != 1 {
			t.Errorf("fail=%v: after 11 of 10 bytes: %d syncs, want 1", fail, syncs.Load())
		}
		if fail != errors.Is(err, errInjected) {
			t.Errorf("fail=%v: wait returned %v", fail, err)
		}
	}
}
