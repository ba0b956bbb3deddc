package syncproto

import (
	"bytes"
	"testing"
)

// TestReaderGrow: a Reader that grows its buffer between frames loses none
// of the bytes it had buffered, however many it had; a Writer that grows
// sends what it held first.
func TestReaderGrow(t *testing.T) {
	msgs := []Message{
		Hello{ClientBuild: "7.00.240501A", OS: "linux", ClientID: "c1"},
		GetManifest{},
		Request{Indices: []uint32{1, 2, 3}},
		RequestEnd{},
	}
	for _, size := range []int{16, 20, 64, 4096} {
		var stream bytes.Buffer
		w := NewWriterSize(&stream, 16)
		if err := w.Write(msgs[0]); err != nil {
			t.Fatal(err)
		}
		if err := w.Grow(BufferSize); err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs[1:] {
			if err := w.Write(m); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		r := NewReaderSize(&stream, size)
		for i, want := range msgs {
			if i == 1 {
				r.Grow(BufferSize)
			}
			got, err := r.Read()
			if err != nil {
				t.Fatalf("buffer of %d, message %d: %v", size, i, err)
			}
			if got.Type() != want.Type() {
				t.Fatalf("buffer of %d, message %d: got %v, want %v", size, i, got.Type(), want.Type())
			}
		}
		if r.r.Size() != BufferSize {
			t.Errorf("buffer of %d grew to %d, want %d", size, r.r.Size(), BufferSize)
		}
	}
}
