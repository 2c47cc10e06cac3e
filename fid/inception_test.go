package fid

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/internal/shared"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

var fixtureWeights struct {
	once sync.Once
	f    *checkpoint.File
	m    *Inception
	err  error
}

// fixtureInception returns the fixture's state dict and the Inception loaded from it, read once per
// test binary (the file is 95 MB).
func fixtureInception(t *testing.T) (*checkpoint.File, *Inception) {
	t.Helper()
	path := shared.Path(t, "fid/pt_inception-fixture.pth")
	w := &fixtureWeights
	w.once.Do(func() {
		if w.m, w.err = LoadInception(path); w.err == nil {
			w.f, w.err = checkpoint.ReadTorch(path)
		}
	})
	if w.err != nil {
		t.Fatal(w.err)
	}
	return w.f, w.m
}

func goBackend(t testing.TB) backends.Backend {
	t.Helper()
	b, _, err := backend.New("go")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInceptionGolden compares the features with pytorch-fid's InceptionV3([3]) on the fixture's
// weights (random ternary, calibrated BatchNorm), on the pure-Go backend, every image of the fixture:
// 3 grayscale 28x28 in one batch, 2 RGB 32x32 in another (~2.7 s an image on 2 cores).
func TestInceptionGolden(t *testing.T) {
	_, m := fixtureInception(t)
	ref := readFixture(t, shared.Path(t, "fid/inception_reference.safetensors"))
	b := goBackend(t)
	for _, c := range []struct {
		images, features string
		n, c, hw         int
	}{
		{"images28_gray", "features28", 3, 1, 28},
		{"images32_rgb", "features32", 2, 3, 32},
	} {
		t.Run(c.images, func(t *testing.T) {
			x := fixtureFloat32(t, ref, c.images, c.n, c.c, c.hw, c.hw)
			want := fixtureFloat32(t, ref, c.features, c.n, InceptionDim)
			got, err := m.Features(b, x, c.n, c.c, c.hw, c.hw, c.n)
			if err != nil {
				t.Fatal(err)
			}
			// The fixture is float32 arithmetic of torch 2.11: it differs from a float64 evaluation of
			// the same network by up to 7e-5 (1 + |f|) (4.6e-4 at features up to 154); ours differs
			// from that float64 evaluation by up to 1e-5 (1 + |f|) (measured with PyTorch 1.13 on
			// these images). 2e-4 (1 + |f|) leaves 3x room over the observed gap to the fixture.
			var worst, worstAbs float64
			at := 0
			for i := range want {
				d := math.Abs(float64(got[i] - want[i]))
				worstAbs = max(worstAbs, d)
				if e := d / (1 + math.Abs(float64(want[i]))); e > worst {
					worst, at = e, i
				}
			}
			t.Logf("max |got-want| %.3g; max |got-want|/(1+|want|) %.3g", worstAbs, worst)
			if worst > 2e-4 {
				t.Errorf("Features(%s)[%d,%d] = %g; want %g (error %.3g (1+|want|), tolerance 2e-4)",
					c.images, at/InceptionDim, at%InceptionDim, got[at], want[at], worst)
			}
		})
	}
}

// slowConv is a direct convolution of x [n,h,w,c] with k [kh,kw,c,o], stride s, zero padding ph rows
// and pw columns on each side: the reference for convIm2col and convNative.
func slowConv(x []float32, n, h, w, c int, k []float32, kh, kw, o, s, ph, pw int) []float32 {
	ho, wo := (h+2*ph-kh)/s+1, (w+2*pw-kw)/s+1
	out := make([]float32, n*ho*wo*o)
	for b := range n {
		for i := range ho {
			for j := range wo {
				for q := range o {
					var sum float32
					for y := range kh {
						for xx := range kw {
							r, col := i*s+y-ph, j*s+xx-pw
							if r < 0 || r >= h || col < 0 || col >= w {
								continue
							}
							for ch := range c {
								sum += x[((b*h+r)*w+col)*c+ch] * k[((y*kw+xx)*c+ch)*o+q]
							}
						}
					}
					out[((b*ho+i)*wo+j)*o+q] = sum
				}
			}
		}
	}
	return out
}

// smallInts returns n values in {-2, ..., 2}: products and sums of a few hundred of them are exact in
// float32, so any summation order gives the same result.
func smallInts(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.IntN(5) - 2)
	}
	return v
}

