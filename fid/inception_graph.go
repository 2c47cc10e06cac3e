package fid

import (
	"fmt"
	"github.com/ddpm/ddpm/nn"
	"math"
	"slices"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/simplego"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	timage "github.com/gomlx/gomlx/pkg/core/tensors/images"
)

// The network runs channels-last ([N,H,W,C]): a 1x1 convolution is then a plain matrix product over
// the last axis, and the im2col patches of a larger kernel are a concatenation on the last axis, with
// no transposes between layers.

// useNativeConv says whether b's own convolution is the fast one. The pure-Go backend's ConvGeneral is
// a single-threaded loop, 8-10x slower there than im2col and a matrix product (measured on 2 cores).
func useNativeConv(b backends.Backend) bool {
	_, isGo := b.(*simplego.Backend)
	return !isGo
}

// inceptionGraph builds the network's graph from the weights, given as graph nodes in layer order.
type inceptionGraph struct {
	m       *Inception
	weights []*graph.Node // w0, b0, w1, b1, ...
	native  bool
}

// forward computes the pool3 features [N,2048] (float32) of images x [N,C,H,W] (float32) in [0, 1]
// (C = 1 or 3), as pytorch-fid's InceptionV3([3]).forward: resize to 299x299, 2x - 1, torchvision's
// Inception3 up to Mixed_7c with the FID blocks, and the adaptive average pool to 1x1. It computes in
// the dtype of the weights.
func (m *Inception) forward(x *graph.Node, weights []*graph.Node, native bool) *graph.Node {
	g := &inceptionGraph{m: m, weights: weights, native: native}
	h := inceptionInput(graph.ConvertDType(x, weights[0].DType())) // [N,299,299,3]
	h = g.conv(h, "Conv2d_1a_3x3")
	h = g.conv(h, "Conv2d_2a_3x3")
	h = g.conv(h, "Conv2d_2b_3x3")
	h = maxPool3x3(h, 2, 0)
	h = g.conv(h, "Conv2d_3b_1x1")
	h = g.conv(h, "Conv2d_4a_3x3")
	h = maxPool3x3(h, 2, 0)
	h = g.blockA(h, "Mixed_5b")
	h = g.blockA(h, "Mixed_5c")
	h = g.blockA(h, "Mixed_5d")
	h = g.blockB(h, "Mixed_6a")
	h = g.blockC(h, "Mixed_6b")
	h = g.blockC(h, "Mixed_6c")
	h = g.blockC(h, "Mixed_6d")
	h = g.blockC(h, "Mixed_6e")
	h = g.blockD(h, "Mixed_7a")
	h = g.blockE(h, "Mixed_7b", false)
	h = g.blockE(h, "Mixed_7c", true)
	h = graph.ReduceMean(h, 1, 2) // adaptive_avg_pool2d to 1x1: [N,2048]
	return graph.ConvertDType(h, dtypes.Float32)
}

// inceptionInput turns images x [N,C,H,W] in [0, 1] into the network's input [N,299,299,3] in
// [-1, 1]: F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) as two matrix
// products with ResizeMatrix (columns first, then rows, in the order torch's kernel sums; a side
// already 299 is left alone, as torch copies it), then 2x - 1. A grayscale channel is repeated to
// three after the resize, which is per channel.
func inceptionInput(x *graph.Node) *graph.Node {
	d := x.Shape().Dimensions
	n, c, h, w := d[0], d[1], d[2], d[3]
	if w != InceptionSize {
		x = nn.ExactProduct(x, resizeConst(x, w), func(a, b *graph.Node) *graph.Node {
			return graph.DotGeneral(a, []int{3}, nil, b, []int{1}, nil) // [N,C,H,299]
		})
	}
	if h != InceptionSize {
		x = nn.ExactProduct(x, resizeConst(x, h), func(a, b *graph.Node) *graph.Node {
			return graph.DotGeneral(a, []int{2}, nil, b, []int{1}, nil) // [N,C,299w,299h]
		})
		x = graph.TransposeAllAxes(x, 0, 3, 2, 1)
	} else {
		x = graph.TransposeAllAxes(x, 0, 2, 3, 1)
	}
	x = graph.AddScalar(graph.MulScalar(x, 2), -1)
	if c == 1 {
		x = graph.BroadcastToDims(x, n, InceptionSize, InceptionSize, 3)
	}
	return x
}

