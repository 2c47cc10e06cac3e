package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ddpm/ddpm/internal/shared"
	"github.com/ddpm/ddpm/nn"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// The reference for every kernel is the GoMLX implementation the model uses (package nn) on the
// pure-Go backend, in float32, and its gradients from graph.Gradient. The loss of a gradient check is
// sum(out * w) with a random w, so dy = w. Tolerance: 1e-5 relative to the largest value (float32
// sums in a different order).
const tol = 1e-5

func randn(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func tensor(v []float32, dims ...int) *tensors.Tensor {
	return tensors.FromFlatDataAndDimensions(append([]float32(nil), v...), dims...)
}

// nchwToNHWC converts [N,C,HW] to [N,HW,C]; nhwcToNCHW back.
func nchwToNHWC(x []float32, n, c, hw int) []float32 {
	out := make([]float32, len(x))
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			for p := 0; p < hw; p++ {
				out[(i*hw+p)*c+ch] = x[(i*c+ch)*hw+p]
			}
		}
	}
	return out
}

func nhwcToNCHW(x []float32, n, c, hw int) []float32 {
	out := make([]float32, len(x))
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			for p := 0; p < hw; p++ {
				out[(i*c+ch)*hw+p] = x[(i*hw+p)*c+ch]
			}
		}
	}
	return out
}

// relErr is max |got - want| / max |want|.
func relErr(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	d, m := 0.0, 1e-30
	for i := range want {
		d = max(d, math.Abs(float64(got[i])-float64(want[i])))
		m = max(m, math.Abs(float64(want[i])))
	}
	return d / m
}

func check(t *testing.T, name string, got, want []float32, tol float64) {
	t.Helper()
	if e := relErr(got, want); !(e <= tol) {
		t.Errorf("%s: relative error %.3g, want <= %g (got[0:3] %v, want %v)", name, e, tol, got[:min(3, len(got))], want[:min(3, len(want))])
	}
}

// run executes f on the pure-Go backend and returns its outputs as float32 slices.
func run(t *testing.T, f func(in []*graph.Node) []*graph.Node, in ...*tensors.Tensor) [][]float32 {
	t.Helper()
	b := shared.GoBackend(t)
	e, err := graph.NewExec(b, f)
	if err != nil {
		t.Fatal(err)
	}
	args := make([]any, len(in))
	for i, v := range in {
		args[i] = v
	}
	out, err := e.Exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	res := make([][]float32, len(out))
	for i, o := range out {
		res[i] = tensors.MustCopyFlatData[float32](o)
	}
	return res
}