func runGraph(t *testing.T, b backends.Backend, fn func(x, w *graph.Node) *graph.Node, x, w *tensors.Tensor) []float32 {
	t.Helper()
	e, err := graph.NewExec(b, fn)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Finalize()
	out, err := e.Exec(x, w)
	if err != nil {
		t.Fatal(err)
	}
	return tensors.MustCopyFlatData[float32](out[0])
}

// TestConv checks both convolutions against slowConv on the kernel shapes, strides and paddings of
// the network, with odd sizes, in float32 and float64. Integer inputs: exact equality.
func TestConv(t *testing.T) {
	b := goBackend(t)
	r := rand.New(rand.NewPCG(1, 1))
	for _, c := range []struct {
		name                              string
		n, h, w, ch, kh, kw, o, s, ph, pw int
	}{
		{"1x1", 2, 5, 4, 6, 1, 1, 3, 1, 0, 0},
		{"3x3 stride 2", 2, 9, 8, 3, 3, 3, 4, 2, 0, 0},
		{"3x3 pad 1", 1, 6, 7, 5, 3, 3, 4, 1, 1, 1},
		{"3x3 valid", 1, 7, 6, 2, 3, 3, 3, 1, 0, 0},
		{"5x5 pad 2", 1, 6, 5, 3, 5, 5, 2, 1, 2, 2},
		{"1x7 pad 0,3", 2, 5, 9, 4, 1, 7, 3, 1, 0, 3},
		{"7x1 pad 3,0", 1, 8, 5, 4, 7, 1, 3, 1, 3, 0},
		{"1x3 pad 0,1", 1, 4, 4, 3, 1, 3, 2, 1, 0, 1},
		{"3x1 pad 1,0", 1, 4, 4, 3, 3, 1, 2, 1, 1, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			x := smallInts(r, c.n*c.h*c.w*c.ch)
			k := smallInts(r, c.kh*c.kw*c.ch*c.o)
			want := slowConv(x, c.n, c.h, c.w, c.ch, k, c.kh, c.kw, c.o, c.s, c.ph, c.pw)
			xt := tensors.FromFlatDataAndDimensions(x, c.n, c.h, c.w, c.ch)
			kt := tensors.FromFlatDataAndDimensions(k, c.kh, c.kw, c.ch, c.o)
			for name, conv := range map[string]func(x, w *graph.Node, s, ph, pw int) *graph.Node{
				"im2col": convIm2col, "native": convNative,
			} {
				for _, dtype := range []dtypes.DType{dtypes.Float32, dtypes.Float64} {
					got := runGraph(t, b, func(x, w *graph.Node) *graph.Node {
						x, w = graph.ConvertDType(x, dtype), graph.ConvertDType(w, dtype)
						return graph.ConvertDType(conv(x, w, c.s, c.ph, c.pw), dtypes.Float32)
					}, xt, kt)
					if len(got) != len(want) {
						t.Fatalf("%s %s: %d outputs, want %d", name, dtype, len(got), len(want))
					}
					for i := range want {
						if got[i] != want[i] {
							t.Fatalf("%s %s: output[%d] = %g; want %g", name, dtype, i, got[i], want[i])
						}
					}
				}
			}
		})
	}
}

// slowPool is F.max_pool2d(x, 3, s, p) or F.avg_pool2d(x, 3, s, p, count_include_pad=False) on
// x [n,h,w,c].
func slowPool(x []float32, n, h, w, c, s, p int, isMax bool) []float32 {
	ho, wo := (h+2*p-3)/s+1, (w+2*p-3)/s+1
	out := make([]float32, 0, n*ho*wo*c)
	for b := range n {
		for i := range ho {
			for j := range wo {
				for ch := range c {
					acc, count := float32(math.Inf(-1)), 0
					if !isMax {
						acc = 0
					}
					for y := i*s - p; y < i*s-p+3; y++ {
						for xx := j*s - p; xx < j*s-p+3; xx++ {
							if y < 0 || y >= h || xx < 0 || xx >= w {
								continue
							}
							v := x[((b*h+y)*w+xx)*c+ch]
							if isMax {
								acc = max(acc, v)
							} else {
								acc += v
							}
							count++
						}
					}
					if !isMax {
						acc /= float32(count)
					}
					out = append(out, acc)
				}
			}
		}
	}
	return out
}