// resizeConst is ResizeMatrix(in, InceptionSize) [299,in] as a constant of x's graph and dtype.
func resizeConst(x *graph.Node, in int) *graph.Node {
	r, err := ResizeMatrix(in, InceptionSize)
	if err != nil {
		panic(err)
	}
	return constLike(x, tensors.FromFlatDataAndDimensions(r, InceptionSize, in))
}

// constLike is t as a constant of x's graph, in x's dtype.
func constLike(x *graph.Node, t *tensors.Tensor) *graph.Node {
	return graph.ConvertDType(graph.ConstTensor(x.Graph(), t), x.DType())
}

// conv is the BasicConv2d called name with its BatchNorm folded in: relu(conv(x, w) + b) on x [N,H,W,C].
func (g *inceptionGraph) conv(x *graph.Node, name string) *graph.Node {
	i, ok := g.m.index[name]
	if !ok {
		panic(fmt.Errorf("fid: Inception has no layer %q", name))
	}
	s := g.m.layers[i]
	w, b := g.weights[2*i], g.weights[2*i+1]
	ph, pw := s.pad()
	var y *graph.Node
	if g.native {
		y = convNative(x, w, s.stride, ph, pw)
	} else {
		y = convIm2col(x, w, s.stride, ph, pw)
	}
	return graph.MaxScalar(graph.Add(y, graph.ExpandLeftToRank(b, 4)), 0)
}

// convNative convolves x [N,H,W,C] with w [kh,kw,C,O] (stride s, zero padding ph rows and pw
// columns on each side) with the backend's convolution: [N,Ho,Wo,O], Ho = (H + 2 ph - kh)/s + 1.
//
// Products are float32-exact (nn.ExactProduct): on NVIDIA GPUs XLA's default is TF32, which put the
// features up to 4.4% off pytorch-fid's.
func convNative(x, w *graph.Node, s, ph, pw int) *graph.Node {
	return nn.ExactProduct(x, w, func(x, w *graph.Node) *graph.Node {
		return graph.Convolve(x, w).ChannelsAxis(timage.ChannelsLast).
			PaddingPerDim([][2]int{{ph, ph}, {pw, pw}}).Strides(s).Done()
	})
}

// convIm2col is convNative as one matrix product: the kh*kw shifted (and strided) views of the
// zero-padded input, concatenated on the channel axis in the order of w's [kh,kw,C] axes, times w
// reshaped to [kh*kw*C, O].
func convIm2col(x, w *graph.Node, s, ph, pw int) *graph.Node {
	xd, wd := x.Shape().Dimensions, w.Shape().Dimensions
	kh, kw, c, o := wd[0], wd[1], wd[2], wd[3]
	if xd[3] != c {
		panic(fmt.Errorf("fid: convolution kernel %v has %d input channels, input %v has %d", wd, c, xd, xd[3]))
	}
	wm := graph.Reshape(w, kh*kw*c, o)
	if kh == 1 && kw == 1 && s == 1 {
		return nn.ExactProduct(x, wm, func(a, b *graph.Node) *graph.Node {
			return graph.DotGeneral(a, []int{3}, nil, b, []int{0}, nil)
		})
	}
	xp := padAxis(padAxis(x, 1, ph, ph, 0), 2, pw, pw, 0)
	hp, wp := xd[1]+2*ph, xd[2]+2*pw
	ho, wo := (hp-kh)/s+1, (wp-kw)/s+1
	taps := make([]*graph.Node, 0, kh*kw)
	for ky := range kh {
		for kx := range kw {
			taps = append(taps, graph.Slice(xp, graph.AxisRange(),
				graph.AxisRange(ky, ky+s*(ho-1)+1).Stride(s),
				graph.AxisRange(kx, kx+s*(wo-1)+1).Stride(s),
				graph.AxisRange()))
		}
	}
	patches := taps[0]
	if len(taps) > 1 {
		patches = graph.Concatenate(taps, 3) // [N,Ho,Wo,kh*kw*C]
	}
	return nn.ExactProduct(patches, wm, func(a, b *graph.Node) *graph.Node {
		return graph.DotGeneral(a, []int{3}, nil, b, []int{0}, nil)
	})
}