func TestGroupNorm(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name              string
		n, c, h, w, g     int
		bias, silu        bool
		eps               float32
		meanOff, scaleMul float32
	}{
		{"plain", 2, 8, 3, 5, 4, false, false, 1e-5, 0, 1},
		{"silu", 3, 6, 4, 4, 3, false, true, 1e-6, 0, 1},
		{"bias silu", 2, 8, 3, 3, 2, true, true, 1e-5, 0, 1},
		{"bias no silu, offset", 2, 12, 5, 2, 4, true, false, 1e-5, 3, 2},
		{"one group per channel", 1, 4, 2, 2, 4, true, true, 1e-5, 0, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hw := c.h * c.w
			x := randn(rng, c.n*c.c*hw) // NCHW
			for i := range x {
				x[i] = x[i]*c.scaleMul + c.meanOff
			}
			bias := randn(rng, c.n*c.c)
			gamma, beta, w := randn(rng, c.c), randn(rng, c.c), randn(rng, c.n*c.c*hw)
			ref := run(t, func(in []*graph.Node) []*graph.Node {
				x, b, gm, bt, w := in[0], in[1], in[2], in[3], in[4]
				h := x
				if c.bias {
					h = graph.Add(h, graph.Reshape(b, c.n, c.c, 1, 1))
				}
				y := nn.GroupNorm(h, gm, bt, c.g, float64(c.eps))
				if c.silu {
					y = nn.SiLU(y)
				}
				g := graph.Gradient(graph.ReduceAllSum(graph.Mul(y, w)), x, b, gm, bt)
				return []*graph.Node{y, g[0], g[1], g[2], g[3]}
			}, tensor(x, c.n, c.c, c.h, c.w), tensor(bias, c.n, c.c), tensor(gamma, c.c), tensor(beta, c.c),
				tensor(w, c.n, c.c, c.h, c.w))

			xl := nchwToNHWC(x, c.n, c.c, hw)
			var bl []float32
			if c.bias {
				bl = bias
			}
			y := make([]float32, len(x))
			mean, rstd := make([]float32, c.n*c.g), make([]float32, c.n*c.g)
			GroupNormForward(y, mean, rstd, xl, bl, gamma, beta, c.n, hw, c.c, c.g, c.eps, c.silu)
			check(t, "y", nhwcToNCHW(y, c.n, c.c, hw), ref[0], tol)

			dy := nchwToNHWC(w, c.n, c.c, hw)
			dx, dbias := make([]float32, len(x)), make([]float32, c.n*c.c)
			dgamma, dbeta, scratch := make([]float32, c.c), make([]float32, c.c), make([]float32, 2*c.n*c.c)
			GroupNormBackward(dx, dbias, dgamma, dbeta, scratch, dy, xl, bl, gamma, beta, mean, rstd, c.n, hw, c.c, c.g, c.silu)
			check(t, "dx", nhwcToNCHW(dx, c.n, c.c, hw), ref[1], tol)
			switch {
			case c.bias && c.g == c.c:
				// A per-channel bias is normalized away: its gradient is zero up to rounding.
				check(t, "dbias (zero)", append(dbias, 1), append(ref[2], 1), tol)
			case c.bias:
				check(t, "dbias", dbias, ref[2], tol)
			}
			check(t, "dgamma", dgamma, ref[3], tol)
			check(t, "dbeta", dbeta, ref[4], tol)

			// In place: y over x, dx over dy.
			GroupNormForward(xl, mean, rstd, xl, bl, gamma, beta, c.n, hw, c.c, c.g, c.eps, c.silu)
			check(t, "y in place", xl, y, 0)
		})
	}
}

func TestSiLU(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	n := 40000 // more than one block
	x, w := randn(rng, n), randn(rng, n)
	for i := range x {
		x[i] *= 4
	}
	ref := run(t, func(in []*graph.Node) []*graph.Node {
		y := nn.SiLU(in[0])
		return []*graph.Node{y, graph.Gradient(graph.ReduceAllSum(graph.Mul(y, in[1])), in[0])[0]}
	}, tensor(x, n), tensor(w, n))
	y, dx := make([]float32, n), make([]float32, n)
	SiLUForward(y, x)
	SiLUBackward(dx, w, x)
	check(t, "y", y, ref[0], tol)
	check(t, "dx", dx, ref[1], tol)
}

func TestSoftmax(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	rows, l := 12, 49
	scale := float32(1 / math.Sqrt(32))
	x, w := randn(rng, rows*l), randn(rng, rows*l)
	for i := range x {
		x[i] *= 5
	}
	ref := run(t, func(in []*graph.Node) []*graph.Node {
		y := nn.Softmax(graph.MulScalar(in[0], float64(scale)))
		return []*graph.Node{y, graph.Gradient(graph.ReduceAllSum(graph.Mul(y, in[1])), in[0])[0]}
	}, tensor(x, rows, l), tensor(w, rows, l))
	y, dx := make([]float32, rows*l), make([]float32, rows*l)
	SoftmaxForward(y, x, rows, l, scale)
	SoftmaxBackward(dx, w, y, rows, l, scale)
	check(t, "y", y, ref[0], tol)
	check(t, "dx", dx, ref[1], tol)
}