// TestPools checks the pools against slowPool. Integer inputs: the sums are exact, so the averages
// are the same float32 quotient (exact equality; in float64, the same after rounding to float32).
func TestPools(t *testing.T) {
	b := goBackend(t)
	r := rand.New(rand.NewPCG(2, 2))
	for _, c := range []struct {
		name        string
		n, h, w, ch int
		s, p        int
		isMax       bool
	}{
		{"max stride 2 odd", 2, 9, 7, 3, 2, 0, true},
		{"max stride 2 even", 1, 8, 10, 2, 2, 0, true},
		{"max stride 1 pad 1", 2, 5, 4, 3, 1, 1, true},
		{"avg exclude pad", 2, 5, 6, 3, 1, 1, false},
		{"avg exclude pad 2x3", 1, 2, 3, 2, 1, 1, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			x := smallInts(r, c.n*c.h*c.w*c.ch)
			want := slowPool(x, c.n, c.h, c.w, c.ch, c.s, c.p, c.isMax)
			xt := tensors.FromFlatDataAndDimensions(x, c.n, c.h, c.w, c.ch)
			for _, dtype := range []dtypes.DType{dtypes.Float32, dtypes.Float64} {
				got := runGraph(t, b, func(x, _ *graph.Node) *graph.Node {
					x = graph.ConvertDType(x, dtype)
					if c.isMax {
						return graph.ConvertDType(maxPool3x3(x, c.s, c.p), dtypes.Float32)
					}
					return graph.ConvertDType(avgPool3x3(x), dtypes.Float32)
				}, xt, tensors.FromScalar(float32(0)))
				if len(got) != len(want) {
					t.Fatalf("%s: %d outputs, want %d", dtype, len(got), len(want))
				}
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("%s: output[%d] = %g; want %g", dtype, i, got[i], want[i])
					}
				}
			}
		})
	}
}

// TestInceptionInput checks the device resize and scaling against Resize, the host reference of
// torch's bilinear interpolation: out[n,i,j,k] = 2 Resize(x)[n,k or 0,i,j] - 1.
func TestInceptionInput(t *testing.T) {
	b := goBackend(t)
	r := rand.New(rand.NewPCG(3, 3))
	for _, c := range []struct {
		name       string
		n, c, h, w int
	}{
		{"gray 28x28", 2, 1, 28, 28},
		{"rgb 32x45", 1, 3, 32, 45},
		{"rgb 299x32", 1, 3, 299, 32},
		{"rgb 64x299", 1, 3, 64, 299},
		{"gray 299x299", 1, 1, 299, 299},
	} {
		t.Run(c.name, func(t *testing.T) {
			x := make([]float32, c.n*c.c*c.h*c.w)
			for i := range x {
				x[i] = r.Float32()
			}
			ref, err := Resize(x, c.n, c.c, c.h, c.w, InceptionSize, InceptionSize)
			if err != nil {
				t.Fatal(err)
			}
			for _, dtype := range []dtypes.DType{dtypes.Float32, dtypes.Float64} {
				got := runGraph(t, b, func(x, _ *graph.Node) *graph.Node {
					return graph.ConvertDType(inceptionInput(graph.ConvertDType(x, dtype)), dtypes.Float32)
				}, tensors.FromFlatDataAndDimensions(x, c.n, c.c, c.h, c.w), tensors.FromScalar(float32(0)))
				const s = InceptionSize
				if len(got) != c.n*s*s*3 {
					t.Fatalf("%s: %d outputs, want %d", dtype, len(got), c.n*s*s*3)
				}
				// Both sum the same two taps per axis, columns first; the matrix product may round
				// differently: observed up to 2.4e-7 (1 ulp near 1, values in [-1, 1]).
				var worst float64
				for n := range c.n {
					for i := range s {
						for j := range s {
							for k := range 3 {
								want := 2*ref[((n*c.c+min(k, c.c-1))*s+i)*s+j] - 1
								g := got[((n*s+i)*s+j)*3+k]
								if d := math.Abs(float64(g - want)); d > worst {
									worst = d
									if d > 1e-6 {
										t.Fatalf("%s: input[%d,%d,%d,%d] = %g; want %g", dtype, n, i, j, k, g, want)
									}
								}
							}
						}
					}
				}
				t.Logf("%s: max error %.3g", dtype, worst)
			}
		})
	}
}