// padAxis puts before and after copies of value around x on axis a, with Concatenate: the pure-Go
// backend has no Pad.
func padAxis(x *graph.Node, a, before, after int, value float32) *graph.Node {
	if before == 0 && after == 0 {
		return x
	}
	fill := func(k int) *graph.Node {
		dims := slices.Clone(x.Shape().Dimensions)
		dims[a] = k
		return graph.BroadcastToDims(graph.Scalar(x.Graph(), x.DType(), value), dims...)
	}
	parts := make([]*graph.Node, 0, 3)
	if before > 0 {
		parts = append(parts, fill(before))
	}
	parts = append(parts, x)
	if after > 0 {
		parts = append(parts, fill(after))
	}
	return graph.Concatenate(parts, a)
}

// maxPool3x3 is F.max_pool2d(x, kernel_size=3, stride=s, padding=p) on x [N,H,W,C] (padded positions
// never win). The maximum is separable and exact in any order: over the 3 (strided) column
// shifts, then over the 3 row shifts. Slices and Max: the pure-Go backend's ReduceWindow visits
// each window element through a generic index iterator, several times slower.
func maxPool3x3(x *graph.Node, s, p int) *graph.Node {
	lowest := float32(math.Inf(-1))
	for _, a := range []int{2, 1} {
		x = padAxis(x, a, p, p, lowest)
		t := shifts3(x, a, s)
		x = graph.Max(graph.Max(t[0], t[1]), t[2])
	}
	return x
}

// avgPool3x3 is F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False) on
// x [N,H,W,C]: the sum over the window's positions inside the image, divided by their number (9 inside,
// 6 on an edge, 4 in a corner), as TensorFlow's average pool that the FID Inception was trained with.
// The sum is separable: over the 3 column shifts of the zero-padded input, then the 3 row shifts.
func avgPool3x3(x *graph.Node) *graph.Node {
	d := x.Shape().Dimensions
	for _, a := range []int{2, 1} {
		t := shifts3(padAxis(x, a, 1, 1, 0), a, 1)
		x = graph.Add(graph.Add(t[0], t[1]), t[2])
	}
	return graph.Div(x, constLike(x, poolCounts(d[1], d[2])))
}

// shifts3 returns the 3 windows' taps along axis a of x with stride s: x[k::s] for k = 0, 1, 2, each
// (len - 3)/s + 1 long.
func shifts3(x *graph.Node, a, s int) [3]*graph.Node {
	n := (x.Shape().Dimensions[a]-3)/s + 1
	var t [3]*graph.Node
	for k := range t {
		spec := make([]graph.SliceAxisSpec, x.Rank())
		for i := range spec {
			spec[i] = graph.AxisRange()
		}
		spec[a] = graph.AxisRange(k, k+s*(n-1)+1).Stride(s)
		t[k] = graph.Slice(x, spec...)
	}
	return t
}

// poolCounts returns the number of positions of each 3x3 window (stride 1, padding 1) inside an h x w
// image, as a tensor [1,h,w,1].
func poolCounts(h, w int) *tensors.Tensor {
	inside := func(i, n int) int { return min(i+1, n-1) - max(i-1, 0) + 1 }
	counts := make([]float32, h*w)
	for i := range h {
		for j := range w {
			counts[i*w+j] = float32(inside(i, h) * inside(j, w))
		}
	}
	return tensors.FromFlatDataAndDimensions(counts, 1, h, w, 1)
}

