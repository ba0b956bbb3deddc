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

// TestShrink: a Reader and a Writer that shrink their buffers between
// frames (a server does when a session stays open for hours) lose none of
// the bytes buffered, and end with the small buffers.
func TestShrink(t *testing.T) {
	msgs := []Message{
		Hello{ClientBuild: "7.00.240501A", OS: "linux", ClientID: "c1"},
		GetManifest{},
		Request{Indices: []uint32{1, 2, 3}},
		RequestEnd{},
		Stay{},
	}
	const small = 512
	var stream bytes.Buffer
	w := NewWriter(&stream)
	for i, m := range msgs {
		if i == 3 {
			// Message 2 is buffered, not sent: Shrink must send it.
			if err := w.Shrink(small); err != nil {
				t.Fatal(err)
			}
			if stream.Len() == 0 {
				t.Fatal("Shrink did not flush what the Writer held")
			}
		}
		if err := w.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if w.w.Size() != small || w.buf != nil && cap(w.buf) > small {
		t.Errorf("Writer after Shrink: buffer %d, scratch %d; want %d and at most %d", w.w.Size(), cap(w.buf), small, small)
	}
	r := NewReader(&stream)
	for i, want := range msgs {
		if i == 1 {
			// The whole stream is buffered by now: Shrink keeps it.
			r.Shrink(small)
		}
		got, err := r.Read()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if got.Type() != want.Type() {
			t.Fatalf("message %d: got %v, want %v", i, got.Type(), want.Type())
		}
	}
	if r.r.Size() != small {
		t.Errorf("Reader after Shrink: buffer %d, want %d", r.r.Size(), small)
	}
}