// TestFoldBatchNorm checks the folded layer against conv then BatchNorm on one output position, and
// the layout change [out,in,kh,kw] -> [kh,kw,in,out].
func TestFoldBatchNorm(t *testing.T) {
	s := convSpec{name: "l", in: 2, out: 3, kh: 1, kw: 2}
	w := []float32{ // [3,2,1,2]
		1, 2, 3, 4,
		-1, 0, 0.5, 2,
		0, 0, 1, -1,
	}
	gamma, beta := []float32{2, 0.5, 1}, []float32{0.1, -0.2, 0}
	mean, variance := []float32{1, -1, 0.5}, []float32{4, 0.25, 1}
	wf, bf := foldBatchNorm(w, gamma, beta, mean, variance, s)
	x := []float32{0.3, -0.7, 1.1, 0.2} // [kh=1,kw=2,in=2], the layout of wf's first axes
	for o := range s.out {
		var conv, folded float64
		for c := range s.in {
			for kx := range s.kw {
				conv += float64(w[(o*s.in+c)*s.kw+kx]) * float64(x[kx*s.in+c])
				folded += float64(wf[(kx*s.in+c)*s.out+o]) * float64(x[kx*s.in+c])
			}
		}
		bn := float64(gamma[o])*(conv-float64(mean[o]))/math.Sqrt(float64(variance[o])+bnEps) + float64(beta[o])
		folded += float64(bf[o])
		// Folded weights are rounded to float32 once: relative error ~1e-7 of the terms (~5).
		if math.Abs(folded-bn) > 1e-6 {
			t.Errorf("output %d: folded layer gives %g; conv then BatchNorm gives %g", o, folded, bn)
		}
	}
}

