package nn

import (
	"fmt"
	"math"
	"slices"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	timage "github.com/gomlx/gomlx/pkg/core/tensors/images"
)

// Linear computes x w^T + b for x [..., in], w [out, in] (PyTorch's nn.Linear layout), b [out] or nil.
func Linear(x, w, b *graph.Node) *graph.Node {
	y := dot(x, []int{x.Rank() - 1}, nil, w, []int{1}, nil)
	if b != nil {
		y = graph.Add(y, graph.ExpandLeftToRank(b, y.Rank()))
	}
	return y
}

// MatMul computes the batched product a b for a [B..., M, K] and b [B..., K, N].
func MatMul(a, b *graph.Node) *graph.Node {
	r := a.Rank()
	batch := seq(0, r-2)
	return dot(a, []int{r - 1}, batch, b, []int{r - 2}, batch)
}

// ConvImpl selects how Conv2D computes.
type ConvImpl int

const (
	// ConvAuto uses the backend's convolution where its gradient works (XLA), else ConvShift.
	ConvAuto ConvImpl = iota
	// ConvNative is the backend's ConvGeneral. On the pure-Go backend it is a single-threaded loop
	// and its gradient needs Reverse, which that backend lacks.
	ConvNative
	// ConvShift gathers the kh*kw shifted views of the zero-padded input with unit-stride slices,
	// stacks them on the channel axis and does one matmul with the kernel (im2col). Differentiable
	// with ops every backend has, given this package's VJPs for Slice and DotGeneral.
	ConvShift
)

// Conv2D convolves x [N,C,H,W] with w [O,C,kh,kw] (PyTorch layout), adds b [O] (nil: no bias), with
// stride s and zero padding pad = [top, bottom, left, right]. Output [N,O,Ho,Wo],
// Ho = (H + top + bottom - kh)/s + 1.
func Conv2D(x, w, b *graph.Node, stride int, pad [4]int, impl ConvImpl) *graph.Node {
	if impl == ConvAuto {
		impl = ConvShift
		if x.Graph().Backend().Capabilities().Operations[backends.OpTypeReverse] {
			impl = ConvNative
		}
	}
	var y *graph.Node
	if impl == ConvNative {
		y = threePass(x, w, func(x, w *graph.Node) *graph.Node {
			return graph.Convolve(x, w).ChannelsAxis(timage.ChannelsFirst).
				PaddingPerDim([][2]int{{pad[0], pad[1]}, {pad[2], pad[3]}}).Strides(stride).Done()
		})
	} else {
		y = convShift(x, w, stride, pad)
	}
	if b != nil {
		y = graph.Add(y, graph.Reshape(b, 1, b.Shape().Dimensions[0], 1, 1))
	}
	return y
}

func convShift(x, w *graph.Node, s int, pad [4]int) *graph.Node {
	xd, wd := x.Shape().Dimensions, w.Shape().Dimensions
	n, c, h, wi := xd[0], xd[1], xd[2], xd[3]
	o, kh, kw := wd[0], wd[2], wd[3]
	if wd[1] != c {
		panic(fmt.Errorf("nn.Conv2D: kernel %v has %d input channels, input %v has %d", wd, wd[1], xd, c))
	}
	hp, wp := h+pad[0]+pad[1], wi+pad[2]+pad[3]
	ho, wo := (hp-kh)/s+1, (wp-kw)/s+1
	if kh == 1 && kw == 1 && s == 1 && pad == [4]int{} {
		y := dot(x, []int{1}, nil, graph.Reshape(w, o, c), []int{1}, nil) // [N, H, W, O]
		return graph.TransposeAllAxes(y, 0, 3, 1, 2)
	}
	xp := padAxis(padAxis(x, 2, pad[0], pad[1]), 3, pad[2], pad[3])
	if s > 1 {
		// Pad to a multiple of s and fold each spatial axis into (position, phase), so that every
		// strided tap becomes a unit-stride slice: row s*oy + ky = s*(oy + ky/s) + ky%s.
		eh, ew := (s-hp%s)%s, (s-wp%s)%s
		xp = padAxis(padAxis(xp, 2, 0, eh), 3, 0, ew)
		hp, wp = hp+eh, wp+ew
		xp = graph.Reshape(xp, n, c, hp/s, s, wp/s, s)
	}
	taps := make([]*graph.Node, 0, kh*kw)
	for ky := 0; ky < kh; ky++ {
		for kx := 0; kx < kw; kx++ {
			var t *graph.Node
			if s == 1 {
				t = slice(xp, []int{0, 0, ky, kx}, []int{n, c, ky + ho, kx + wo})
			} else {
				y0, py, x0, px := ky/s, ky%s, kx/s, kx%s
				t = slice(xp, []int{0, 0, y0, py, x0, px}, []int{n, c, y0 + ho, py + 1, x0 + wo, px + 1})
				t = graph.Reshape(t, n, c, ho, wo)
			}
			taps = append(taps, t)
		}
	}
	var patches *graph.Node // [N, kh*kw*C, Ho, Wo], channel index (ky*kw + kx)*C + c
	if len(taps) == 1 {
		patches = taps[0]
	} else {
		patches = graph.Concatenate(taps, 1)
	}
	wk := graph.Reshape(graph.TransposeAllAxes(w, 0, 2, 3, 1), o, kh*kw*c)
	y := dot(patches, []int{1}, nil, wk, []int{1}, nil) // [N, Ho, Wo, O]
	return graph.TransposeAllAxes(y, 0, 3, 1, 2)
}

