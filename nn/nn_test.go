package nn

import (
	"fmt"
	"github.com/ddpm/ddpm/internal/shared"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

func randTensor(rng *rand.Rand, dims ...int) *tensors.Tensor {
	n := 1
	for _, d := range dims {
		n *= d
	}
	v := make([]float64, n)
	for i := range v {
		v[i] = rng.NormFloat64()
	}
	return tensors.FromFlatDataAndDimensions(v, dims...)
}

func flat(t *tensors.Tensor) []float64 { return tensors.MustCopyFlatData[float64](t) }

func maxDiff(a, b []float64) float64 {
	m := 0.0
	for i := range a {
		m = max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

// Our DotGeneral VJP (two matmuls) against GoMLX's stock one, for batch axes, several contracting axes,
// contracting axes in a different order on each side, and batch axes that are not leading.
func TestDotVJPMatchesStock(t *testing.T) {
	b := shared.GoBackend(t)
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name     string
		lhs, rhs []int
		lc, lb   []int
		rc, rb   []int
	}{
		{"matmul", []int{3, 4}, []int{4, 5}, []int{1}, nil, []int{0}, nil},
		{"transposed rhs", []int{3, 4}, []int{5, 4}, []int{1}, nil, []int{1}, nil},
		{"transposed lhs", []int{4, 3}, []int{4, 5}, []int{0}, nil, []int{0}, nil},
		{"batched", []int{2, 3, 4}, []int{2, 4, 5}, []int{2}, []int{0}, []int{1}, []int{0}},
		{"batch not leading", []int{3, 2, 4}, []int{4, 2, 5}, []int{2}, []int{1}, []int{0}, []int{1}},
		{"two contracting", []int{2, 3, 4}, []int{3, 4, 5}, []int{1, 2}, nil, []int{0, 1}, nil},
		{"contracting order swapped", []int{2, 3, 4}, []int{4, 3, 5}, []int{1, 2}, nil, []int{1, 0}, nil},
		{"two batch, cross both", []int{2, 3, 6, 4}, []int{2, 3, 4, 5}, []int{3}, []int{0, 1}, []int{2}, []int{0, 1}},
		{"linear on rank 3", []int{2, 6, 4}, []int{5, 4}, []int{2}, nil, []int{1}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, r := randTensor(rng, c.lhs...), randTensor(rng, c.rhs...)
			grads := func(ours bool) [][]float64 {
				e := graph.MustNewExec(b, func(l, r *graph.Node) []*graph.Node {
					var out *graph.Node
					if ours {
						out = dot(l, c.lc, c.lb, r, c.rc, c.rb)
					} else {
						out = graph.DotGeneral(l, c.lc, c.lb, r, c.rc, c.rb)
					}
					// A non-uniform weight so every output position matters differently.
					wt := graph.Sin(graph.IotaFull(l.Graph(), out.Shape()))
					return graph.Gradient(graph.ReduceAllSum(graph.Mul(out, wt)), l, r)
				})
				res := e.MustExec(l, r)
				return [][]float64{flat(res[0]), flat(res[1])}
			}
			ours, stock := grads(true), grads(false)
			for i, name := range []string{"lhs", "rhs"} {
				if d := maxDiff(ours[i], stock[i]); d > 1e-12 {
					t.Errorf("d%s differs from GoMLX's VJP by %g", name, d)
				}
			}
		})
	}
}

func TestSliceVJP(t *testing.T) {
	b := shared.GoBackend(t)
	rng := rand.New(rand.NewPCG(3, 4))
	x := randTensor(rng, 2, 5, 6)
	starts, limits := []int{0, 1, 2}, []int{2, 4, 6}
	e := graph.MustNewExec(b, func(x *graph.Node) *graph.Node {
		s := slice(x, starts, limits)
		wt := graph.AddScalar(graph.IotaFull(x.Graph(), s.Shape()), 1)
		return graph.Gradient(graph.ReduceAllSum(graph.Mul(s, wt)), x)[0]
	})
	got := flat(e.MustExec(x)[0])
	k := 1.0
	for i := 0; i < 2; i++ {
		for j := 0; j < 5; j++ {
			for l := 0; l < 6; l++ {
				want := 0.0
				if j >= 1 && j < 4 && l >= 2 {
					want, k = k, k+1
				}
				if g := got[(i*5+j)*6+l]; g != want {
					t.Fatalf("grad[%d,%d,%d] = %g, want %g", i, j, l, g, want)
				}
			}
		}
	}
}

type convCase struct {
	n, c, h, w, o, k, s int
	pad                 [4]int
}

func (c convCase) String() string {
	return fmt.Sprintf("x[%d,%d,%d,%d] k%d s%d pad%v", c.n, c.c, c.h, c.w, c.k, c.s, c.pad)
}

var convCases = []convCase{
	{2, 3, 6, 6, 4, 3, 1, [4]int{1, 1, 1, 1}},
	{1, 2, 5, 7, 3, 3, 1, [4]int{1, 1, 1, 1}},
	{2, 3, 6, 6, 4, 3, 2, [4]int{0, 1, 0, 1}}, // diffusers' downsample_padding 0
	{2, 3, 6, 6, 4, 3, 2, [4]int{1, 1, 1, 1}}, // downsample_padding 1
	{1, 2, 7, 7, 2, 3, 2, [4]int{0, 1, 0, 1}}, // odd size
	{2, 4, 5, 5, 3, 1, 1, [4]int{}},           // 1x1 shortcut
	{1, 2, 6, 5, 3, 2, 1, [4]int{0, 1, 1, 0}}, // even kernel, asymmetric pad
}

// The shift (im2col) convolution against the backend's own ConvGeneral, forward.
func TestConvShiftMatchesNative(t *testing.T) {
	b := shared.GoBackend(t)
	rng := rand.New(rand.NewPCG(5, 6))
	for _, c := range convCases {
		t.Run(c.String(), func(t *testing.T) {
			x, w, bias := randTensor(rng, c.n, c.c, c.h, c.w), randTensor(rng, c.o, c.c, c.k, c.k), randTensor(rng, c.o)
			run := func(impl ConvImpl) []float64 {
				e := graph.MustNewExec(b, func(x, w, bias *graph.Node) *graph.Node {
					return Conv2D(x, w, bias, c.s, c.pad, impl)
				})
				return flat(e.MustExec(x, w, bias)[0])
			}
			if d := maxDiff(run(ConvShift), run(ConvNative)); d > 1e-12 {
				t.Errorf("shift conv differs from native by %g", d)
			}
		})
	}
}

// The shift convolution's gradient against central finite differences (float64).
func TestConvShiftGradient(t *testing.T) {
	b := shared.GoBackend(t)
	rng := rand.New(rand.NewPCG(7, 8))
	for _, c := range convCases {
		t.Run(c.String(), func(t *testing.T) {
			x, w := randTensor(rng, c.n, c.c, c.h, c.w), randTensor(rng, c.o, c.c, c.k, c.k)
			loss := func(x, w *graph.Node) *graph.Node {
				y := Conv2D(x, w, nil, c.s, c.pad, ConvShift)
				return graph.ReduceAllSum(graph.Mul(y, graph.Cos(graph.IotaFull(x.Graph(), y.Shape()))))
			}
			ge := graph.MustNewExec(b, func(x, w *graph.Node) []*graph.Node {
				return graph.Gradient(loss(x, w), x, w)
			})
			g := ge.MustExec(x, w)
			le := graph.MustNewExec(b, loss)
			for which, tt := range []*tensors.Tensor{x, w} {
				base := flat(tt)
				grad := flat(g[which])
				for trial := 0; trial < 6; trial++ {
					i := rng.IntN(len(base))
					const h = 1e-5
					eval := func(delta float64) float64 {
						v := append([]float64(nil), base...)
						v[i] += delta
						p := tensors.FromFlatDataAndDimensions(v, tt.Shape().Dimensions...)
						args := []any{x, w}
						args[which] = p
						return tensors.ToScalar[float64](le.MustExec(args...)[0])
					}
					fd := (eval(h) - eval(-h)) / (2 * h)
					if math.Abs(fd-grad[i]) > 1e-6*max(1, math.Abs(fd)) {
						t.Errorf("d/d%s[%d] = %g, finite differences %g", []string{"x", "w"}[which], i, grad[i], fd)
					}
				}
			}
		})
	}
}

func TestGroupNorm(t *testing.T) {
	b := shared.GoBackend(t)
	rng := rand.New(rand.NewPCG(9, 10))
	const n, c, h, w, groups, eps = 2, 6, 3, 2, 3, 1e-5
	x, gamma, beta := randTensor(rng, n, c, h, w), randTensor(rng, c), randTensor(rng, c)
	e := graph.MustNewExec(b, func(x, g, bt *graph.Node) *graph.Node { return GroupNorm(x, g, bt, groups, eps) })
	got := flat(e.MustExec(x, gamma, beta)[0])
	xv, gv, bv := flat(x), flat(gamma), flat(beta)
	per := c / groups * h * w
	for i := 0; i < n; i++ {
		for gi := 0; gi < groups; gi++ {
			off := (i*c + gi*c/groups) * h * w
			mean, sq := 0.0, 0.0
			for j := 0; j < per; j++ {
				mean += xv[off+j]
			}
			mean /= float64(per)
			for j := 0; j < per; j++ {
				sq += (xv[off+j] - mean) * (xv[off+j] - mean)
			}
			std := math.Sqrt(sq/float64(per) + eps)
			for j := 0; j < per; j++ {
				ch := gi*c/groups + j/(h*w)
				want := (xv[off+j]-mean)/std*gv[ch] + bv[ch]
				if d := math.Abs(got[off+j] - want); d > 1e-12 {
					t.Fatalf("GroupNorm[%d] = %g, want %g", off+j, got[off+j], want)
				}
			}
		}
	}
}

func TestTimestepEmbedding(t *testing.T) {
	b := shared.GoBackend(t)
	for _, c := range []struct {
		dim   int
		flip  bool
		shift float64
	}{{8, false, 1}, {8, true, 0}, {7, false, 1}} {
		t.Run(fmt.Sprintf("dim%d flip=%v shift=%g", c.dim, c.flip, c.shift), func(t *testing.T) {
			ts := []int32{0, 3, 999}
			e := graph.MustNewExec(b, func(tt *graph.Node) *graph.Node { return TimestepEmbedding(tt, c.dim, c.flip, c.shift) })
			got := tensors.MustCopyFlatData[float32](e.MustExec(ts)[0])
			half := c.dim / 2
			for i, tv := range ts {
				for j := 0; j < half; j++ {
					f := math.Exp(-math.Log(10000) * float64(j) / (float64(half) - c.shift))
					s, co := math.Sin(float64(tv)*f), math.Cos(float64(tv)*f)
					if c.flip {
						s, co = co, s
					}
					gs, gc := got[i*c.dim+j], got[i*c.dim+half+j]
					// float32 phase t*f at t = 999 carries ~1e-4 rad of rounding.
					if math.Abs(float64(gs)-s) > 2e-4 || math.Abs(float64(gc)-co) > 2e-4 {
						t.Fatalf("emb(t=%d)[%d] = (%g, %g), want (%g, %g)", tv, j, gs, gc, s, co)
					}
				}
				if c.dim%2 == 1 && got[i*c.dim+c.dim-1] != 0 {
					t.Fatalf("odd dim: last entry %g, want 0 padding", got[i*c.dim+c.dim-1])
				}
			}
		})
	}
}

func TestUpsampleNearest2x(t *testing.T) {
	b := shared.GoBackend(t)
	x := tensors.FromFlatDataAndDimensions([]float32{1, 2, 3, 4}, 1, 1, 2, 2)
	e := graph.MustNewExec(b, UpsampleNearest2x)
	got := tensors.MustCopyFlatData[float32](e.MustExec(x)[0])
	want := []float32{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("UpsampleNearest2x = %v, want %v", got, want)
		}
	}
}