// TestLoadInceptionErrors checks that a state dict without a tensor the network uses, or with another
// shape, is refused with an error that names the tensor.
func TestLoadInceptionErrors(t *testing.T) {
	f, _ := fixtureInception(t)
	const name = "Mixed_6c.branch7x7_2.conv.weight" // [160,160,1,7]
	for _, c := range []struct {
		name string
		edit func(map[string]*checkpoint.Tensor)
		want string
	}{
		{"missing", func(m map[string]*checkpoint.Tensor) { delete(m, name) }, `no tensor "` + name + `"`},
		{"transposed kernel", func(m map[string]*checkpoint.Tensor) {
			m[name] = checkpoint.NewF32([]int{160, 160, 7, 1}, make([]float32, 160*160*7))
		}, `"` + name + `" has shape [160 160 7 1], want [160 160 1 7]`},
		{"missing running_var", func(m map[string]*checkpoint.Tensor) {
			delete(m, "Conv2d_1a_3x3.bn.running_var")
		}, `no tensor "Conv2d_1a_3x3.bn.running_var"`},
		{"integer weights", func(m map[string]*checkpoint.Tensor) {
			m["Mixed_7c.branch_pool.bn.bias"] = checkpoint.NewI64([]int{192}, make([]int64, 192))
		}, `"Mixed_7c.branch_pool.bn.bias"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := &checkpoint.File{Tensors: maps.Clone(f.Tensors)}
			c.edit(g.Tensors)
			_, err := newInception(g, "")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("newInception(%s) = %v; want an error with %q", c.name, err, c.want)
			}
		})
	}
	t.Run("unused head removed", func(t *testing.T) {
		g := &checkpoint.File{Tensors: maps.Clone(f.Tensors)}
		delete(g.Tensors, "fc.weight")
		delete(g.Tensors, "fc.bias")
		if _, err := newInception(g, ""); err != nil {
			t.Errorf("newInception without fc.*: %v; want no error (the head is not used)", err)
		}
	})
}

// TestLoadInceptionDamaged checks that a file under pytorch-fid's name whose hash does not match the
// name is refused before it is parsed.
func TestLoadInceptionDamaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), InceptionWeightsFile)
	if err := os.WriteFile(path, []byte("truncated"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadInception(path)
	if err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("LoadInception(junk named %s) = %v; want an error saying it is damaged", InceptionWeightsFile, err)
	}
}

func TestExtractor(t *testing.T) {
	_, m := fixtureInception(t)
	hash, err := FileSHA256(shared.Path(t, "fid/pt_inception-fixture.pth"))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Extractor(); got.Name != InceptionName || got.WeightsHash != hash || len(hash) != 64 {
		t.Errorf("Extractor() = %+v; want {%q %s}", got, InceptionName, hash)
	}
}

// TestFeaturesErrors checks the argument checks, which run before any graph.
func TestFeaturesErrors(t *testing.T) {
	_, m := fixtureInception(t)
	b := goBackend(t)
	img := make([]float32, 2*3*8*8)
	for _, c := range []struct {
		name              string
		b                 backends.Backend
		x                 []float32
		n, c, h, w, batch int
		want              string
	}{
		{"no backend", nil, img, 2, 3, 8, 8, 2, "no backend"},
		{"2 channels", b, img, 2, 2, 8, 12, 2, "2 channels"},
		{"short data", b, img[1:], 2, 3, 8, 8, 2, "want N*C*H*W"},
		{"no images", b, nil, 0, 3, 8, 8, 2, "must be positive"},
		{"batch 0", b, img, 2, 3, 8, 8, 0, "must be positive"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := m.Features(c.b, c.x, c.n, c.c, c.h, c.w, c.batch)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Features(%s) = %v; want an error with %q", c.name, err, c.want)
			}
		})
	}
}

// TestInBatches checks the batching of Features with a stand-in network (row sums): every batch has
// the full size, the last one padded with zeros, and only real rows come back, in order.
func TestInBatches(t *testing.T) {
	const size, dim = 3, 2
	for _, c := range []struct{ n, batch int }{{1, 1}, {5, 2}, {6, 3}, {7, 4}} {
		t.Run(fmt.Sprintf("n=%d batch=%d", c.n, c.batch), func(t *testing.T) {
			x := make([]float32, c.n*size)
			for i := range x {
				x[i] = float32(i)
			}
			var calls int
			got, err := inBatches(x, c.n, size, c.batch, dim, func(b []float32, first int) ([]float32, error) {
				if len(b) != c.batch*size || first != calls*c.batch {
					t.Fatalf("call %d got %d values from item %d; want %d from %d", calls, len(b), first, c.batch*size, calls*c.batch)
				}
				calls++
				for i := range c.batch {
					for k := range size {
						if first+i >= c.n && b[i*size+k] != 0 {
							t.Fatalf("padding item %d holds %g; want 0", first+i, b[i*size+k])
						}
					}
				}
				y := make([]float32, c.batch*dim)
				for i := range c.batch {
					for k := range size {
						y[i*dim] += b[i*size+k]
					}
					y[i*dim+1] = float32(first + i)
				}
				return y, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for i := range c.n {
				sum := float32(3*size*i + 3) // (3i) + (3i+1) + (3i+2)
				if got[i*dim] != sum || got[i*dim+1] != float32(i) {
					t.Errorf("row %d = %v; want [%g %d]", i, got[i*dim:i*dim+dim], sum, i)
				}
			}
			if want := (c.n + c.batch - 1) / c.batch; calls != want {
				t.Errorf("%d calls; want %d", calls, want)
			}
		})
	}
}

func TestDType(t *testing.T) {
	b := goBackend(t)
	for _, c := range []struct {
		d, want dtypes.DType
	}{
		{dtypes.InvalidDType, dtypes.Float32}, // the zero value
		{dtypes.Float32, dtypes.Float32},
		{dtypes.Float64, dtypes.Float64},
	} {
		if got, err := computeDType(c.d); err != nil || got != c.want {
			t.Errorf("%v: %v, %v; want %v", c.d, got, err, c.want)
		}
	}
	f, _ := fixtureInception(t)
	bad, err := newInception(f, "")
	if err != nil {
		t.Fatal(err)
	}
	bad.DType = dtypes.Int32
	if _, err := bad.Features(b, make([]float32, 3*8*8), 1, 3, 8, 8, 1); err == nil || !strings.Contains(err.Error(), "Int32") {
		t.Errorf("Features with DType Int32 = %v; want an error naming it", err)
	}
}

// TestClose checks that Close drops the per-backend state and that the next use rebuilds it.
func TestClose(t *testing.T) {
	f, _ := fixtureInception(t)
	m, err := newInception(f, "")
	if err != nil {
		t.Fatal(err)
	}
	b := goBackend(t)
	e1, err := m.execFor(b)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if len(m.execs) != 0 || e1.weights[0].Ok() {
		t.Errorf("after Close: %d compiled networks, weights still valid: %v; want none", len(m.execs), e1.weights[0].Ok())
	}
	e2, err := m.execFor(b)
	if err != nil || e2 == e1 || !e2.weights[0].Ok() {
		t.Errorf("execFor after Close = %p, %v; want a new network with valid weights", e2, err)
	}
	m.Close()
}