// GroupNorm normalizes x [N,C,...] over each group of C/groups channels and all positions, with the
// biased variance, then scales by gamma [C] and shifts by beta [C] (torch.nn.GroupNorm):
//
//	y = (x - mean) / sqrt(var + eps) * gamma + beta
//
// Statistics are computed in float32 whatever the dtype of x (bfloat16 under mixed precision), and the
// result has the dtype of x.
func GroupNorm(x, gamma, beta *graph.Node, groups int, eps float64) *graph.Node {
	if dt := x.DType(); dt != dtypes.Float32 && dt != dtypes.Float64 {
		f := func(n *graph.Node) *graph.Node { return graph.ConvertDType(n, dtypes.Float32) }
		return graph.ConvertDType(GroupNorm(f(x), f(gamma), f(beta), groups, eps), dt)
	}
	d := x.Shape().Dimensions
	n, c := d[0], d[1]
	if c%groups != 0 {
		panic(fmt.Errorf("nn.GroupNorm: %d channels do not split into %d groups", c, groups))
	}
	rest := 1
	for _, v := range d[2:] {
		rest *= v
	}
	xg := graph.Reshape(x, n, groups, (c/groups)*rest)
	mean := graph.ReduceAndKeep(xg, graph.ReduceMean, 2)
	xc := graph.Sub(xg, mean)
	variance := graph.ReduceAndKeep(graph.Square(xc), graph.ReduceMean, 2)
	// 1/Sqrt rather than Rsqrt: GoMLX defines no gradient for Rsqrt.
	xn := graph.Div(xc, graph.Sqrt(graph.AddScalar(variance, eps)))
	y := graph.Reshape(xn, d...)
	bshape := make([]int, len(d))
	for i := range bshape {
		bshape[i] = 1
	}
	bshape[1] = c
	return graph.Add(graph.Mul(y, graph.Reshape(gamma, bshape...)), graph.Reshape(beta, bshape...))
}

// SiLU is x * sigmoid(x).
func SiLU(x *graph.Node) *graph.Node { return graph.Mul(x, graph.Sigmoid(x)) }

// Softmax over the last axis, with the maximum subtracted first; in float32 for lower-precision x
// (diffusers' upcast_softmax), returned in the dtype of x.
func Softmax(x *graph.Node) *graph.Node {
	if dt := x.DType(); dt != dtypes.Float32 && dt != dtypes.Float64 {
		return graph.ConvertDType(Softmax(graph.ConvertDType(x, dtypes.Float32)), dt)
	}
	m := graph.StopGradient(graph.ReduceAndKeep(x, graph.ReduceMax, -1))
	e := graph.Exp(graph.Sub(x, m))
	return graph.Div(e, graph.ReduceAndKeep(e, graph.ReduceSum, -1))
}

// UpsampleNearest2x repeats every pixel of x [N,C,H,W] into a 2x2 block (F.interpolate, scale 2,
// "nearest").
func UpsampleNearest2x(x *graph.Node) *graph.Node {
	d := x.Shape().Dimensions
	n, c, h, w := d[0], d[1], d[2], d[3]
	y := graph.BroadcastToDims(graph.Reshape(x, n, c, h, 1, w, 1), n, c, h, 2, w, 2)
	return graph.Reshape(y, n, c, 2*h, 2*w)
}

// TimestepFrequencies returns the dim/2 frequencies of the sinusoidal timestep embedding, computed in
// float32 in the order of operations of diffusers' get_timestep_embedding (max_period 10000), so that
// our embedding rounds as theirs does:
//
//	f_i = exp(-ln(10000) * i / (dim/2 - shift)),   i = 0 .. dim/2-1
func TimestepFrequencies(dim int, shift float64) []float32 {
	half := dim / 2
	out := make([]float32, half)
	negLog := float32(-math.Log(10000))
	for i := range out {
		e := negLog * float32(i) / float32(float64(half)-shift)
		out[i] = float32(math.Exp(float64(e)))
	}
	return out
}

// TimestepEmbedding is the sinusoidal embedding of timesteps t [N] (any numeric dtype) to [N, dim]
// (Vaswani et al. 2017, Sec. 3.5; Ho et al. 2020, Appendix B): [sin(t f), cos(t f)], or
// [cos(t f), sin(t f)] when flipSinToCos, as diffusers' Timesteps module.
func TimestepEmbedding(t *graph.Node, dim int, flipSinToCos bool, shift float64) *graph.Node {
	g := t.Graph()
	freqs := graph.Const(g, TimestepFrequencies(dim, shift))
	tf := graph.ConvertDType(t, dtypes.Float32)
	arg := graph.Mul(graph.InsertAxes(tf, -1), graph.InsertAxes(freqs, 0)) // [N, half]
	sin, cos := graph.Sin(arg), graph.Cos(arg)
	parts := []*graph.Node{sin, cos}
	if flipSinToCos {
		parts = []*graph.Node{cos, sin}
	}
	emb := graph.Concatenate(parts, 1)
	if dim%2 == 1 {
		emb = padAxis(emb, 1, 0, 1)
	}
	return emb
}

// Embedding looks up rows of table [K, D] for integer ids [N]: [N, D].
func Embedding(table, ids *graph.Node) *graph.Node {
	return graph.Gather(table, graph.InsertAxes(graph.ConvertDType(ids, dtypes.Int32), -1))
}

// Chunk splits x into k equal parts along axis (torch.chunk), with gradients on every backend.
func Chunk(x *graph.Node, axis, k int) []*graph.Node {
	d := x.Shape().Dimensions
	if d[axis]%k != 0 {
		panic(fmt.Errorf("nn.Chunk: axis %d of %v does not split into %d", axis, d, k))
	}
	size := d[axis] / k
	out := make([]*graph.Node, k)
	for i := range out {
		starts, limits := make([]int, len(d)), slices.Clone(d)
		starts[axis], limits[axis] = i*size, (i+1)*size
		out[i] = slice(x, starts, limits)
	}
	return out
}
