package checkpoint

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

// slowFloat16 decodes binary16 from its definition (IEEE 754-2008, 3.4): the reference for
// Float16ToFloat32.
func slowFloat16(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	e, m := int(h>>10&0x1f), float64(h&0x3ff)
	switch {
	case e == 0x1f && m == 0:
		return math.Inf(int(sign))
	case e == 0x1f:
		return math.NaN()
	case e == 0:
		return sign * math.Ldexp(m/1024, -14)
	default:
		return sign * math.Ldexp(1+m/1024, e-15)
	}
}

func TestFloat16Exhaustive(t *testing.T) {
	for h := 0; h <= 0xffff; h++ {
		got, want := float64(Float16ToFloat32(uint16(h))), slowFloat16(uint16(h))
		if math.IsNaN(want) {
			if !math.IsNaN(got) {
				t.Fatalf("Float16ToFloat32(%#04x) = %g, want NaN", h, got)
			}
			continue
		}
		if got != want || math.Signbit(got) != math.Signbit(want) {
			t.Fatalf("Float16ToFloat32(%#04x) = %g, want %g", h, got, want)
		}
		if back := Float32ToFloat16(float32(got)); back != uint16(h) {
			t.Fatalf("Float32ToFloat16(%g) = %#04x, want %#04x (round trip)", got, back, h)
		}
	}
}

func TestBFloat16Exhaustive(t *testing.T) {
	for b := 0; b <= 0xffff; b++ {
		f := BFloat16ToFloat32(uint16(b))
		if f != f {
			if got := Float32ToBFloat16(f); got != 0x7fc0 {
				t.Fatalf("Float32ToBFloat16(NaN %#04x) = %#04x, want 0x7fc0", b, got)
			}
			continue
		}
		if back := Float32ToBFloat16(f); back != uint16(b) {
			t.Fatalf("Float32ToBFloat16(%g) = %#04x, want %#04x (round trip)", f, back, b)
		}
	}
}

// TestRoundingMatchesTorch checks float32 -> float16 and -> bfloat16 against PyTorch 1.13's .half() and
// .bfloat16() (testdata/float16.json, from gen_float16.py): ties, subnormals, overflow by rounding
// and random bit patterns. Exact: both sides round to nearest even.
func TestRoundingMatchesTorch(t *testing.T) {
	raw, err := os.ReadFile("testdata/float16.json")
	if err != nil {
		t.Fatal(err)
	}
	var rows [][3]uint32
	if err := json.Unmarshal(raw, &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) < 3000 {
		t.Fatalf("float16.json has %d rows, want >= 3000", len(rows))
	}
	for _, r := range rows {
		f := math.Float32frombits(r[0])
		h, bf := Float32ToFloat16(f), Float32ToBFloat16(f)
		if f != f {
			// NaN encodings differ between PyTorch's scalar and vectorized paths: check NaN-ness only.
			if h&0x7c00 != 0x7c00 || h&0x3ff == 0 || bf&0x7f80 != 0x7f80 || bf&0x7f == 0 {
				t.Errorf("NaN %#08x: float16 %#04x, bfloat16 %#04x; want NaNs", r[0], h, bf)
			}
			continue
		}
		if h != uint16(r[1]) {
			t.Errorf("Float32ToFloat16(%g = %#08x) = %#04x; want %#04x", f, r[0], h, r[1])
		}
		if bf != uint16(r[2]) {
			t.Errorf("Float32ToBFloat16(%g = %#08x) = %#04x; want %#04x", f, r[0], bf, r[2])
		}
	}
}

func TestFloat8(t *testing.T) {
	tests := []struct {
		name  string
		dtype DType
		b     byte
		want  float64
	}{
		{"e4m3 one", F8E4M3, 0x38, 1},
		{"e4m3 minus one", F8E4M3, 0xb8, -1},
		{"e4m3 max", F8E4M3, 0x7e, 448},
		{"e4m3 smallest subnormal", F8E4M3, 0x01, math.Ldexp(1, -9)},
		{"e4m3 largest subnormal", F8E4M3, 0x07, 7 * math.Ldexp(1, -9)},
		{"e4m3 smallest normal", F8E4M3, 0x08, math.Ldexp(1, -6)},
		{"e4m3 nan", F8E4M3, 0x7f, math.NaN()},
		{"e4m3 0x78 is finite", F8E4M3, 0x78, 256},
		{"e5m2 one", F8E5M2, 0x3c, 1},
		{"e5m2 max", F8E5M2, 0x7b, 57344},
		{"e5m2 inf", F8E5M2, 0x7c, math.Inf(1)},
		{"e5m2 smallest subnormal", F8E5M2, 0x01, math.Ldexp(1, -16)},
		{"e5m2 minus zero", F8E5M2, 0x80, math.Copysign(0, -1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := (&Tensor{DType: tc.dtype, Shape: []int{1}, Data: []byte{tc.b}}).Float64()
			if err != nil {
				t.Fatal(err)
			}
			if g := got[0]; !(g == tc.want && math.Signbit(g) == math.Signbit(tc.want)) && !(g != g && tc.want != tc.want) {
				t.Errorf("%s %#02x = %g; want %g", tc.dtype, tc.b, g, tc.want)
			}
		})
	}
}

