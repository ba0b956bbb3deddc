package browsertest

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func encode(t *testing.T, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestCheckPNG(t *testing.T) {
	blank := image.NewRGBA(image.Rect(0, 0, 200, 100))
	for i := range blank.Pix {
		blank.Pix[i] = 0xff
	}
	drawn := image.NewRGBA(image.Rect(0, 0, 200, 100))
	for y := range 100 {
		for x := range 200 {
			drawn.Set(x, y, color.RGBA{uint8(x), uint8(y), 80, 255})
		}
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"drawn", encode(t, drawn), ""},
		{"blank", encode(t, blank), "blank"},
		{"tiny", encode(t, image.NewRGBA(image.Rect(0, 0, 4, 4))), "4x4"},
		{"not a PNG", []byte("\xff\xd8\xff\xe0 a JPEG"), "decoding the PNG"},
	}
	for _, tt := range tests {
		err := CheckPNG(tt.data)
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestFind(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the fake browsers are shell scripts")
	}
	dir := t.TempDir()
	fake := filepath.Join(dir, "my-chromium")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CHROMIUM", fake)
	if got, err := Find(); err != nil || got != fake {
		t.Errorf("CHROMIUM=%s: %q, %v", fake, got, err)
	}
	t.Setenv("CHROMIUM", filepath.Join(dir, "none"))
	if _, err := Find(); err == nil || errors.Is(err, ErrNoChromium) || !strings.Contains(err.Error(), "CHROMIUM=") {
		t.Errorf("CHROMIUM naming no file: %v, want an error naming CHROMIUM (not a skip)", err)
	}
	t.Setenv("CHROMIUM", "")
	t.Setenv("PATH", dir)
	if _, err := Find(); !errors.Is(err, ErrNoChromium) {
		t.Errorf("nothing on PATH: %v, want ErrNoChromium", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "chromium-browser"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := Find(); err != nil || got != filepath.Join(dir, "chromium-browser") {
		t.Errorf("chromium-browser on PATH: %q, %v", got, err)
	}
}
