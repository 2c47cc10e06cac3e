package viz

import (
	"image"
	"image/color"
	"math"
	"strings"
	"testing"
)

// rgbAt returns the 8-bit R, G, B of img at (x, y).
func rgbAt(img image.Image, x, y int) [3]uint8 {
	r, g, b, _ := img.At(x, y).RGBA()
	return [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)}
}

// constantImages returns n images [n,c,h,w] where image i has the value vals[i] everywhere.
func constantImages(vals []float32, c, h, w int) []float32 {
	out := make([]float32, 0, len(vals)*c*h*w)
	for _, v := range vals {
		for k := 0; k < c*h*w; k++ {
			out = append(out, v)
		}
	}
	return out
}

func TestToByte(t *testing.T) {
	for _, tc := range []struct {
		x    float32
		want uint8
	}{
		{-1, 0}, {1, 255}, {0, 128}, {0.5, 191}, {-0.5, 64}, // (x+1)/2*255 = 127.5, 191.25, 63.75
		{-3, 0}, {7, 255}, // clamped
		{float32(math.NaN()), 128},
		{float32(math.Inf(1)), 255}, {float32(math.Inf(-1)), 0},
	} {
		if got := toByte(tc.x); got != tc.want {
			t.Errorf("toByte(%v) = %d; want %d", tc.x, got, tc.want)
		}
	}
}

func TestGridSize(t *testing.T) {
	for _, tc := range []struct {
		name          string
		n, c, h, w    int
		cols          int
		opts          GridOptions
		width, height int
	}{
		{"mnist 8x8 at 2x", 64, 1, 28, 28, 8, GridOptions{Padding: 2, Scale: 2}, 8*56 + 9*2, 8*56 + 9*2},
		{"no padding, scale 0 is 1", 10, 3, 8, 6, 4, GridOptions{}, 4 * 6, 3 * 8},
		{"cols 0 is ceil(sqrt(n))", 5, 1, 4, 4, 0, GridOptions{Padding: 1}, 3*4 + 4, 2*4 + 3},
		{"cols > n is n", 3, 1, 4, 4, 10, GridOptions{Scale: 3}, 3 * 12, 12},
		{"one image", 1, 3, 32, 32, 1, GridOptions{Padding: 2, Scale: 1}, 36, 36},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := Grid(make([]float32, tc.n*tc.c*tc.h*tc.w), tc.n, tc.c, tc.h, tc.w, tc.cols, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := img.Bounds().Size(); got != image.Pt(tc.width, tc.height) {
				t.Errorf("Grid size = %v; want %dx%d", got, tc.width, tc.height)
			}
		})
	}
}

func TestGridPixels(t *testing.T) {
	t.Run("constant gray images and clamping", func(t *testing.T) {
		vals := []float32{-1, -0.5, 0, 0.5, 1, -4, 9, float32(math.NaN())}
		want := []uint8{0, 64, 128, 191, 255, 0, 255, 128}
		const h, w, pad, scale, cols = 3, 5, 2, 2, 3
		img, err := Grid(constantImages(vals, 1, h, w), len(vals), 1, h, w, cols, GridOptions{Padding: pad, Scale: scale})
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range want {
			x0, y0 := pad+(i%cols)*(w*scale+pad), pad+(i/cols)*(h*scale+pad)
			for y := y0; y < y0+h*scale; y++ {
				for x := x0; x < x0+w*scale; x++ {
					if got := rgbAt(img, x, y); got != [3]uint8{v, v, v} {
						t.Fatalf("image %d (value %v) at (%d,%d) = %v; want gray %d", i, vals[i], x, y, got, v)
					}
				}
			}
		}
		for _, p := range []image.Point{{0, 0}, {pad + w*scale, pad}, {pad, pad + h*scale}, {img.Bounds().Max.X - 1, img.Bounds().Max.Y - 1}} {
			if got := rgbAt(img, p.X, p.Y); got != [3]uint8{255, 255, 255} {
				t.Errorf("padding at %v = %v; want white", p, got)
			}
		}
	})
	t.Run("RGB channel order", func(t *testing.T) {
		// One 1x2 image [1,3,1,2]: pixel 0 is (R, G, B) = (1, -1, 0), pixel 1 is (-1, 0.5, 1).
		data := []float32{1, -1, -1, 0.5, 0, 1}
		img, err := Grid(data, 1, 3, 1, 2, 1, GridOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := rgbAt(img, 0, 0), [3]uint8{255, 0, 128}; got != want {
			t.Errorf("pixel 0 = %v; want %v", got, want)
		}
		if got, want := rgbAt(img, 1, 0), [3]uint8{0, 191, 255}; got != want {
			t.Errorf("pixel 1 = %v; want %v", got, want)
		}
	})
	t.Run("nearest neighbour upscale", func(t *testing.T) {
		// A 2x2 gray image [1,1,2,2] at scale 3: each pixel becomes a uniform 3x3 block.
		data := []float32{-1, 1, 0, 0.5}
		want := []uint8{0, 255, 128, 191}
		img, err := Grid(data, 1, 1, 2, 2, 1, GridOptions{Scale: 3})
		if err != nil {
			t.Fatal(err)
		}
		for y := 0; y < 6; y++ {
			for x := 0; x < 6; x++ {
				v := want[(y/3)*2+x/3]
				if got := rgbAt(img, x, y); got != [3]uint8{v, v, v} {
					t.Errorf("(%d,%d) = %v; want gray %d", x, y, got, v)
				}
			}
		}
	})
	t.Run("pad color and empty cells", func(t *testing.T) {
		img, err := Grid(constantImages([]float32{1, 1, 1}, 1, 2, 2), 3, 1, 2, 2, 2, GridOptions{Padding: 1, PadColor: color.Black})
		if err != nil {
			t.Fatal(err)
		}
		if got := rgbAt(img, 0, 0); got != [3]uint8{} {
			t.Errorf("padding = %v; want black", got)
		}
		if got := rgbAt(img, 4, 4); got != [3]uint8{} { // the fourth cell, past N = 3
			t.Errorf("empty cell = %v; want the pad color, black", got)
		}
	})
}

func TestGridErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		data       []float32
		n, c, h, w int
		opts       GridOptions
		want       string
	}{
		{"two channels", make([]float32, 8), 1, 2, 2, 2, GridOptions{}, "C = 2"},
		{"wrong length", make([]float32, 7), 2, 1, 2, 2, GridOptions{}, "want N*C*H*W"},
		{"no images", nil, 0, 1, 2, 2, GridOptions{}, "must be positive"},
		{"negative scale", make([]float32, 4), 1, 1, 2, 2, GridOptions{Scale: -1}, "scale -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Grid(tc.data, tc.n, tc.c, tc.h, tc.w, 0, tc.opts)
			if err == nil || !strings.HasPrefix(err.Error(), "viz: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Grid error = %v; want one starting with \"viz: \" and containing %q", err, tc.want)
			}
		})
	}
}