func TestTensorConversions(t *testing.T) {
	third := float32(1.0 / 3)
	tests := []struct {
		name     string
		tensor   *Tensor
		want32   []float32 // nil: Float32 must fail with err32
		want64   []float64
		wantInts []int64 // nil: Int64s must fail
		err32    string
		errInts  string
	}{
		{"f32", NewF32([]int{2}, []float32{1.5, third}), []float32{1.5, third}, []float64{1.5, float64(third)}, nil, "", "use Float32 or Float64"},
		{"f16 rounds", NewF16([]int{3}, []float32{third, 65520, 1e-8}), []float32{0.333251953125, float32(math.Inf(1)), 0}, []float64{0.333251953125, math.Inf(1), 0}, nil, "", "use Float32"},
		{"bf16 rounds", NewBF16([]int{2}, []float32{third, -1}), []float32{0.333984375, -1}, []float64{0.333984375, -1}, nil, "", "use Float32"},
		{"f64", NewF64([]int{1, 2}, []float64{1.0 / 3, 1e300}), []float32{third, float32(math.Inf(1))}, []float64{1.0 / 3, 1e300}, nil, "", "use Float32"},
		{"scalar", NewF32(nil, []float32{7}), []float32{7}, []float64{7}, nil, "", "use Float32"},
		{"i64", NewI64([]int{3}, []int64{-1, 1 << 40, math.MinInt64}), nil, nil, []int64{-1, 1 << 40, math.MinInt64}, "use Int64s", ""},
		{"i32", NewI32([]int{2}, []int32{-7, math.MaxInt32}), nil, nil, []int64{-7, math.MaxInt32}, "use Int64s", ""},
		{"i16", &Tensor{I16, []int{1}, []byte{0x00, 0x80}}, nil, nil, []int64{-32768}, "use Int64s", ""},
		{"i8", &Tensor{I8, []int{2}, []byte{0xff, 0x7f}}, nil, nil, []int64{-1, 127}, "use Int64s", ""},
		{"u8", &Tensor{U8, []int{1}, []byte{0xff}}, nil, nil, []int64{255}, "use Int64s", ""},
		{"u16", &Tensor{U16, []int{1}, []byte{0xff, 0xff}}, nil, nil, []int64{65535}, "use Int64s", ""},
		{"u32", &Tensor{U32, []int{1}, []byte{0xff, 0xff, 0xff, 0xff}}, nil, nil, []int64{math.MaxUint32}, "use Int64s", ""},
		{"u64 overflow", &Tensor{U64, []int{1}, []byte{0, 0, 0, 0, 0, 0, 0, 0x80}}, nil, nil, nil, "use Int64s", "overflows int64"},
		{"bool", &Tensor{Bool, []int{2}, []byte{1, 0}}, nil, nil, []int64{1, 0}, "use Int64s", ""},
		{"bool bad byte", &Tensor{Bool, []int{1}, []byte{2}}, nil, nil, nil, "use Int64s", "want 0 or 1"},
		{"short data", NewF32([]int{2, 2}, []float32{1, 2, 3}), nil, nil, nil, "data holds 12 bytes, want 16 for F32 [2 2]", "data holds 12 bytes"},
		{"unknown dtype", &Tensor{"F31", []int{1}, []byte{0}}, nil, nil, nil, `unknown dtype "F31"`, `unknown dtype "F31"`},
		{"negative dim", &Tensor{F32, []int{-1}, nil}, nil, nil, nil, "negative dimension", "negative dimension"},
		{"overflowing shape", &Tensor{U8, []int{1 << 32, 1 << 32}, nil}, nil, nil, nil, "overflows", "overflows"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got32, err := tc.tensor.Float32()
			if tc.want32 == nil {
				wantError(t, err, tc.err32)
			} else if err != nil {
				t.Fatal(err)
			} else {
				for i := range tc.want32 {
					if got32[i] != tc.want32[i] {
						t.Errorf("Float32()[%d] = %g; want %g", i, got32[i], tc.want32[i])
					}
				}
				got64, err := tc.tensor.Float64()
				if err != nil {
					t.Fatal(err)
				}
				for i := range tc.want64 {
					if got64[i] != tc.want64[i] {
						t.Errorf("Float64()[%d] = %g; want %g", i, got64[i], tc.want64[i])
					}
				}
			}
			ints, err := tc.tensor.Int64s()
			if tc.wantInts == nil {
				wantError(t, err, tc.errInts)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.wantInts {
				if ints[i] != tc.wantInts[i] {
					t.Errorf("Int64s()[%d] = %d; want %d", i, ints[i], tc.wantInts[i])
				}
			}
		})
	}
}

func TestNumElements(t *testing.T) {
	tests := []struct {
		shape []int
		want  int
	}{
		{nil, 1}, {[]int{0, 5}, 0}, {[]int{2, 3, 4}, 24}, {[]int{-1}, -1}, {[]int{1 << 62, 4}, -1},
	}
	for _, tc := range tests {
		if got := (&Tensor{Shape: tc.shape}).NumElements(); got != tc.want {
			t.Errorf("NumElements(%v) = %d; want %d", tc.shape, got, tc.want)
		}
	}
}

func TestNewCopiesShape(t *testing.T) {
	shape := []int{2}
	x := NewF32(shape, []float32{1, 2})
	shape[0] = 5
	if x.Shape[0] != 2 {
		t.Errorf("NewF32 kept the caller's shape slice: Shape = %v after the caller changed it", x.Shape)
	}
}