func TestUpsample2x(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	n, c, h, wd := 2, 3, 4, 5
	x, w := randn(rng, n*c*h*wd), randn(rng, 4*n*c*h*wd)
	ref := run(t, func(in []*graph.Node) []*graph.Node {
		y := nn.UpsampleNearest2x(in[0])
		return []*graph.Node{y, graph.Gradient(graph.ReduceAllSum(graph.Mul(y, in[1])), in[0])[0]}
	}, tensor(x, n, c, h, wd), tensor(w, n, c, 2*h, 2*wd))
	y, dx := make([]float32, 4*len(x)), make([]float32, len(x))
	Upsample2xForward(y, nchwToNHWC(x, n, c, h*wd), n, h, wd, c)
	Upsample2xBackward(dx, nchwToNHWC(w, n, c, 4*h*wd), n, h, wd, c)
	check(t, "y", nhwcToNCHW(y, n, c, 4*h*wd), ref[0], 0)
	check(t, "dx", nhwcToNCHW(dx, n, c, h*wd), ref[1], tol)
}

func TestConcatAndAdd(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	n, ca, cb, hw := 3, 4, 6, 100 // P = 300: more than one block of positions
	a, b := randn(rng, n*ca*hw), randn(rng, n*cb*hw)
	ref := run(t, func(in []*graph.Node) []*graph.Node {
		return []*graph.Node{graph.Concatenate([]*graph.Node{in[0], in[1]}, 1)}
	}, tensor(a, n, ca, hw), tensor(b, n, cb, hw))
	al, bl := nchwToNHWC(a, n, ca, hw), nchwToNHWC(b, n, cb, hw)
	y := make([]float32, len(a)+len(b))
	ConcatForward(y, al, bl, n*hw, ca, cb)
	check(t, "concat", nhwcToNCHW(y, n, ca+cb, hw), ref[0], 0)
	da, db := make([]float32, len(a)), make([]float32, len(b))
	ConcatBackward(da, db, y, n*hw, ca, cb)
	check(t, "concat backward a", da, al, 0)
	check(t, "concat backward b", db, bl, 0)

	s := float32(math.Sqrt2)
	sum := make([]float32, len(a))
	AddForward(sum, al, al, s)
	for i := range sum {
		if want := (al[i] + al[i]) / s; sum[i] != want {
			t.Fatalf("AddForward[%d] = %v; want %v", i, sum[i], want)
		}
	}
	ScaleBackward(sum, al, s)
	for i := range sum {
		if want := al[i] / s; sum[i] != want {
			t.Fatalf("ScaleBackward[%d] = %v; want %v", i, sum[i], want)
		}
	}
}

func TestTimestepEmbedding(t *testing.T) {
	for _, c := range []struct {
		dim   int
		flip  bool
		shift float64
	}{{32, true, 0}, {16, false, 1}, {9, true, 0}} {
		ts := []float32{0, 1, 17, 500, 999}
		ti := []int32{0, 1, 17, 500, 999}
		ref := run(t, func(in []*graph.Node) []*graph.Node {
			return []*graph.Node{nn.TimestepEmbedding(in[0], c.dim, c.flip, c.shift)}
		}, tensors.FromFlatDataAndDimensions(ti, len(ti)))
		emb := make([]float32, len(ts)*c.dim)
		TimestepEmbedding(emb, ts, nn.TimestepFrequencies(c.dim, c.shift), c.dim, c.flip)
		// sin/cos of arguments up to ~1000 in float32: the argument's rounding is the same, the
		// functions differ in the last bits.
		check(t, "emb", emb, ref[0], 1e-6)
	}
}

func TestMSE(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	n := 2 * 1 * 28 * 28
	pred, target := randn(rng, n), randn(rng, n)
	ref := run(t, func(in []*graph.Node) []*graph.Node {
		l := graph.ReduceAllMean(graph.Square(graph.Sub(in[0], in[1])))
		return []*graph.Node{graph.Reshape(l, 1), graph.Gradient(l, in[0])[0]}
	}, tensor(pred, n), tensor(target, n))
	d := make([]float32, n)
	l := MSE(d, pred, target)
	check(t, "loss", []float32{float32(l)}, ref[0], tol)
	check(t, "dpred", d, ref[1], tol)
}

