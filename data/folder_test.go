package data

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"strings"
	"testing"
)

func encodePNG(t *testing.T, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// grayImage is a w x h gray image with pixel (x, y) = base + x + w*y.
func grayImage(w, h int, base uint8) *image.Gray {
	g := image.NewGray(image.Rect(0, 0, w, h))
	for i := range g.Pix {
		g.Pix[i] = base + uint8(i)
	}
	return g
}

func TestLoadFolder(t *testing.T) {
	// A 2x2 colour image with a half-transparent pixel: its stored colour counts, not alpha.
	nrgba := image.NewNRGBA(image.Rect(0, 0, 2, 2))
	copy(nrgba.Pix, []uint8{255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255, 10, 20, 30, 128})
	gray16 := image.NewGray16(image.Rect(0, 0, 2, 2))
	for i, v := range []uint16{0x0000, 0x12ff, 0x8000, 0xffff} {
		gray16.SetGray16(i%2, i/2, color.Gray16{Y: v})
	}
	grayAsRGB := image.NewRGBA(image.Rect(0, 0, 2, 2))
	for i := range 4 {
		grayAsRGB.Set(i%2, i/2, color.RGBA{uint8(40 * i), uint8(40 * i), uint8(40 * i), 255})
	}
	paletted := image.NewPaletted(image.Rect(0, 0, 2, 2), color.Palette{color.Gray{0}, color.Gray{200}})
	paletted.Pix = []uint8{0, 1, 1, 0}

	tests := []struct {
		name    string
		files   map[string]image.Image
		extra   map[string][]byte // files written as they are
		wantC   int
		want    [][]uint8 // per image, [C,H,W] pixel levels
		wantErr []string
	}{
		{name: "gray", files: map[string]image.Image{"b.png": grayImage(2, 2, 100), "a.PNG": grayImage(2, 2, 0), "c.png": gray16},
			extra: map[string][]byte{"notes.txt": []byte("not an image")},
			wantC: 1, want: [][]uint8{{0, 1, 2, 3}, {100, 101, 102, 103}, {0x00, 0x12, 0x80, 0xff}}},
		{name: "gray stored as RGB", files: map[string]image.Image{"a.png": grayAsRGB, "b.png": paletted},
			wantC: 1, want: [][]uint8{{0, 40, 80, 120}, {0, 200, 200, 0}}},
		{name: "colour and gray", files: map[string]image.Image{"a.png": nrgba, "b.png": grayImage(2, 2, 7)},
			wantC: 3, want: [][]uint8{
				{255, 0, 0, 10, 0, 255, 0, 20, 0, 0, 255, 30},
				{7, 8, 9, 10, 7, 8, 9, 10, 7, 8, 9, 10}}},
		{name: "sizes differ", files: map[string]image.Image{"a.png": grayImage(2, 2, 0), "b.png": grayImage(3, 2, 0)},
			wantErr: []string{"b.png is 3x2 (width x height), but a.png and the images before it are 2x2"}},
		{name: "corrupt", files: map[string]image.Image{"a.png": grayImage(2, 2, 0)}, extra: map[string][]byte{"b.jpg": []byte("no jpeg")},
			wantErr: []string{"b.jpg: ", "not a valid PNG or JPEG"}},
		{name: "empty", extra: map[string][]byte{"a.txt": nil}, wantErr: []string{"no .png, .jpg or .jpeg files"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, img := range tt.files {
				writeFile(t, dir, name, encodePNG(t, img))
			}
			for name, b := range tt.extra {
				writeFile(t, dir, name, b)
			}
			d, err := LoadFolder(dir)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("LoadFolder: no error; want one with %q", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("LoadFolder error %q; want it to contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadFolder: %v", err)
			}
			if d.Len() != len(tt.want) || d.C != tt.wantC || d.H != 2 || d.W != 2 || d.Labels != nil {
				t.Fatalf("LoadFolder: N %d, [C,H,W] [%d,%d,%d], labels %v; want %d, [%d,2,2], nil",
					d.Len(), d.C, d.H, d.W, d.Labels, len(tt.want), tt.wantC)
			}
			for i, levels := range tt.want {
				for j, p := range levels {
					if got := d.Image(i)[j]; got != pixelTable[p] {
						t.Errorf("image %d value %d = %v; want level %d = %v", i, j, got, p, pixelTable[p])
					}
				}
			}
		})
	}
}

func TestLoadFolderJPEG(t *testing.T) {
	// A flat gray JPEG decodes to its level up to JPEG's rounding.
	dir := t.TempDir()
	img := image.NewGray(image.Rect(0, 0, 8, 8))
	for i := range img.Pix {
		img.Pix[i] = 128
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "x.jpeg", b.Bytes())
	d, err := LoadFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d.C != 1 || d.H != 8 || d.W != 8 {
		t.Fatalf("LoadFolder: [C,H,W] [%d,%d,%d]; want [1,8,8]", d.C, d.H, d.W)
	}
	for i, v := range d.Images {
		if math.Abs(float64(v-pixelTable[128])) > 2/127.5 {
			t.Fatalf("pixel %d = %v; want %v within 2 levels", i, v, pixelTable[128])
		}
	}
}
