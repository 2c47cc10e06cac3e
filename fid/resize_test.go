package fid

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
)

// resizeInput is the input of testdata/gen_resize.py: value i of the flattened tensor is
// ((i*2654435761 + 12345) mod 2^32 >> 8) / 2^24, exact in float32.
func resizeInput(size int) []float32 {
	x := make([]float32, size)
	for i := range x {
		u := uint32(i)*2654435761 + 12345
		x[i] = float32(u>>8) / (1 << 24)
	}
	return x
}

// resizeByMatrices applies out = Rh · img · Rw^T to each image, as a device would with two matrix
// multiplications (float32 products, accumulated in float32).
func resizeByMatrices(t *testing.T, x []float32, n, c, h, w, outH, outW int) []float32 {
	t.Helper()
	rh, err := ResizeMatrix(h, outH)
	if err != nil {
		t.Fatal(err)
	}
	rw, err := ResizeMatrix(w, outW)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, n*c*outH*outW)
	tmp := make([]float32, h*outW)
	for p := range n * c {
		img := x[p*h*w : (p+1)*h*w]
		for i := range h { // tmp = img · Rw^T  [H,outW]
			for j := range outW {
				var s float32
				for q := range w {
					s += img[i*w+q] * rw[j*w+q]
				}
				tmp[i*outW+j] = s
			}
		}
		dst := out[p*outH*outW : (p+1)*outH*outW]
		for i := range outH { // out = Rh · tmp  [outH,outW]
			for j := range outW {
				var s float32
				for q := range h {
					s += rh[i*h+q] * tmp[q*outW+j]
				}
				dst[i*outW+j] = s
			}
		}
	}
	return out
}

// TestResizeGolden compares with torch 1.13's F.interpolate(x, size=(299, 299), mode="bilinear",
// align_corners=False) on every 7th output value (testdata/resize_torch.safetensors, written by
// testdata/gen_resize.py). Tolerance 5e-7 absolute on values in [0, 1]: the taps and weights are
// computed as torch computes them (bit for bit), so only the order of the float32 operations can
// differ, by a few ulps of 6e-8. The matrix form has the same two non-zero weights per row, summed
// with exact zeros. Observed: 1.2e-7 for both.
func TestResizeGolden(t *testing.T) {
	f := readFixture(t, "testdata/resize_torch.safetensors")
	meta := f.Metadata
	if meta["stride"] != "7" {
		t.Fatalf("fixture stride = %q, want 7", meta["stride"])
	}
	for _, name := range []string{"28to299", "32to299", "64to299", "30x45to299", "512to299"} {
		t.Run(name, func(t *testing.T) {
			var shape []int
			if err := json.Unmarshal([]byte(meta["shape/"+name]), &shape); err != nil || len(shape) != 4 {
				t.Fatalf("fixture metadata shape/%s = %q: %v", name, meta["shape/"+name], err)
			}
			n, c, h, w := shape[0], shape[1], shape[2], shape[3]
			total := n * c * InceptionSize * InceptionSize
			want := fixtureFloat32(t, f, name, (total+6)/7)
			x := resizeInput(n * c * h * w)
			got, err := Resize(x, n, c, h, w, InceptionSize, InceptionSize)
			if err != nil {
				t.Fatal(err)
			}
			viaMatrices := resizeByMatrices(t, x, n, c, h, w, InceptionSize, InceptionSize)
			for _, tc := range []struct {
				what string
				out  []float32
				tol  float64
			}{{"Resize", got, 5e-7}, {"Rh·img·Rw^T", viaMatrices, 5e-7}} {
				worst, at := 0.0, 0
				for k, v := range want {
					if e := math.Abs(float64(tc.out[7*k] - v)); e > worst {
						worst, at = e, 7*k
					}
				}
				if worst > tc.tol {
					t.Errorf("%s[%d] = %g; want %g (torch), error %g > %g", tc.what, at, tc.out[at], want[at/7], worst, tc.tol)
				}
			}
		})
	}
}

// TestResizeMatrixMatchesResize checks the two-matmul form against the direct resize on every
// pixel, for up- and downscaling and non-square images. Tolerance 5e-7 on values in [0, 1]: the same
// weights, summed in another order in float32.
func TestResizeMatrixMatchesResize(t *testing.T) {
	for _, tc := range []struct{ n, c, h, w, outH, outW int }{
		{1, 1, 28, 28, 299, 299},
		{2, 3, 5, 7, 11, 13},
		{1, 2, 40, 33, 17, 9},
		{1, 1, 1, 1, 4, 3},
	} {
		t.Run(fmt.Sprintf("%dx%dto%dx%d", tc.h, tc.w, tc.outH, tc.outW), func(t *testing.T) {
			x := resizeInput(tc.n * tc.c * tc.h * tc.w)
			want, err := Resize(x, tc.n, tc.c, tc.h, tc.w, tc.outH, tc.outW)
			if err != nil {
				t.Fatal(err)
			}
			got := resizeByMatrices(t, x, tc.n, tc.c, tc.h, tc.w, tc.outH, tc.outW)
			for k := range want {
				if e := math.Abs(float64(got[k] - want[k])); e > 5e-7 {
					t.Fatalf("Rh·img·Rw^T[%d] = %g; want %g (Resize)", k, got[k], want[k])
				}
			}
		})
	}
}

func TestResizeProperties(t *testing.T) {
	t.Run("sameSizeIsIdentity", func(t *testing.T) {
		x := resizeInput(2 * 3 * 9 * 6)
		got, err := Resize(x, 2, 3, 9, 6, 9, 6)
		if err != nil {
			t.Fatal(err)
		}
		for k := range x {
			if got[k] != x[k] {
				t.Fatalf("Resize to the same size changed value %d: %g; want %g", k, got[k], x[k])
			}
		}
	})
	t.Run("rowsSumToOne", func(t *testing.T) {
		for _, sizes := range [][2]int{{28, 299}, {512, 299}, {3, 299}, {299, 299}} {
			r, err := ResizeMatrix(sizes[0], sizes[1])
			if err != nil {
				t.Fatal(err)
			}
			for i := range sizes[1] {
				var s float32
				for _, v := range r[i*sizes[0] : (i+1)*sizes[0]] {
					if v < 0 {
						t.Fatalf("ResizeMatrix(%d, %d)[%d] has negative weight %g", sizes[0], sizes[1], i, v)
					}
					s += v
				}
				if math.Abs(float64(s)-1) > 1e-6 {
					t.Fatalf("ResizeMatrix(%d, %d) row %d sums to %g; want 1 (constants stay constant)", sizes[0], sizes[1], i, s)
				}
			}
		}
	})
}

func TestResizeErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    func() error
		substr string
	}{
		{"length", func() error { _, err := Resize(make([]float32, 10), 1, 1, 3, 3, 5, 5); return err }, "want N*C*H*W"},
		{"zeroSize", func() error { _, err := Resize(nil, 1, 1, 0, 3, 5, 5); return err }, "positive"},
		{"matrix", func() error { _, err := ResizeMatrix(0, 299); return err }, "positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err()
			if err == nil || !strings.Contains(err.Error(), tc.substr) || !strings.HasPrefix(err.Error(), "fid: ") {
				t.Errorf("error = %v; want one starting with \"fid: \" and containing %q", err, tc.substr)
			}
		})
	}
}