// TestAdamWEMA compares one fused update with the graph of train/train.go (adamW, updateEMA), copied
// here op for op: the results must be bit-identical, so the two engines' training states agree.
func TestAdamWEMA(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	n := 40000
	p, m, v, g, ema := randn(rng, n), randn(rng, n), randn(rng, n), randn(rng, n), randn(rng, n)
	for i := range v {
		v[i] = v[i] * v[i] * 1e-3
		m[i] *= 1e-2
	}
	for _, c := range []struct {
		name string
		cfg  AdamWConfig
		step int64
		d    float64
	}{
		{"recipe", AdamWConfig{LR: 2e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}, 7, 0.999},
		{"no decay, late", AdamWConfig{LR: 1e-3, Beta1: 0.95, Beta2: 0.99, Eps: 1e-6}, 12345, 0.5},
		{"clipped", AdamWConfig{LR: 2e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.1, MaxGradNorm: 1}, 1, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			cf := c.cfg
			ref := run(t, func(in []*graph.Node) []*graph.Node {
				p, grad, m, v, ema := in[0], in[1], in[2], in[3], in[4]
				gr := p.Graph()
				nf := graph.Scalar(gr, dtypes.Float32, float64(c.step))
				if cf.MaxGradNorm > 0 {
					norm := graph.Sqrt(graph.ReduceAllSum(graph.Square(grad)))
					scale := graph.Min(graph.Scalar(gr, dtypes.Float32, 1),
						graph.Div(graph.Scalar(gr, dtypes.Float32, cf.MaxGradNorm), graph.AddScalar(norm, 1e-6)))
					grad = graph.Mul(grad, scale)
				}
				bc1 := graph.OneMinus(graph.Pow(graph.Scalar(gr, dtypes.Float32, cf.Beta1), nf))
				bc2 := graph.OneMinus(graph.Pow(graph.Scalar(gr, dtypes.Float32, cf.Beta2), nf))
				if cf.WeightDecay > 0 {
					p = graph.MulScalar(p, 1-cf.LR*cf.WeightDecay)
				}
				m2 := graph.Add(graph.MulScalar(m, cf.Beta1), graph.MulScalar(grad, 1-cf.Beta1))
				v2 := graph.Add(graph.MulScalar(v, cf.Beta2), graph.MulScalar(graph.Square(grad), 1-cf.Beta2))
				den := graph.AddScalar(graph.Sqrt(graph.Div(v2, bc2)), cf.Eps)
				p2 := graph.Sub(p, graph.MulScalar(graph.Div(graph.Div(m2, bc1), den), cf.LR))
				d := graph.Scalar(gr, dtypes.Float32, c.d)
				e2 := graph.Add(graph.Mul(ema, d), graph.Mul(p2, graph.OneMinus(d)))
				return []*graph.Node{p2, m2, v2, e2}
			}, tensor(p, n), tensor(g, n), tensor(m, n), tensor(v, n), tensor(ema, n))
			p2, m2, v2, e2 := clone(p), clone(m), clone(v), clone(ema)
			AdamW(cf, p2, m2, v2, g, c.step)
			EMA(e2, p2, c.d)
			tolP := 0.0
			if cf.MaxGradNorm > 0 {
				tolP = 1e-6 // the norm is a float32 sum in another order
			}
			check(t, "params", p2, ref[0], tolP)
			check(t, "m", m2, ref[1], tolP)
			check(t, "v", v2, ref[2], tolP)
			check(t, "ema", e2, ref[3], tolP)
		})
	}
}

func clone(v []float32) []float32 { return append([]float32(nil), v...) }