// concat joins branches on the channel axis, in torch.cat's order.
func concat(branches ...*graph.Node) *graph.Node { return graph.Concatenate(branches, 3) }

// blockA is pytorch-fid's FIDInceptionA: torchvision's InceptionA with an average pool that excludes
// the padding.
func (g *inceptionGraph) blockA(x *graph.Node, b string) *graph.Node {
	b1 := g.conv(x, b+".branch1x1")
	b5 := g.conv(g.conv(x, b+".branch5x5_1"), b+".branch5x5_2")
	b3 := g.conv(g.conv(g.conv(x, b+".branch3x3dbl_1"), b+".branch3x3dbl_2"), b+".branch3x3dbl_3")
	bp := g.conv(avgPool3x3(x), b+".branch_pool")
	return concat(b1, b5, b3, bp)
}

// blockB is torchvision's InceptionB (Mixed_6a): 35x35 to 17x17.
func (g *inceptionGraph) blockB(x *graph.Node, b string) *graph.Node {
	b3 := g.conv(x, b+".branch3x3")
	bd := g.conv(g.conv(g.conv(x, b+".branch3x3dbl_1"), b+".branch3x3dbl_2"), b+".branch3x3dbl_3")
	return concat(b3, bd, maxPool3x3(x, 2, 0))
}

// blockC is pytorch-fid's FIDInceptionC: torchvision's InceptionC with an average pool that excludes
// the padding.
func (g *inceptionGraph) blockC(x *graph.Node, b string) *graph.Node {
	b1 := g.conv(x, b+".branch1x1")
	b7 := x
	for _, l := range []string{"_1", "_2", "_3"} {
		b7 = g.conv(b7, b+".branch7x7"+l)
	}
	bd := x
	for _, l := range []string{"_1", "_2", "_3", "_4", "_5"} {
		bd = g.conv(bd, b+".branch7x7dbl"+l)
	}
	bp := g.conv(avgPool3x3(x), b+".branch_pool")
	return concat(b1, b7, bd, bp)
}

// blockD is torchvision's InceptionD (Mixed_7a): 17x17 to 8x8.
func (g *inceptionGraph) blockD(x *graph.Node, b string) *graph.Node {
	b3 := g.conv(g.conv(x, b+".branch3x3_1"), b+".branch3x3_2")
	b7 := x
	for _, l := range []string{"_1", "_2", "_3", "_4"} {
		b7 = g.conv(b7, b+".branch7x7x3"+l)
	}
	return concat(b3, b7, maxPool3x3(x, 2, 0))
}

// blockE is pytorch-fid's FIDInceptionE_1 (maxPool false: average pool excluding the padding) or
// FIDInceptionE_2 (maxPool true: a 3x3 max pool, stride 1, padding 1, as the TensorFlow graph has).
func (g *inceptionGraph) blockE(x *graph.Node, b string, maxPool bool) *graph.Node {
	b1 := g.conv(x, b+".branch1x1")
	b3 := g.conv(x, b+".branch3x3_1")
	b3 = concat(g.conv(b3, b+".branch3x3_2a"), g.conv(b3, b+".branch3x3_2b"))
	bd := g.conv(g.conv(x, b+".branch3x3dbl_1"), b+".branch3x3dbl_2")
	bd = concat(g.conv(bd, b+".branch3x3dbl_3a"), g.conv(bd, b+".branch3x3dbl_3b"))
	var pooled *graph.Node
	if maxPool {
		pooled = maxPool3x3(x, 1, 1)
	} else {
		pooled = avgPool3x3(x)
	}
	bp := g.conv(pooled, b+".branch_pool")
	return concat(b1, b3, bd, bp)
}
