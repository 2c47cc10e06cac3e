package nn

import (
	"sync/atomic"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
)

// Precision is how float32 matrix products and convolutions are computed on XLA backends.
//
// GoMLX v0.26 emits them with XLA's DEFAULT precision, which on NVIDIA GPUs since Ampere means TF32
// tensor cores: inputs rounded to 10 mantissa bits, about 1e-3 relative error (PyTorch's default for
// convolutions too). That is right for training and sampling, but not for checking numbers against
// diffusers, and GoMLX offers no way to ask XLA for more. Highest gets float32 accuracy out of TF32
// units as CUTLASS's 3xTF32 does: each operand is split into a part exact in TF32 and the rest,
//
//	a = a_hi + a_lo,  a_hi = a with the low 13 mantissa bits cleared,  |a_lo| < 2^-10 |a|
//	a b ~ a_hi b_hi + a_hi b_lo + a_lo b_hi       (the a_lo b_lo term is below 2^-20 |a b|)
//
// at three times the cost. The pure-Go backend computes in float32 already and ignores the setting.
type Precision int32

const (
	// Default is the backend's own precision (TF32 on NVIDIA GPUs).
	Default Precision = iota
	// Highest is float32 accuracy on every backend (three TF32 products on GPUs).
	Highest
)

var precision atomic.Int32

// SetPrecision sets the precision of the float32 products and convolutions of graphs built from
// now on (a process-wide setting, like torch.backends.cuda.matmul.allow_tf32).
func SetPrecision(p Precision) { precision.Store(int32(p)) }

// CurrentPrecision returns the setting of SetPrecision.
func CurrentPrecision() Precision { return Precision(precision.Load()) }

// splitTF32 reports whether x's products should be split, and the split: hi carries x's value rounded
// down to a TF32 mantissa (and x's gradient, straight through), lo the rest (no gradient).
func splitTF32(x *graph.Node, p Precision) (split bool, hi, lo *graph.Node) {
	if p != Highest || x.DType() != dtypes.Float32 || x.Graph().Backend().Name() != "xla" {
		return false, nil, nil
	}
	hi, lo = tf32Split(x)
	return true, hi, lo
}

// tf32Split splits float32 x into hi, x with the low 13 mantissa bits cleared (exact in TF32; it carries
// x's gradient, straight through), and lo = x - hi (exact in float32; no gradient).
func tf32Split(x *graph.Node) (hi, lo *graph.Node) {
	g := x.Graph()
	bits := graph.Bitcast(x, dtypes.Uint32)
	mask := graph.Scalar(g, dtypes.Uint32, uint32(0xFFFFE000))
	hiExact := graph.Bitcast(graph.BitwiseAnd(bits, mask), dtypes.Float32)
	lo = graph.StopGradient(graph.Sub(x, hiExact))
	hi = graph.Sub(x, lo) // value hiExact, gradient of x
	return hi, lo
}

// threeProducts is op(a_hi, b_hi) + op(a_hi, b_lo) + op(a_lo, b_hi).
func threeProducts(ah, al, bh, bl *graph.Node, op func(a, b *graph.Node) *graph.Node) *graph.Node {
	return graph.Add(graph.Add(op(ah, bh), op(ah, bl)), op(al, bh))
}

// threePass computes op(a, b) as op(a_hi, b_hi) + op(a_hi, b_lo) + op(a_lo, b_hi) under Highest
// precision, else op(a, b).
func threePass(a, b *graph.Node, op func(a, b *graph.Node) *graph.Node) *graph.Node {
	return product(a, b, op, CurrentPrecision())
}

// ExactProduct computes the bilinear op(a, b) (a matrix product or a convolution) to float32 accuracy
// on every backend, whatever SetPrecision says: three TF32 passes on XLA, op itself elsewhere.
func ExactProduct(a, b *graph.Node, op func(a, b *graph.Node) *graph.Node) *graph.Node {
	return product(a, b, op, Highest)
}

func product(a, b *graph.Node, op func(a, b *graph.Node) *graph.Node, p Precision) *graph.Node {
	sa, ah, al := splitTF32(a, p)
	sb, bh, bl := splitTF32(b, p)
	if !sa || !sb {
		return op(a, b)
	}
	return threeProducts(ah, al, bh, bl, op)
}
